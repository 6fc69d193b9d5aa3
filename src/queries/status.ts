// One consistent picture of a bucketq database from its views (topics, groups,
// consumers, buckets, lag, throughput, vacuum_horizon, rotations, table_sizes), taken in a single
// read-only REPEATABLE READ transaction. Counts are numbers; ids and epochs stay
// strings (int8); ages are seconds.
import type pg from 'pg';
import { readSnapshot } from '../db/read-snapshot.js';

export interface TopicStatus {
  topic: string;
  buckets: number;
  groups: number;
  partitions: number;
  retention: string;
  maxPayloadBytes: number;
  partitionInterval: string;
  oldestPartition: Date | null;
  logBytes: number;
}

export interface GroupStatus {
  group: string;
  topic: string;
  startAt: string;
  maxAttempts: number;
  onExhausted: string;
  leaseTimeout: string;
  sessionTimeout: string;
  pending: number;
  leased: number;
  dead: number;
}

export interface ConsumerStatus {
  group: string;
  consumerId: string;
  alive: boolean;
  heartbeatAgeSeconds: number;
  ownedBuckets: number;
  leased: number;
  joinedAt: Date;
  meta: unknown;
}

export interface BucketStatus {
  group: string;
  bucket: number;
  owner: string | null;
  epoch: string;
  /** Every message of the bucket with an id up to this is done; null when nothing is pending. */
  checkpoint: string | null;
  heartbeatAgeSeconds: number | null;
  /** Owner set and its heartbeat within the session timeout. */
  owned: boolean;
  movedAt: Date | null;
}

export interface LagCounts {
  ready: number;
  leased: number;
  delayed: number;
  waiting: number;
  /** Dead letters holding their key (groups with on_exhausted = block). */
  deadBlocking: number;
  expiredLeases: number;
  oldestAgeSeconds: number | null;
}

export interface BucketLag extends LagCounts {
  group: string;
  topic: string;
  bucket: number;
}

export interface GroupLag extends LagCounts {
  group: string;
  topic: string;
}

export interface ThroughputMinute {
  group: string;
  topic: string;
  minute: Date;
  acked: number;
  ackedPerSecond: number;
}

export interface VacuumHolder {
  kind: string;
  holder: string;
  role: string | null;
  database: string | null;
  state: string | null;
  xminAge: number;
  transactionAgeSeconds: number | null;
  query: string | null;
}

export interface TableSize {
  relation: string;
  kind: string;
  partitionOf: string;
  totalBytes: number;
  total: string;
  liveRows: number | null;
  deadRows: number | null;
  lastAutovacuum: Date | null;
}

/** A TRUNCATE rotation of maintain(), as bucketq.rotations shows it. */
export interface Rotation {
  rotation: string;
  appendingTo: string;
  retired: string;
  retiredRows: boolean;
  bytes: number;
  rotatedAt: Date | null;
  keptRuns: number;
  keptSince: Date | null;
  /** Seconds the rotation has been due; null while nothing is due. */
  dueSeconds: number | null;
  overdue: boolean;
  detail: string;
}

/** bucketq.rotations in the shape of `Rotation` (status and the console's system page). */
export const ROTATIONS_SQL = `select rotation, appending_to as "appendingTo", retired, retired_rows as "retiredRows", bytes::float8,
       rotated_at as "rotatedAt", coalesce(kept_runs, 0) as "keptRuns", kept_since as "keptSince",
       extract(epoch from due_for)::float8 as "dueSeconds",
       overdue, detail
  from bucketq.rotations order by rotation`;

export interface StatusSnapshot {
  takenAt: Date;
  /** The --group filter, if any. */
  group: string | null;
  topics: TopicStatus[];
  groups: GroupStatus[];
  consumers: ConsumerStatus[];
  buckets: BucketStatus[];
  lag: BucketLag[];
  lagByGroup: GroupLag[];
  throughput: ThroughputMinute[];
  vacuumHorizon: VacuumHolder[];
  rotations: Rotation[];
  tableSizes: TableSize[];
}

const secs = (col: string) => `extract(epoch from ${col})::float8`;

/** Each group's lag summed over its buckets (the oldest: the oldest of any bucket). */
function sumByGroup(lag: BucketLag[]): GroupLag[] {
  const byGroup = new Map<string, GroupLag>();
  for (const b of lag) {
    const g = byGroup.get(b.group);
    if (!g) {
      byGroup.set(b.group, {
        group: b.group, topic: b.topic, ready: b.ready, leased: b.leased, delayed: b.delayed, waiting: b.waiting,
        deadBlocking: b.deadBlocking, expiredLeases: b.expiredLeases, oldestAgeSeconds: b.oldestAgeSeconds,
      });
      continue;
    }
    g.ready += b.ready;
    g.leased += b.leased;
    g.delayed += b.delayed;
    g.waiting += b.waiting;
    g.deadBlocking += b.deadBlocking;
    g.expiredLeases += b.expiredLeases;
    if (b.oldestAgeSeconds !== null && (g.oldestAgeSeconds === null || b.oldestAgeSeconds > g.oldestAgeSeconds)) {
      g.oldestAgeSeconds = b.oldestAgeSeconds;
    }
  }
  return [...byGroup.values()]; // in the lag's order: by group name, as the database sorts
}

