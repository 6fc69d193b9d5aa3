// Workload 7: fan-out, three consumer groups on one topic (graphile-worker: one job per group).
import { keyedMessages, throughputKey, withSystem, type Workload } from '../lib/common.js';
import { drainTimed, preload } from '../lib/drain.js';

export const fanout: Workload = {
  id: 'fanout',
  title: 'Fan-out: 3 groups on one topic (deliveries/s)',
  primary: 'deliveriesPerSec',
  unit: 'deliveries/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  async run(subject, ctx) {
    const { messages, groups: g } = ctx.sizes.fanout;
    const groups = Array.from({ length: g }, (_, i) => `g${i + 1}`);
    return withSystem(subject, ctx, { groups }, async (sys, db) => {
      const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
      const sendMs = await preload(sys, ctx, msgs, 1000);
      const { value: { ms }, waits } = await drainTimed(sys, db, ctx, groups, messages);
      return {
        metrics: { deliveriesPerSec: ((messages * g) / ms) * 1000, ingestMsgsPerSec: (messages / sendMs) * 1000, seconds: ms / 1000 },
        waits,
        extra: { groups: g },
      };
    });
  },
};
