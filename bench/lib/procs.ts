// Worker processes for the scaling and failover workloads: `bucketq worker` (the real
// CLI) and a graphile-worker runner. Only processes started here are ever signalled.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUCKETQ_DEFAULTS } from '../systems/bucketq.js';
import { sleep, waitFor } from './common.js';

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
