// Workload 2: drain a preloaded backlog with a no-op handler; the bare baseline is a DELETE ... SKIP LOCKED drain.
import { bareDrain } from '../baseline.js';
import { keyedMessages, throughputKey, withSystem, type Workload } from '../lib/common.js';
import { drainTimed, preload } from '../lib/drain.js';

export const drain: Workload = {
  id: 'drain',
  title: 'Drain a backlog (no-op handler)',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker', 'bare'],
  async run(subject, ctx) {
    const { messages, sendBatch } = ctx.sizes.drain;
    if (subject === 'bare') return bareDrain(ctx, messages);
    return withSystem(subject, ctx, { groups: ['g1'] }, async (sys, db) => {
      const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
      await preload(sys, ctx, msgs, sendBatch);
      const { value: { ms, firstMs }, waits } = await drainTimed(sys, db, ctx, ['g1'], messages);
      return { metrics: { msgsPerSec: (messages / ms) * 1000, seconds: ms / 1000, firstMs }, waits };
    });
  },
};
