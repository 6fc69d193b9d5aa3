// Worker processes for the scaling and failover workloads: `bucketq worker` (the real
// CLI) and a graphile-worker runner. Only processes started here are ever signalled.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUCKETQ_DEFAULTS } from '../systems/bucketq.js';
import type { QueueSystem } from '../systems/types.js';
import { sleep, waitFor, type Subject } from './common.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface WorkerProc {
  id: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function start(id: string, args: string[], env: Record<string, string>): WorkerProc {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (b: Buffer) => {
    output.push(b.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { id, child, output, exited };
}

export function startBucketqWorker(url: string, group: string, id: string, handlerMode: 'noop' | 'effect'): WorkerProc {
  return start(
    id,
    [
      'src/cli.ts', 'worker',
      '--group', group,
      '--handler', 'bench/workers/bq-handler.ts',
      '--database-url', url,
      '--concurrency', String(BUCKETQ_DEFAULTS.concurrency),
      '--batch-size', String(BUCKETQ_DEFAULTS.batchSize),
      '--transaction', BUCKETQ_DEFAULTS.transaction,
      '--consumer-id', id,
      '--stop-timeout-ms', '5000',
    ],
    { BENCH_HANDLER: handlerMode, LOG_LEVEL: process.env.BENCH_DEBUG ? 'info' : 'warn' },
  );
}

export function startGraphileWorker(url: string, task: string, id: string, handlerMode: 'noop' | 'effect'): WorkerProc {
  return start(id, ['bench/workers/graphile-proc.ts'], { BENCH_URL: url, BENCH_TASK: task, BENCH_TAG: id, BENCH_HANDLER: handlerMode });
}

export async function waitReadyLine(p: WorkerProc, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${p.id} ready`, () => {
    if (p.child.exitCode !== null) throw new Error(`${p.id} exited early:\n${p.output.join('')}`);
    return p.output.join('').includes('ready\n');
  }, timeoutMs, 20);
}

/**
 * Starts n worker processes (w0, w1, ...) on group g1, pushing each into `procs` as it
 * starts (so the caller's finally stops them), and waits until they are all up: for
 * bucketq, until every bucket is owned and by all n; for graphile-worker, each runner's
 * `ready` line.
 */
export async function startWorkers(sys: QueueSystem, subject: Subject, n: number, mode: 'noop' | 'effect', procs: WorkerProc[], timeoutMs = 60_000): Promise<void> {
  for (let i = 0; i < n; i++) {
    procs.push(subject === 'bucketq' ? startBucketqWorker(sys.url, 'g1', `w${i}`, mode) : startGraphileWorker(sys.url, 'g1', `w${i}`, mode));
  }
  if (subject !== 'bucketq') {
    for (const p of procs) await waitReadyLine(p, timeoutMs);
    return;
  }
  const c = await sys.connect();
  try {
    await waitFor('buckets balanced over the workers', async () => {
      for (const p of procs) if (p.child.exitCode !== null) throw new Error(`${p.id} exited:\n${p.output.join('')}`);
      const { rows } = await c.query<{ owners: number; free: number }>(
        `select count(distinct owner)::int as owners, count(*) filter (where owner is null)::int as free from bucketq.bucket_owner`,
      );
      return rows[0]!.owners === n && rows[0]!.free === 0;
    }, timeoutMs, 50);
  } finally {
    c.release();
  }
}

/** SIGTERM, then SIGKILL after graceMs; by pid of processes we started. */
export async function stopProcs(procs: WorkerProc[], graceMs = 8000): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGTERM');
      const done = await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!done) {
        p.child.kill('SIGKILL');
        await p.exited;
      }
    }),
  );
}
