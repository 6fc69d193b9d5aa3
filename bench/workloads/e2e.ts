// Workload 3: producers and consumers at once for a fixed time; sustained completed
// messages/s (counted after a warm-up) and the backlog left at the end.
import { keyedMessages, now, sampled, sleep, throughputKey, withSystem, type Workload } from '../lib/common.js';

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
      let sent = 0;
      let running = true;
      const workers = await sys.consume({ g1: () => void completed++ });
      const { value, waits } = await sampled(ctx, db, async () => {
        const loops = Array.from({ length: producers }, async (_, p) => {
          let offset = p * 7919;
          while (running) {
            const batch = keyedMessages(producerBatch, ctx.sizes.keys, offset).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
            offset += producerBatch;
            await sys.sendBatch(batch);
            sent += batch.length;
          }
        });
        const tStart = now();
        const progress = setInterval(() => ctx.progress(`${Math.round((now() - tStart) / 1000)}/${warmupSeconds + seconds} s, sent ${sent}, done ${completed}`), 200);
        await sleep(warmupSeconds * 1000);
        const c0 = completed;
        const s0 = sent;
        const t0 = now();
        await sleep(seconds * 1000);
        const ms = now() - t0;
        const c1 = completed;
        const s1 = sent;
        running = false;
        await Promise.all(loops);
        clearInterval(progress);
        const backlogEnd = await sys.backlog();
        return { completedPerSec: ((c1 - c0) / ms) * 1000, sentPerSec: ((s1 - s0) / ms) * 1000, backlogEnd };
      });
      await workers.stop();
      return { metrics: value, waits, extra: { producers, producerBatch, seconds, warmupSeconds } };
    });
  },
};
