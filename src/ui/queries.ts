// Every query the web console (bucketq ui) runs, in one place: reads of the public
// views (one read-only REPEATABLE READ snapshot per page refresh) and the two actions,
// which call the same public SQL functions as the CLI (replay_dead, rewind). Nothing
// here touches a bucketq table directly, so a storage redesign only has to keep the
// views and functions (see sql/000007_views.sql, 000008_ops.sql and 000020_ui.sql).
// Counts are numbers; ids, key_seqs and epochs stay strings (int8); ages are seconds.
import type pg from 'pg';
import type { Queryable } from '../db/with-client.js';
import { ROTATIONS_SQL, type DeadLetterRow, type LagCounts, type Rotation, type VacuumHolder } from '../queries/status.js';
import { readSnapshot } from '../db/read-snapshot.js';
import { inReadCommitted } from '../db/read-committed.js';
import { topicIdOf } from '../db/topic-filter.js';

type Q = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>;

const secs = (col: string) => `extract(epoch from ${col})::float8`;

/** Runs fn in one read-only snapshot, so every number of a page comes from the same instant (readSnapshot). */
async function snapshot<T>(db: Queryable, fn: (q: Q) => Promise<T>): Promise<T> {
  return readSnapshot(db, (c) => fn(async (text, values = []) => (await c.query(text, values)).rows));
}

// ---------------------------------------------------------------- overview

export interface TopicRow {
  topic: string;
  buckets: number;
  groups: number;
  partitions: number;
  retention: string;
  logBytes: number;
}

export interface GroupRow extends LagCounts {
  group: string;
  topic: string;
  pending: number;
  /** Dead letters not replayed (skipped and blocking). */
  dead: number;
  maxAttempts: number;
  onExhausted: string;
  sessionTimeout: string;
  consumers: number;
  aliveConsumers: number;
  /** Acks per 10-second slot, oldest first, over the last 5 minutes (the last slot is partial). */
  throughput: number[];
  /** Acks in the last full minute, per second. */
  perSecond: number;
}

export interface Overview {
  takenAt: Date;
  topics: TopicRow[];
  groups: GroupRow[];
}

/** Slots of bucketq.throughput_recent: 10 s wide over 5 minutes. */
export const THROUGHPUT_SLOT_SECONDS = 10;
export const THROUGHPUT_SLOTS = 30;

export async function readOverview(db: Queryable): Promise<Overview> {
  return snapshot(db, overviewIn);
}

/**
 * The overview's figures, of every group or of one. pending is the lag summed over the
 * buckets rather than groups.pending: each counts the backlog in the log (seconds at
 * ten million messages), and the page refreshes every second. withLag false: the lag
 * figures are left at zero (not counted), for a caller that has them already.
 */
