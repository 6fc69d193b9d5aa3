// Workload 3: producers and consumers at once for a fixed time; sustained completed
// messages/s (counted after a warm-up) and the backlog left at the end.
import { now, sampled, sleep, withSystem, type RunContext, type RunResult, type Subject, type Workload } from '../lib/common.js';
import { startProducers } from '../lib/load.js';
import type { BucketqBenchOptions } from '../systems/bucketq.js';

/** The e2e run itself; `bq` adjusts bucketq's setup (e2e-aged ages its topic). */
function runE2e(subject: Subject, ctx: RunContext, bq: Partial<BucketqBenchOptions> = {}, unkeyed = false): Promise<RunResult> {
  const { seconds, warmupSeconds, producerBatch, producers } = ctx.sizes.e2e;
  return withSystem(
    subject,
    ctx,
    { groups: ['g1'] },
    async (sys, db) => {
      let completed = 0;
      const workers = await sys.consume({ g1: () => void completed++ });
      const { value, waits } = await sampled(ctx, db, async () => {
        const prod = startProducers(sys, subject, ctx, { producers, batch: producerBatch, unkeyed });
        const tStart = now();
        const progress = setInterval(() => ctx.progress(`${Math.round((now() - tStart) / 1000)}/${warmupSeconds + seconds} s, sent ${prod.sent}, done ${completed}`), 200);
        await sleep(warmupSeconds * 1000);
        const c0 = completed;
        const s0 = prod.sent;
        const t0 = now();
        await sleep(seconds * 1000);
        const ms = now() - t0;
        const c1 = completed;
        const s1 = prod.sent;
        await prod.stop();
        clearInterval(progress);
        const backlogEnd = await sys.backlog();
        return { completedPerSec: ((c1 - c0) / ms) * 1000, sentPerSec: ((s1 - s0) / ms) * 1000, backlogEnd };
      });
      await workers.stop();
      return { metrics: value, waits, extra: { producers, producerBatch, seconds, warmupSeconds, keyed: !unkeyed && subject === 'bucketq', ...bq } };
    },
    bq,
  );
}

export const e2e: Workload = {
  id: 'e2e',
  title: 'End-to-end: producers and consumers at once',
  primary: 'completedPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  run: (subject, ctx) => runE2e(subject, ctx),
};

/**
 * e2e on a topic a week old: bucketq's log keeps a partition per day for its retention
 * (7 days by default), and a statement over the log that cannot prune by time sets up a
 * scan of every one. graphile-worker deletes finished jobs, so a week changes nothing
 * for it: it runs as in e2e, for the ratio. Figure: e2e-aged / e2e (target >= 0.9x, as
 * for a soak's last minute against its first).
 */
export const AGED = { agedDays: 7, agedMessagesPerDay: 20_000 } as const;
export const e2eAged: Workload = {
  id: 'e2e-aged',
  title: `End-to-end on a topic a week old (${AGED.agedDays} past daily partitions of ${AGED.agedMessagesPerDay.toLocaleString('en-US')} consumed messages)`,
  primary: 'completedPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  run: (subject, ctx) => runE2e(subject, ctx, subject === 'bucketq' ? AGED : {}),
};

/**
 * e2e without keys for bucketq too: what the per-key counter costs end to end, with
 * graphile-worker run again as in e2e (plain jobs) for the ratio in the same run. The
 * target (2x) is on the keyed e2e; this row shows how much of the gap is the keys.
 */
export const e2eUnkeyed: Workload = {
  id: 'e2e-unkeyed',
  title: 'End-to-end without keys (bucketq unkeyed, graphile-worker plain jobs as in e2e)',
  primary: 'completedPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  run: (subject, ctx) => runE2e(subject, ctx, {}, true),
};
