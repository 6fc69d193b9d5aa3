// bucketq through its public TypeScript surface: BucketQ.sendBatch / send and consume().
import pg from 'pg';
import { pino } from 'pino';
import { BucketQ } from '../../src/client.js';
import { consume, type Consumer } from '../../src/worker/consumer.js';
import type { BenchHandler, BenchMessage, BenchPayload, QueueSystem, RunningWorkers, SystemSetup } from './types.js';

export const TOPIC = 'bench';

export interface BucketqBenchOptions {
  buckets: number;
  concurrency: number;
  batchSize: number;
  transaction: 'batch' | 'message';
  pollIntervalMs: number;
  sessionTimeout: string;
  /** Group retry backoff base (default: the group default, 1 second). */
  backoffBase?: string;
  /**
   * A topic as it is after running that many days: as many past daily partitions, each
   * holding `agedMessagesPerDay` messages that the groups (which then start at 'latest')
   * have passed, vacuumed and analyzed. Retention (7 days by default) keeps them.
   */
  agedDays?: number;
  agedMessagesPerDay?: number;
  /**
   * Other topics in the database, each with `otherTopicDays` (default 7) past daily
   * partitions, empty: a cluster of many topics a week old. The measured topic is as usual.
   */
  otherTopics?: number;
  otherTopicDays?: number;
}

export const BUCKETQ_DEFAULTS: BucketqBenchOptions = {
  buckets: 16,
  concurrency: 4,
  batchSize: 250,
  transaction: 'batch',
  pollIntervalMs: 1000,
  sessionTimeout: '10 seconds',
};

export class BucketqSystem implements QueueSystem {
  readonly name = 'bucketq' as const;
  readonly options: Record<string, unknown>;
  readonly pool: pg.Pool;
  readonly client: BucketQ;
  private groups: string[] = [];

  constructor(readonly url: string, private readonly o: BucketqBenchOptions = BUCKETQ_DEFAULTS) {
    this.options = {
      ...o,
      maxPerKey: 'batchSize (the worker default: a claim may take runs of one key)',
      claimMode: "auto (the worker default for batch transactions: a lease claim on an own connection with synchronous_commit = off while claims come back partly full; claim_locked in the batch's own transaction, no lease written, attempt recorded first, while they come back full)",
      consumersPerGroup: 1,
      send: 'BucketQ.sendBatch (bucketq.send_batch) / BucketQ.send',
    };
    this.pool = new pg.Pool({ connectionString: url, max: 8 });
    this.pool.on('error', () => {});
    this.client = new BucketQ({ pool: this.pool });
  }

  async setup(s: SystemSetup): Promise<void> {
    this.groups = s.groups;
    await this.client.createTopic(TOPIC, { buckets: this.o.buckets });
    const aged = (this.o.agedDays ?? 0) > 0;
    if (aged) await this.age(this.o.agedDays!, this.o.agedMessagesPerDay ?? 20_000);
    if (this.o.otherTopics) await this.otherTopics(this.o.otherTopics, this.o.otherTopicDays ?? 7);
    for (const g of s.groups) {
      await this.client.createGroup(g, TOPIC, {
        startAt: aged ? 'latest' : 'earliest',
        sessionTimeout: this.o.sessionTimeout,
        ...(this.o.backoffBase ? { backoffBase: this.o.backoffBase } : {}),
      });
    }
    // As it has run every minute for that week: the log's floor above the days passed.
    if (aged) await this.pool.query('select * from bucketq.maintain()');
  }

  /** Topics beside the measured one, each with `days` past daily partitions (empty). */
  private async otherTopics(n: number, days: number): Promise<void> {
    const names = Array.from({ length: n }, (_, i) => `${TOPIC}.other.${i + 1}`);
    for (const name of names) await this.client.createTopic(name, { buckets: this.o.buckets });
    await this.pastPartitions(names, days);
  }

  /** `days` past partitions (one partition_interval each) for each of these topics. */
  private async pastPartitions(topics: string[], days: number): Promise<void> {
    await this.pool.query(
      `select bucketq._create_partitions(t.topic_id, d.lo, d.lo + t.partition_interval)
         from bucketq.topic t
        cross join lateral (select date_bin(t.partition_interval, bucketq._now(), timestamptz '2000-01-01 00:00:00+00')
                                   - t.partition_interval * i as lo
                              from generate_series(1, $2::int) i) d
        where t.name = any($1::text[])`,
      [topics, days],
    );
  }

  /** Past partitions with their messages, written directly (as days of sends would leave them). */
  private async age(days: number, perDay: number): Promise<void> {
    await this.pastPartitions([TOPIC], days);
    for (let day = days; day >= 1; day--) {
      await this.pool.query(
        `insert into bucketq.message (id, topic_id, sent_at, bucket, key, payload, xid, ord)
         select nextval('bucketq.message_id_seq'), t.topic_id,
                date_bin(t.partition_interval, bucketq._now(), timestamptz '2000-01-01 00:00:00+00')
                  - t.partition_interval * $2::int + t.partition_interval * (n::float8 / ($3::int + 1)),
                n % t.buckets, null, jsonb_build_object('aged', n), pg_current_xact_id(), nextval('bucketq.message_ord_seq')
           from bucketq.topic t cross join generate_series(1, $3::int) n
          where t.name = $1`,
        [TOPIC, day, perDay],
      );
    }
    await this.pool.query('vacuum analyze bucketq.message');
  }

  async sendBatch(msgs: BenchMessage[], client?: pg.ClientBase): Promise<void> {
    await this.client.sendBatch(
      TOPIC,
      msgs.map((m) => (m.key === null ? { payload: m.payload } : { payload: m.payload, key: m.key })),
      client ? { client } : {},
    );
  }

  async sendOne(m: BenchMessage): Promise<void> {
    await this.client.send(TOPIC, m.payload, m.key === null ? {} : { key: m.key });
  }

  async consume(handlers: Record<string, BenchHandler>): Promise<RunningWorkers> {
    const logger = pino({ level: process.env.BENCH_DEBUG ? 'info' : 'silent' });
    const consumers: Consumer[] = [];
    for (const [group, handler] of Object.entries(handlers)) {
      consumers.push(
        await consume(
          { connectionString: this.url },
          {
            group,
            handler: (m) => handler(m.payload as BenchPayload),
            concurrency: this.o.concurrency,
            batchSize: this.o.batchSize,
            transaction: this.o.transaction,
            pollIntervalMs: this.o.pollIntervalMs,
          },
          logger,
        ),
      );
    }
    return { stop: async () => void (await Promise.all(consumers.map((c) => c.stop({ timeoutMs: 10_000 })))) };
  }

  async backlog(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      // Everything not yet acked: the inbox's exceptions and the logs past the checkpoints,
      // counted without telling ready from waiting (the scaling and churn workloads poll
      // this every 10 to 25 ms while the workers run; graphile-worker's is a count(*)).
      'select coalesce(sum(pending), 0)::int as n from bucketq.groups',
    );
    return rows[0]!.n;
  }

  async caughtUp(): Promise<boolean> {
    // Index probes per bucket, however large the backlog (pending counts it: 4.5 to 17 ms
    // a call at 10,000 messages).
    const { rows } = await this.pool.query<{ c: boolean }>('select coalesce(bool_and(caught_up), true) as c from bucketq.groups');
    return rows[0]!.c;
  }

  connect(): Promise<pg.PoolClient> {
    return this.pool.connect();
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.pool.end();
  }

  get groupNames(): string[] {
    return this.groups;
  }
}