async function overviewIn(q: Q, onlyGroup: string | null = null, withLag = true): Promise<Overview> {
  {
    const takenAt = (await q<{ now: Date }>('select bucketq._now() as now'))[0]!.now;
    const topics = await q<TopicRow>(
      `select name as topic, buckets, groups::int, partitions::int, retention::text, log_bytes::float8 as "logBytes"
         from bucketq.topics order by name`,
    );
    const groups = await q<Omit<GroupRow, 'throughput' | 'perSecond'>>(
      `select g.group_name as "group", g.topic,
              coalesce(l.ready + l.leased + l.delayed + l.waiting + l.dead_blocking, 0)::int as pending,
              g.dead::int, g.max_attempts as "maxAttempts",
              g.on_exhausted as "onExhausted", g.session_timeout::text as "sessionTimeout",
              coalesce(l.ready, 0)::int as ready, coalesce(l.leased, 0)::int as leased, coalesce(l.delayed, 0)::int as delayed,
              coalesce(l.waiting, 0)::int as waiting, coalesce(l.dead_blocking, 0)::int as "deadBlocking",
              coalesce(l.expired_leases, 0)::int as "expiredLeases", ${secs('l.oldest_age')} as "oldestAgeSeconds",
              coalesce(c.n, 0)::int as consumers, coalesce(c.alive, 0)::int as "aliveConsumers"
         from bucketq.groups g
         left join (select group_name, sum(ready) as ready, sum(leased) as leased, sum(delayed) as delayed, sum(waiting) as waiting,
                           sum(dead_blocking) as dead_blocking, sum(expired_leases) as expired_leases, max(oldest_age) as oldest_age
                      from bucketq.lag where $2 group by group_name) l on l.group_name = g.group_name
         left join (select group_name, count(*) as n, count(*) filter (where alive) as alive
                      from bucketq.consumers group by group_name) c on c.group_name = g.group_name
        where $1::text is null or g.group_name = $1
        order by g.group_name`,
      [onlyGroup, withLag],
    );
    const slots = await q<{ group: string; ago: number; acked: number }>(
      `select group_name as "group", floor(${secs('date_trunc(\'second\', $1::timestamptz) - slot')} / ${THROUGHPUT_SLOT_SECONDS})::int as ago,
              acked::int
         from bucketq.throughput_recent`,
      [takenAt],
    );
    const lastMinute = await q<{ group: string; acked: number }>(
      `select group_name as "group", acked::int from bucketq.throughput
        where minute = date_trunc('minute', $1::timestamptz) - interval '1 minute'`,
      [takenAt],
    );
    return {
      takenAt,
      topics,
      groups: groups.map((g) => {
        const series = new Array<number>(THROUGHPUT_SLOTS).fill(0);
        for (const s of slots) {
          if (s.group === g.group && s.ago >= 0 && s.ago < THROUGHPUT_SLOTS) series[THROUGHPUT_SLOTS - 1 - s.ago]! += s.acked;
        }
        const minute = lastMinute.find((m) => m.group === g.group)?.acked ?? 0;
        return { ...g, throughput: series, perSecond: Math.round((minute / 60) * 10) / 10 };
      }),
    };
  }
}

// ---------------------------------------------------------------- one group

export interface BucketCell {
  bucket: number;
  owner: string | null;
  epoch: string;
  checkpoint: string | null;
  heartbeatAgeSeconds: number | null;
  /** Owner set and heartbeat within the session timeout. */
  owned: boolean;
  movedAgoSeconds: number | null;
  ready: number;
  leased: number;
  delayed: number;
  waiting: number;
  deadBlocking: number;
  /** Unfinished messages of the bucket: ready + leased + delayed + waiting + dead (blocking). */
  lag: number;
  /** Leases past their timeout, not yet handed out again. */
  expiredLeases: number;
  oldestAgeSeconds: number | null;
}

export interface ConsumerRow {
  consumerId: string;
  alive: boolean;
  heartbeatAgeSeconds: number;
  ownedBuckets: number;
  leased: number;
  joinedAt: Date;
  meta: unknown;
}

export interface GroupDetail {
  takenAt: Date;
  group: GroupRow;
  buckets: BucketCell[];
  consumers: ConsumerRow[];
}

