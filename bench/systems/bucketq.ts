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
    for (const g of s.groups) {
      await this.client.createGroup(g, TOPIC, {
        startAt: 'earliest',
        sessionTimeout: this.o.sessionTimeout,
        ...(this.o.backoffBase ? { backoffBase: this.o.backoffBase } : {}),
      });
    }
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
      // Everything not yet acked: the inbox's exceptions and the logs past the checkpoints.
      'select coalesce(sum(ready + leased + delayed + waiting + dead_blocking), 0)::int as n from bucketq.lag',
    );
    return rows[0]!.n;
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