/** Reads everything in one snapshot; with `group`, only that group and its topic. */
export async function readStatus(db: pg.Pool | pg.ClientBase, group?: string): Promise<StatusSnapshot> {
  return readSnapshot(db, (c) => read(c, group ?? null));
}

async function read(c: pg.ClientBase, group: string | null): Promise<StatusSnapshot> {
  const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) => (await c.query<R>(text, values)).rows;
  const takenAt = (await q<{ now: Date }>('select bucketq._now() as now'))[0]!.now;
  // $1: the group filter (null = all).
  const g = [group];
  const topics = await q<TopicStatus>(
    `select name as topic, buckets, groups::int, partitions::int, retention::text, max_payload_bytes as "maxPayloadBytes",
            partition_interval::text as "partitionInterval", oldest_partition as "oldestPartition", log_bytes::float8 as "logBytes"
       from bucketq.topics
      where $1::text is null or name in (select topic from bucketq.groups where group_name = $1)
      order by name`,
    g,
  );
  // pending is summed from the lag below rather than read from groups.pending: each
  // counts the backlog in the log (seconds at ten million messages), and once is enough.
  const groupRows = await q<Omit<GroupStatus, 'pending'>>(
    `select group_name as "group", topic, start_at::text as "startAt", max_attempts as "maxAttempts", on_exhausted as "onExhausted",
            lease_timeout::text as "leaseTimeout", session_timeout::text as "sessionTimeout",
            leased::int, dead::int
       from bucketq.groups where $1::text is null or group_name = $1 order by group_name`,
    g,
  );
  const consumers = await q<ConsumerStatus>(
    `select group_name as "group", consumer_id as "consumerId", alive, ${secs('heartbeat_age')} as "heartbeatAgeSeconds",
            owned_buckets::int as "ownedBuckets", leased::int, joined_at as "joinedAt", meta
       from bucketq.consumers where $1::text is null or group_name = $1 order by group_name, consumer_id`,
    g,
  );
  const buckets = await q<BucketStatus>(
    `select group_name as "group", bucket, owner, epoch::text, checkpoint::text, ${secs('heartbeat_age')} as "heartbeatAgeSeconds",
            coalesce(owned, false) as owned, moved_at as "movedAt"
       from bucketq.buckets where $1::text is null or group_name = $1 order by group_name, bucket`,
    g,
  );
  const lagCols = `ready::int, leased::int, delayed::int, waiting::int, dead_blocking::int as "deadBlocking",
                   expired_leases::int as "expiredLeases", ${secs('oldest_age')} as "oldestAgeSeconds"`;
  const lag = await q<BucketLag>(
    `select group_name as "group", topic, bucket, ${lagCols}
       from bucketq.lag where $1::text is null or group_name = $1 order by group_name, bucket`,
    g,
  );
  const lagByGroup = sumByGroup(lag);
  const groups: GroupStatus[] = groupRows.map((r) => {
    const l = lagByGroup.find((x) => x.group === r.group);
    return { ...r, pending: l ? l.ready + l.leased + l.delayed + l.waiting + l.deadBlocking : 0 };
  });
  const throughput = await q<ThroughputMinute>(
    `select group_name as "group", topic, minute, acked::int, acked_per_second::float8 as "ackedPerSecond"
       from bucketq.throughput where $1::text is null or group_name = $1 order by group_name, minute`,
    g,
  );
  // Our own snapshot holds an xmin too; it is not what anyone is asking about.
  const vacuumHorizon = await q<VacuumHolder>(
    `select kind, holder, role, database, state, xmin_age as "xminAge", ${secs('transaction_age')} as "transactionAgeSeconds", query
       from bucketq.vacuum_horizon
      where not (kind = 'session' and holder = pg_backend_pid()::text)
      order by xmin_age desc nulls last limit 10`,
  );
  const tableSizes = await q<TableSize>(
    `select relation, kind, partition_of as "partitionOf", total_bytes::float8 as "totalBytes", total,
            live_rows::float8 as "liveRows", dead_rows::float8 as "deadRows", last_autovacuum as "lastAutovacuum"
       from bucketq.table_sizes order by total_bytes desc, relation`,
  );
  const rotations = await q<Rotation>(ROTATIONS_SQL);
  return { takenAt, group, topics, groups, consumers, buckets, lag, lagByGroup, throughput, vacuumHorizon, rotations, tableSizes };
}

/** A row of bucketq.dead_letters as the CLI (dlq list) and the console read it. */
export interface DeadLetterRow {
  group: string;
  topic: string;
  msgId: string;
  key: string | null;
  keySeq: string | null;
  bucket: number;
  attempts: number;
  lastError: string | null;
  deadAt: Date;
  sentAt: Date;
  status: string;
  replayedAt: Date | null;
  payload: unknown;
  headers: unknown;
}