/** One group's bucket map, consumers and lag per bucket; undefined when there is no such group. */
export async function readGroup(db: Queryable, group: string): Promise<GroupDetail | undefined> {
  return snapshot(db, async (q) => {
    const buckets = await q<BucketCell>(
      `select b.bucket, b.owner, b.epoch::text, b.checkpoint::text, ${secs('b.heartbeat_age')} as "heartbeatAgeSeconds",
              coalesce(b.owned, false) as owned, ${secs('bucketq._now() - b.moved_at')} as "movedAgoSeconds",
              coalesce(l.ready, 0)::int as ready, coalesce(l.leased, 0)::int as leased, coalesce(l.delayed, 0)::int as delayed,
              coalesce(l.waiting, 0)::int as waiting, coalesce(l.dead_blocking, 0)::int as "deadBlocking",
              coalesce(l.ready + l.leased + l.delayed + l.waiting + l.dead_blocking, 0)::int as lag,
              coalesce(l.expired_leases, 0)::int as "expiredLeases", ${secs('l.oldest_age')} as "oldestAgeSeconds"
         from bucketq.buckets b
         left join bucketq.lag l on l.group_name = b.group_name and l.bucket = b.bucket
        where b.group_name = $1
        order by b.bucket`,
      [group],
    );
    // The overview's other figures for the group, in the same snapshot; its lag is the
    // buckets' summed (counting the backlog once, not twice), so the header matches the
    // overview page.
    const { takenAt, groups } = await overviewIn(q, group, false);
    const found = groups.find((g) => g.group === group);
    if (!found) return undefined;
    const sum = (f: (b: BucketCell) => number) => buckets.reduce((n, b) => n + f(b), 0);
    const ages = buckets.map((b) => b.oldestAgeSeconds).filter((a): a is number => a !== null);
    const row: GroupRow = {
      ...found,
      pending: sum((b) => b.lag),
      ready: sum((b) => b.ready),
      leased: sum((b) => b.leased),
      delayed: sum((b) => b.delayed),
      waiting: sum((b) => b.waiting),
      deadBlocking: sum((b) => b.deadBlocking),
      expiredLeases: sum((b) => b.expiredLeases),
      oldestAgeSeconds: ages.length ? Math.max(...ages) : null,
    };
    const consumers = await q<ConsumerRow>(
      `select consumer_id as "consumerId", alive, ${secs('heartbeat_age')} as "heartbeatAgeSeconds", owned_buckets::int as "ownedBuckets",
              leased::int, joined_at as "joinedAt", meta
         from bucketq.consumers where group_name = $1 order by consumer_id`,
      [group],
    );
    return { takenAt, group: row, buckets, consumers };
  });
}

// ---------------------------------------------------------------- messages

export interface MessageRow {
  topic: string;
  msgId: string;
  key: string | null;
  keySeq: string | null;
  bucket: number;
  sentAt: Date;
  notBefore: Date | null;
  idempotencyKey: string | null;
  payload: unknown;
  headers: unknown;
}

export interface MessageState {
  msgId: string;
  group: string;
  state: string;
  consumerId: string | null;
  epoch: string | null;
  since: Date | null;
  until: Date | null;
  waitingBehind: string | null;
  attempts: number | null;
  lastError: string | null;
  replayedAt: Date | null;
}

export interface MessageLookup {
  takenAt: Date;
  messages: MessageRow[];
  states: MessageState[];
}

const MESSAGE_COLUMNS = `topic, msg_id::text as "msgId", key, key_seq::text as "keySeq", bucket, sent_at as "sentAt", not_before as "notBefore",
                         idempotency_key as "idempotencyKey", payload, headers`;

/** A message by id, or a key's most recent messages (newest first), with their state in every group. */
export async function lookupMessages(
  db: Queryable,
  by: { id: string } | { topic: string; key: string; limit: number },
): Promise<MessageLookup> {
  return snapshot(db, async (q) => {
    const takenAt = (await q<{ now: Date }>('select bucketq._now() as now'))[0]!.now;
    const messages =
      'id' in by
        ? await q<MessageRow>(`select ${MESSAGE_COLUMNS} from bucketq.messages where msg_id = $1::bigint`, [by.id])
        : await q<MessageRow>(
            `select ${MESSAGE_COLUMNS} from bucketq.messages where topic_id = ${topicIdOf('$1')} and key = $2 order by key_seq desc limit $3`,
            [by.topic, by.key, by.limit],
          );
    const states = messages.length
      ? await q<MessageState>(
          `select msg_id::text as "msgId", group_name as "group", state, consumer_id as "consumerId", epoch::text, since, until,
                  waiting_behind::text as "waitingBehind", attempts, last_error as "lastError", replayed_at as "replayedAt"
             from bucketq.message_states where msg_id = any($1::bigint[]) order by msg_id desc, group_name`,
          [messages.map((m) => m.msgId)],
        )
      : [];
    return { takenAt, messages, states };
  });
}

