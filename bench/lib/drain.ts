// Preload a backlog and drain it with in-process workers, timed.
import { chunks, now, sampled, waitFor, type OrderChecker, type RunContext } from './common.js';
import type { BenchMessage, QueueSystem } from '../systems/types.js';
import type { BenchDatabase } from './db.js';

/** Starts workers on a preloaded backlog and times until every group is done and the backlog is empty. */
export async function drainTimed(
  sys: QueueSystem,
  db: BenchDatabase,
  ctx: RunContext,
  groups: string[],
  perGroup: number,
  checker?: OrderChecker,
  maxMs = Infinity,
  /** Fail the first attempt of messages whose per-key sequence number is 1 modulo failEvery (1, 1 + failEvery, ...). */
  failEvery = 0,
): Promise<{ value: { ms: number; handled: number; firstMs: number | null }; waits: Record<string, number> }> {
  const done = new Map(groups.map((g) => [g, 0]));
  const total = perGroup * groups.length;
  let count = 0;
  // When the first message was handled: the workers' start (connections, join, first
  // claim) is inside ms, and on a short drain it is a good part of it.
  let firstAt: number | null = null;
  const failed = new Set<string>();
  const timeoutMs = Math.max(60_000, (total / 100) * 1000);
  return sampled(ctx, db, async () => {
    const t0 = now();
    const workers = await sys.consume(
      Object.fromEntries(
        groups.map((g) => [
          g,
          async (p: { k: string | null; s: number }) => {
            const id = `${g}/${p.k}/${p.s}`;
            const fail = failEvery > 0 && p.s % failEvery === 1 && !failed.has(id);
            if (fail) failed.add(id);
            if (checker) await checker.handle(p.k, p.s, fail);
            else if (fail) throw new Error('injected failure');
            done.set(g, done.get(g)! + 1);
            firstAt ??= now();
            count++;
          },
        ]),
      ),
    );
    try {
      // A run that would take too long (graphile-worker on one job queue) is cut at maxMs
      // and its rate taken over what it handled by then.
      await waitFor('all messages handled', () => {
        ctx.progress(`${count}/${total}`);
        return count >= total || now() - t0 > maxMs;
      }, timeoutMs);
      const firstMs = firstAt === null ? null : firstAt - t0;
      if (count < total) return { ms: now() - t0, handled: count, firstMs };
      await waitFor('backlog empty', () => sys.caughtUp(), 30_000, 20);
      return { ms: now() - t0, handled: count, firstMs };
    } finally {
      await workers.stop();
    }
  });
}

export async function preload(sys: QueueSystem, ctx: RunContext, msgs: BenchMessage[], batch: number): Promise<number> {
  const t0 = now();
  let sent = 0;
  for (const c of chunks(msgs, batch)) {
    await sys.sendBatch(c);
    sent += c.length;
    ctx.progress(`loading ${sent}/${msgs.length}`);
  }
  return now() - t0;
}

