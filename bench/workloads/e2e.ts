// Workload 3: producers and consumers at once for a fixed time; sustained completed
// messages/s (counted after a warm-up) and the backlog left at the end.
import { now, sampled, sleep, withSystem, type Workload } from '../lib/common.js';
import { startProducers } from '../lib/load.js';

export const e2e: Workload = {
  id: 'e2e',
  title: 'End-to-end: producers and consumers at once',
  primary: 'completedPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  async run(subject, ctx) {
    const { seconds, warmupSeconds, producerBatch, producers } = ctx.sizes.e2e;
    return withSystem(subject, ctx, { groups: ['g1'] }, async (sys, db) => {
      let completed = 0;
      const workers = await sys.consume({ g1: () => void completed++ });
      const { value, waits } = await sampled(ctx, db, async () => {
        const prod = startProducers(sys, subject, ctx, { producers, batch: producerBatch });
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
      return { metrics: value, waits, extra: { producers, producerBatch, seconds, warmupSeconds } };
    });
  },
};
