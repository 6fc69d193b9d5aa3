// Workloads 5 and 5b: per-key FIFO, keys x messages, order checked in the handler (graphile-worker: a job queue per key); fifo-retry fails the first attempt of every n-th message of each key.
// graphile-worker runs once in each of GRAPHILE_FIFO_CONFIGS (a fresh database each): its
// primary figures are those of the configuration with the fewest order violations (the
// faster one on a tie), and every configuration's rate and violations are kept as lines
// of their own (`localQueue500_msgsPerSec`, `localQueueOff_violations`, ...).
// The backlog is sent interleaved: statements of min(2,000, keys) messages round-robin
// over the keys, so no statement holds two messages of one key. graphile-worker orders a job
// queue by run_at, and the jobs of one add_jobs statement share it (now()): with two of a
// key in one statement, its batch fetch (local queue) took them in either order (0.18.0,
// 1,000 keys x 50 in statements of 2,000: 9,318 out of order, no overlaps). The hot key
// cannot be sent that way (one message per statement); it uses statements of 2,000.
import { keyedMessages, OrderChecker, withSystem, type RunContext, type RunResult, type Subject, type Workload } from '../lib/common.js';
import { drainTimed, preload } from '../lib/drain.js';
import { GRAPHILE_FIFO_CONFIGS, type GraphileFifoConfig } from '../systems/graphile.js';

export function fifoWorkload(
  id: string,
  title: string,
  keys: (ctx: RunContext) => number,
  perKey: (ctx: RunContext) => number,
  failEvery: (ctx: RunContext) => number = () => 0,
  sendBatch: (ctx: RunContext) => number = (ctx) => Math.min(2000, keys(ctx)),
): Workload {
  const once = (subject: Subject, ctx: RunContext, config?: GraphileFifoConfig): Promise<RunResult> => {
    const k = keys(ctx);
    const n = k * perKey(ctx);
    const fe = failEvery(ctx);
    return withSystem(
      subject,
      ctx,
      { groups: ['g1'], fifo: true },
      async (sys, db) => {
        await preload(sys, ctx, keyedMessages(n, k), sendBatch(ctx));
        const checker = new OrderChecker();
        const { value: { ms, handled, firstMs }, waits } = await drainTimed(sys, db, ctx, ['g1'], n, checker, ctx.sizes.maxDrainMs, fe);
        return {
          metrics: { msgsPerSec: (handled / ms) * 1000, seconds: ms / 1000, firstMs, completedShare: handled / n, violations: checker.violations, outOfOrder: checker.outOfOrder, repeated: checker.repeated, overlapping: checker.overlapping, handled: checker.seen },
          waits,
          extra: { keys: k, perKey: n / k, sendBatch: sendBatch(ctx), failFirstAttemptOfEvery: fe || undefined, graphileConfig: config },
        };
      },
      fe ? { backoffBase: '0 seconds' } : {},
      config ? GRAPHILE_FIFO_CONFIGS[config] : {},
    );
  };
  return {
    id,
    title,
    primary: 'msgsPerSec',
    unit: 'msg/s',
    higherIsBetter: true,
    subjects: ['bucketq', 'graphile-worker'],
    zeroForBucketq: ['violations'],
    async run(subject, ctx) {
      if (subject !== 'graphile-worker') return once(subject, ctx);
      const byConfig: [GraphileFifoConfig, RunResult][] = [];
      for (const config of Object.keys(GRAPHILE_FIFO_CONFIGS) as GraphileFifoConfig[]) {
        ctx.progress(`graphile-worker configuration ${config}`);
        byConfig.push([config, await once(subject, ctx, config)]);
      }
      const v = (r: RunResult) => r.metrics.violations ?? Infinity;
      const [chosen, best] = [...byConfig].sort(([, a], [, b]) => v(a) - v(b) || (b.metrics.msgsPerSec ?? 0) - (a.metrics.msgsPerSec ?? 0))[0]!;
      const perConfig = Object.fromEntries(
        byConfig.flatMap(([c, r]) => [[`${c}_msgsPerSec`, r.metrics.msgsPerSec ?? null], [`${c}_violations`, r.metrics.violations ?? null]]),
      );
      return {
        ...best,
        metrics: { ...best.metrics, ...perConfig },
        extra: { ...best.extra, graphileConfig: chosen, configs: Object.fromEntries(byConfig.map(([c, r]) => [c, { metrics: r.metrics, options: r.extra?.options }])) },
      };
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
