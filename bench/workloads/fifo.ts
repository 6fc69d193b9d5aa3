// Workloads 5 and 5b: per-key FIFO, keys x messages, order checked in the handler (graphile-worker: a job queue per key); fifo-retry fails the first attempt of every n-th message of each key.
import { keyedMessages, OrderChecker, withSystem, type RunContext, type Workload } from '../lib/common.js';
import { drainTimed, preload } from '../lib/drain.js';

export function fifoWorkload(
  id: string,
  title: string,
  keys: (ctx: RunContext) => number,
  perKey: (ctx: RunContext) => number,
  failEvery: (ctx: RunContext) => number = () => 0,
): Workload {
  return {
    id,
    title,
    primary: 'msgsPerSec',
    unit: 'msg/s',
    higherIsBetter: true,
    subjects: ['bucketq', 'graphile-worker'],
    zeroForBucketq: ['violations'],
    async run(subject, ctx) {
      const k = keys(ctx);
      const n = k * perKey(ctx);
      const fe = failEvery(ctx);
      return withSystem(subject, ctx, { groups: ['g1'], fifo: true }, async (sys, db) => {
        await preload(sys, ctx, keyedMessages(n, k), 2000);
        const checker = new OrderChecker();
        const { value: { ms, handled }, waits } = await drainTimed(sys, db, ctx, ['g1'], n, checker, ctx.sizes.maxDrainMs, fe);
        return {
          metrics: { msgsPerSec: (handled / ms) * 1000, seconds: ms / 1000, completedShare: handled / n, violations: checker.violations, outOfOrder: checker.outOfOrder, overlapping: checker.overlapping, handled: checker.seen },
          waits,
          extra: { keys: k, perKey: n / k, failFirstAttemptOfEvery: fe || undefined },
        };
      }, fe ? { backoffBase: '0 seconds' } : {});
    },
  };
}

export const fifo = fifoWorkload('fifo', 'Per-key FIFO (order checked in the handler)', (c) => c.sizes.fifo.keys, (c) => c.sizes.fifo.perKey);
export const fifoRetry = fifoWorkload(
  'fifo-retry',
  'Per-key FIFO with retries (first attempt of every n-th message of a key fails)',
  (c) => c.sizes.fifo.keys,
  (c) => c.sizes.fifo.perKey,
  (c) => c.sizes.fifo.failEvery,
);
