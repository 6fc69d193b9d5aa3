// graphile-worker in its fastest documented configuration
// (https://worker.graphile.org/docs/performance): batched add_jobs, local queue,
// batched completion and failure.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { run, makeWorkerUtils, type Runner, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import { quietGraphileLogger } from '../lib/db.js';
import type { BenchHandler, BenchMessage, BenchPayload, QueueSystem, RunningWorkers, SystemSetup } from './types.js';

const require = createRequire(import.meta.url);
// 0.18 exports only its entry point, not ./package.json: read it beside the resolved entry (dist/index.js).
export const GRAPHILE_VERSION: string = (
  JSON.parse(readFileSync(path.join(path.dirname(require.resolve('graphile-worker')), '..', 'package.json'), 'utf8')) as { version: string }
).version;

export interface GraphileBenchOptions {
  concurrency: number;
  maxPoolSize: number;
  pollInterval: number;
  localQueueSize: number;
  completeJobBatchDelay: number;
  failJobBatchDelay: number;
}

// The configuration of graphile-worker's own performance page (concurrentJobs 24,
// maxPoolSize 25, localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0).
export const GRAPHILE_DEFAULTS: GraphileBenchOptions = {
  concurrency: 24,
  maxPoolSize: 25,
  pollInterval: 2000,
  localQueueSize: 500,
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
};

export function graphileRunnerOptions(url: string, o: GraphileBenchOptions) {
  return {
    connectionString: url,
    concurrency: o.concurrency,
    maxPoolSize: o.maxPoolSize,
    pollInterval: o.pollInterval,
    noHandleSignals: true,
    logger: quietGraphileLogger(),
    preset: {
      worker: {
        localQueue: { size: o.localQueueSize },
        completeJobBatchDelay: o.completeJobBatchDelay,
        failJobBatchDelay: o.failJobBatchDelay,
      },
    },
  };
}

/**
 * The two configurations the FIFO workloads (fifo, fifo-retry, hotkey) run with job
 * queue names, each in its own database; the table shows the faster of those with the
 * fewest order violations, and both configurations' rate and violations on lines of
 * their own (see workloads/fifo.ts).
 *  - localQueue500: the defaults above. From 0.18.0 a batch fetch keeps one job per job
 *    queue (0.17.3 fetched several jobs of one queue in one batch and ran them at the
 *    same time: overlaps), so a local queue is order-safe with job queues.
 *  - localQueueOff: localQueue and batched completion off, what this benchmark used with
 *    0.17.3 (with batched completion a worker asks for its queue's next job before the
 *    queue is unlocked, finds none and sleeps until the next poll).
 */
export const GRAPHILE_FIFO_CONFIGS = {
  localQueue500: {},
  localQueueOff: { localQueueSize: -1, completeJobBatchDelay: -1, failJobBatchDelay: -1 },
} satisfies Record<string, Partial<GraphileBenchOptions>>;
export type GraphileFifoConfig = keyof typeof GRAPHILE_FIFO_CONFIGS;

/** The statement WorkerUtils.addJobs runs, for sending inside a caller's transaction. */
export const ADD_JOBS_SQL = `select count(*) from graphile_worker.add_jobs(
  array(select json_populate_recordset(null::graphile_worker.job_spec, $1::json)), false)`;

export class GraphileSystem implements QueueSystem {
  readonly name = 'graphile-worker' as const;
  readonly options: Record<string, unknown>;
  readonly pool: pg.Pool;
  private utils: WorkerUtils | undefined;
  private groups: string[] = [];
  private fifo = false;

  constructor(readonly url: string, private readonly o: GraphileBenchOptions = GRAPHILE_DEFAULTS) {
    this.options = {
      version: GRAPHILE_VERSION,
      ...o,
      send: 'WorkerUtils.addJobs (graphile_worker.add_jobs), one job per message per group; addJob for single sends',
      fanOut: 'one task identifier per group, one job each',
      fifo: 'job queue named after the key (queueName); fifo workloads run each of GRAPHILE_FIFO_CONFIGS (systems/graphile.ts)',
    };
    this.pool = new pg.Pool({ connectionString: url, max: 8 });
    this.pool.on('error', () => {});
    this.pool.on('connect', (c) => c.on('error', () => {}));
  }

  async setup(s: SystemSetup): Promise<void> {
    this.groups = s.groups;
    this.fifo = s.fifo ?? false;
    this.utils = await makeWorkerUtils({ pgPool: this.pool, logger: quietGraphileLogger() });
  }

  private specs(msgs: BenchMessage[]) {
    const specs = [];
    for (const m of msgs) {
      for (const g of this.groups) {
        specs.push(
          this.fifo && m.key !== null
            ? { identifier: g, payload: m.payload, queueName: m.key }
            : { identifier: g, payload: m.payload },
        );
      }
    }
    return specs;
  }

  async sendBatch(msgs: BenchMessage[], client?: pg.ClientBase): Promise<void> {
    if (client) {
      const specs = this.specs(msgs).map((s) => ({ identifier: s.identifier, payload: s.payload, queue_name: s.queueName }));
      await client.query(ADD_JOBS_SQL, [JSON.stringify(specs)]);
      return;
    }
    await this.utils!.addJobs(this.specs(msgs));
  }

  async sendOne(m: BenchMessage): Promise<void> {
    for (const g of this.groups) {
      await this.utils!.addJob(g, m.payload, this.fifo && m.key !== null ? { queueName: m.key } : {});
    }
  }

  async consume(handlers: Record<string, BenchHandler>): Promise<RunningWorkers> {
    const taskList = Object.fromEntries(
      Object.entries(handlers).map(([g, h]) => [g, async (payload: unknown) => void (await h(payload as BenchPayload))]),
    );
    const o = this.o;
    // Our own pool (graphile's maxPoolSize), so that it has error handlers and is
    // closed before the database is dropped.
    const pool = new pg.Pool({ connectionString: this.url, max: o.maxPoolSize });
    pool.on('error', () => {});
    pool.on('connect', (c) => c.on('error', () => {}));
    const { connectionString: _unused, ...options } = graphileRunnerOptions(this.url, o);
    const runner: Runner = await run({ ...options, pgPool: pool, taskList });
    return {
      stop: async () => {
        await runner.stop();
        await pool.end().catch(() => {});
      },
    };
  }

  async backlog(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs');
    return rows[0]!.n;
  }

  async caughtUp(): Promise<boolean> {
    const { rows } = await this.pool.query<{ c: boolean }>('select not exists (select 1 from graphile_worker._private_jobs) as c');
    return rows[0]!.c;
  }

  connect(): Promise<pg.PoolClient> {
    return this.pool.connect();
  }

  async close(): Promise<void> {
    await this.utils?.release();
    await this.pool.end().catch(() => {});
  }
}
