// `bucketq demo` end to end, as a newcomer runs it: a child process (plain output) on a
// fresh database, three worker processes, one SIGKILLed mid-work and replaced. The demo
// itself checks exactly-once effects, per-key order and that nothing is lost; this test
// checks that it says VERIFIED, tells the crash story, and leaves no process behind.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

let db: FreshDatabase;
beforeAll(async () => {
  db = await freshDatabase();
});
afterAll(async () => {
  await db?.drop();
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

/** Runs `bucketq demo` from the source; `onOutput` may signal the child as output arrives. */
function runDemo(args: string[], onOutput?: (out: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo', ...args], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: db.connectionString, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (chunk: Buffer) => {
    out += chunk.toString();
    onOutput?.(out, (s) => child.kill(s));
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })));
}

function workerPids(out: string): number[] {
  return [...out.matchAll(/started w\d+ \(pid (\d+)\)/g)].map((m) => Number(m[1]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Worker processes are reaped by the demo before it exits; give the OS a moment anyway. */
async function expectAllGone(pids: number[]): Promise<void> {
  for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  expect(pids.filter(alive), 'worker processes still running after the demo exited').toEqual([]);
}

describe('bucketq demo', () => {
  it('runs producer and three workers, survives a SIGKILL with a visible failover, and prints VERIFIED', async () => {
    // The web console runs alongside: its address is printed and it answers while the demo runs.
    let consolePage: Promise<number> | undefined;
    const run = await runDemo(['--messages', '3000', '--rate', '1000', '--plain'], (out) => {
      const url = /console\s+(http:\/\/127\.0\.0\.1:\d+\/groups\/\S+)/.exec(out)?.[1];
      if (url && !consolePage) consolePage = fetch(url).then((r) => r.status, () => -1);
    });
    expect(run.code, run.out).toBe(0);
    expect(consolePage, run.out).toBeDefined();
    await expect(consolePage).resolves.toBe(200);
    expect(run.out).toMatch(/^VERIFIED: 3,000 messages/m);
    expect(run.out).toMatch(/✓ exactly once/);
    expect(run.out).toMatch(/✓ per-key order/);
    expect(run.out).toMatch(/✓ nothing lost/);

    // The crash story: the kill, the killed worker's buckets moving with new epochs,
    // the failover, a new worker taking its share, a graceful stop.
    const kill = /SIGKILL (w\d) \(pid \d+\)/.exec(run.out);
    expect(kill, run.out).not.toBeNull();
    const victim = kill![1]!;
    const afterKill = run.out.slice(kill!.index);
    expect(afterKill, run.out).toMatch(new RegExp(`buckets? moved ${victim} → w\\d: (\\d+@\\d+ ?)+`));
    expect(afterKill).toMatch(/failover done [\d.]+ s after the kill/);
    expect(afterKill).toMatch(/w4 has its share: .*w4 owns \d/);
    expect(run.out.match(/left the group and exited 0/g)).toHaveLength(3);

    const pids = workerPids(run.out);
    expect(pids).toHaveLength(4);
    await expectAllGone(pids);
  }, 90_000);

  it('Ctrl-C (SIGINT) stops the demo and its worker processes', async () => {
    let sent = false;
    const run = await runDemo(['--messages', '100000', '--rate', '500', '--plain'], (out, kill) => {
      if (!sent && out.includes('[3/7]')) {
        sent = true;
        kill('SIGINT');
      }
    });
    expect(sent, run.out).toBe(true);
    expect(run.code, run.out).toBe(130);
    const pids = workerPids(run.out);
    expect(pids).toHaveLength(3);
    await expectAllGone(pids);
  }, 60_000);
});
