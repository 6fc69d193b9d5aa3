// SIGTERM to `npx bucketq worker` (the way a process manager or a test harness stops
// it) must stop the worker through npx's wrappers: the worker stops gracefully (leaves
// the group, releasing its buckets at once) and exits.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { ROOT } from './support/private-copy.js';

let db: FreshDatabase;
let bq: BucketQ;
const dir = mkdtempSync(path.join(os.tmpdir(), 'bucketq-signal-'));
const handler = path.join(dir, 'handler.mjs');

// An app that depends on bucketq, as `npm install <path to this checkout>` lays it out
// (a symlink and its bin), so npx runs the local bin at once instead of installing.
const app = path.join(dir, 'app');

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
  writeFileSync(handler, 'export default async () => {};\n');
  mkdirSync(path.join(app, 'node_modules', '.bin'), { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { bucketq: `file:${ROOT}` } }));
  symlinkSync(ROOT, path.join(app, 'node_modules', 'bucketq'));
  symlinkSync('../bucketq/bin/bucketq.js', path.join(app, 'node_modules', '.bin', 'bucketq'));
});
afterAll(async () => {
  await bq.close();
  await db.drop();
  rmSync(dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function consumers(group: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from bucketq.consumers where group_name = $1', [group]);
  return rows[0]!.n;
}

describe('SIGTERM', () => {
  it.each([
    ['npx', ['bucketq']],
    ['npm', ['exec', '--', 'bucketq']],
  ])('to `%s ... worker` stops the worker gracefully', async (cmd, prefix) => {
    const group = `sig.${cmd}`;
    await bq.createTopic(`sig.${cmd}.t`, { buckets: 4 });
    await bq.createGroup(group, `sig.${cmd}.t`, { startAt: 'earliest' });
    const child = spawn(cmd, [...prefix, 'worker', '--group', group, '--handler', handler, '--heartbeat-ms', '200'], {
      cwd: app,
      env: { ...process.env, DATABASE_URL: db.connectionString, LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    try {
      for (let i = 0; i < 1200 && !out.includes('joined group'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain('joined group');
      expect(await consumers(group)).toBe(1);

      child.kill('SIGTERM');
      // npm exits on SIGTERM and its `sh -c` dies without passing the signal on; the
      // worker (an orphan now, still writing to our pipe) must stop gracefully anyway.
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      for (let i = 0; i < 300 && !out.includes('left group'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain('stopping: finishing in-flight work');
      expect(out).toContain('left group');
      // Left at once (not after the session timeout), and the worker process is gone.
      expect(await consumers(group)).toBe(0);
      const pid = Number(/"pid":(\d+)/.exec(out)![1]);
      for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
      expect(alive(pid), `worker process ${pid} still running`).toBe(false);
    } finally {
      child.kill('SIGKILL');
      const pid = /"pid":(\d+)/.exec(out)?.[1];
      if (pid && alive(Number(pid))) process.kill(Number(pid), 'SIGKILL');
    }
  });
});