/** Topic names, for the key lookup form. */
export async function listTopics(db: Queryable): Promise<string[]> {
  return snapshot(db, async (q) => (await q<{ name: string }>('select name from bucketq.topics order by name')).map((r) => r.name));
}

// ---------------------------------------------------------------- dead letters


export interface DeadLetters {
  takenAt: Date;
  groups: string[];
  rows: DeadLetterRow[];
  /** Rows matching the filter before the display limit. */
  total: number;
}

/** Dead letters not replayed (or all with includeReplayed), in key order, filtered by group and key. */
export async function readDeadLetters(
  db: Queryable,
  filter: { group?: string | undefined; key?: string | undefined; includeReplayed?: boolean; limit: number },
): Promise<DeadLetters> {
  return snapshot(db, async (q) => {
    const takenAt = (await q<{ now: Date }>('select bucketq._now() as now'))[0]!.now;
    const groups = (await q<{ name: string }>('select group_name as name from bucketq.groups order by group_name')).map((r) => r.name);
    const where = `($1::text is null or group_name = $1) and ($2::text is null or key = $2) and ($3 or status <> 'replayed')`;
    const args = [filter.group ?? null, filter.key ?? null, filter.includeReplayed ?? false];
    const total = (await q<{ n: number }>(`select count(*)::int as n from bucketq.dead_letters where ${where}`, args))[0]!.n;
    const rows = await q<DeadLetterRow>(
      `select group_name as "group", topic, msg_id::text as "msgId", key, key_seq::text as "keySeq", bucket, attempts,
              last_error as "lastError", dead_at as "deadAt", sent_at as "sentAt", status, replayed_at as "replayedAt", payload, headers
         from bucketq.dead_letters where ${where}
        order by group_name, key nulls last, key_seq, msg_id limit $4`,
      [...args, filter.limit],
    );
    return { takenAt, groups, rows, total };
  });
}

/** How many of a group's dead letters (all of them, or these ids) replay_dead would put back in line. */
export async function countReplayable(db: Queryable, group: string, ids: readonly string[] | undefined): Promise<number> {
  return snapshot(db, async (q) => {
    const rows = await q<{ n: number }>(
      `select count(*)::int as n from bucketq.dead_letters
        where group_name = $1 and status <> 'replayed' and ($2::bigint[] is null or msg_id = any($2::bigint[]))`,
      [group, ids ?? null],
    );
    return rows[0]!.n;
  });
}

/** bucketq.replay_dead, as `bucketq dlq replay` calls it; returns how many were replayed. */
export async function replayDead(db: Queryable, group: string, ids: readonly string[] | undefined): Promise<number> {
  // READ COMMITTED whatever the database's default (replay_dead refuses any other level).
  return inReadCommitted(db, async (c) => {
    const { rows } = await c.query<{ n: number }>('select bucketq.replay_dead(group_name => $1::text, msg_ids => $2::bigint[]) as n', [
      group,
      ids ?? null,
    ]);
    return rows[0]?.n ?? 0;
  });
}

// ---------------------------------------------------------------- rewind

export interface RewindPreview {
  group: string;
  topic: string;
  to: Date;
  /** Messages sent at or after `to` that are still in the log: what rewind delivers again. */
  messages: number;
  /** The oldest partition when retention has dropped older ones (rewind refuses an earlier time); otherwise null. */
  oldestRetained: Date | null;
}

/** What `rewind(group, to)` would deliver again; undefined when there is no such group. */
export async function previewRewind(db: Queryable, group: string, to: Date): Promise<RewindPreview | undefined> {
  return snapshot(db, async (q) => {
    const g = (await q<{ topic: string; oldest: Date | null }>(
      // rewind refuses a time before the oldest partition only if retention has dropped one
      `select g.topic, case when t.oldest_partition > t.created_at then t.oldest_partition end as oldest
         from bucketq.groups g join bucketq.topics t on t.name = g.topic where g.group_name = $1`,
      [group],
    ))[0];
    if (!g) return undefined;
    const n = (await q<{ n: number }>(`select count(*)::int as n from bucketq.messages where topic_id = ${topicIdOf('$1')} and sent_at >= $2`, [g.topic, to]))[0]!.n;
    return { group, topic: g.topic, to, messages: n, oldestRetained: g.oldest };
  });
}

/** bucketq.rewind, as `bucketq rewind` calls it; returns how many messages will be delivered again. */
export async function rewind(db: Queryable, group: string, to: Date): Promise<number> {
  // READ COMMITTED whatever the database's default (rewind refuses any other level).
  // Unmapped errors: the page shows Postgres' SQLSTATE, detail and hint.
  return inReadCommitted(db, async (c) => {
    const { rows } = await c.query<{ n: number }>('select bucketq.rewind(group_name => $1::text, to_time => $2::timestamptz) as n', [group, to]);
    return rows[0]?.n ?? 0;
  });
}

// ---------------------------------------------------------------- system

export type { VacuumHolder } from '../queries/status.js';

export interface TableSize {
  relation: string;
  kind: string;
  totalBytes: number;
  liveRows: number | null;
  deadRows: number | null;
  lastAutovacuum: Date | null;
}

export interface SystemInfo {
  takenAt: Date;
  vacuumHorizon: VacuumHolder[];
  rotations: Rotation[];
  /** Top-level tables (partitioned ones with their partitions' sizes and rows summed), largest first. */
  tableSizes: TableSize[];
}

/** The vacuum horizon, the rotations and table sizes, as `bucketq status` shows them. */
export async function readSystem(db: Queryable): Promise<SystemInfo> {
  return snapshot(db, async (q) => {
    const takenAt = (await q<{ now: Date }>('select bucketq._now() as now'))[0]!.now;
    // Our own snapshot holds an xmin too; it is not what anyone is asking about.
    const vacuumHorizon = await q<VacuumHolder>(
      `select kind, holder, role, database, state, xmin_age as "xminAge", ${secs('transaction_age')} as "transactionAgeSeconds", query
         from bucketq.vacuum_horizon
        where not (kind = 'session' and holder = pg_backend_pid()::text)
        order by xmin_age desc nulls last limit 10`,
    );
    const rotations = await q<Rotation>(ROTATIONS_SQL);
    const all = await q<TableSize & { partitionOf: string }>(
      `select relation, kind, partition_of as "partitionOf", total_bytes::float8 as "totalBytes", live_rows::float8 as "liveRows",
              dead_rows::float8 as "deadRows", last_autovacuum as "lastAutovacuum"
         from bucketq.table_sizes order by total_bytes desc, relation`,
    );
    // Partitioned tables have no rows of their own: sum their leaves' (the log is partitioned twice).
    const sum = (rel: string, pick: (t: TableSize) => number | null): number =>
      all.filter((p) => p.partitionOf === rel).reduce((a, p) => a + (p.kind === 'partitioned table' ? sum(p.relation, pick) : (pick(p) ?? 0)), 0);
    const tableSizes = all
      .filter((t) => t.partitionOf === '')
      .map(({ partitionOf: _, ...t }) =>
        t.kind === 'partitioned table' ? { ...t, liveRows: sum(t.relation, (x) => x.liveRows), deadRows: sum(t.relation, (x) => x.deadRows) } : t,
      );
    return { takenAt, vacuumHorizon, rotations, tableSizes };
  });
}

/** Ids of a group's dead letters of one key not yet replayed, in key order. */
export async function deadLetterIdsOfKey(db: Queryable, group: string, key: string): Promise<string[]> {
  return snapshot(db, async (q) =>
    (
      await q<{ id: string }>(
        `select msg_id::text as id from bucketq.dead_letters where group_name = $1 and key = $2 and status <> 'replayed' order by key_seq, msg_id`,
        [group, key],
      )
    ).map((r) => r.id),
  );
}

/** Whether the group exists (actions check this first, to name the group in the error). */
export async function groupExists(db: Queryable, group: string): Promise<boolean> {
  return snapshot(db, async (q) => (await q('select 1 from bucketq.groups where group_name = $1', [group])).length > 0);
}
