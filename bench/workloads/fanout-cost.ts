// Workload 11: what consumer groups cost at ingest. send_batch to a topic with 1, 3 and
// 10 groups (nobody consuming), each in a fresh database, against a bare multi-row
// INSERT of rows as wide (bare: one table, no groups). graphile-worker, for comparison,
// adds one job per message per group (add_jobs).
import { bareInsert } from '../baseline.js';
import { keyedMessages, sampled, throughputKey, withSystem, type Workload } from '../lib/common.js';
import { preload } from '../lib/drain.js';

export const fanoutCost: Workload = {
  id: 'fanout-cost',
  title: 'Fan-out cost: ingest with 1, 3 and 10 groups on the topic',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker', 'bare'],
  async run(subject, ctx) {
    const { messages, batch, groups } = ctx.sizes.fanoutCost;
    if (subject === 'bare') return bareInsert(ctx, messages, batch);
    const metrics: Record<string, number> = {};
    const waits: Record<string, Record<string, number>> = {};
    for (const g of groups) {
      const names = Array.from({ length: g }, (_, i) => `g${i + 1}`);
      const r = await withSystem(subject, ctx, { groups: names }, async (sys, db) => {
        const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
        const { value: ms, waits } = await sampled(ctx, db, () => preload(sys, ctx, msgs, batch));
        ctx.progress(`${g} groups: ${Math.round((messages / ms) * 1000)} msg/s`);
        return { metrics: { msgsPerSec: (messages / ms) * 1000 }, waits, functions: [] };
      });
      metrics[`msgsPerSec_${g}g`] = r.metrics.msgsPerSec!;
      waits[`${g}g`] = r.waits ?? {};
    }
    const one = metrics[`msgsPerSec_${groups[0]}g`]!;
    const most = metrics[`msgsPerSec_${groups.at(-1)}g`]!;
    return {
      // msgsPerSec (the table's bq / bare ratio) is the first group count's, 1 at every size.
      metrics: { msgsPerSec: one, ...metrics, [`groups${groups.at(-1)}Over${groups[0]}`]: most / one },
      extra: { messages, batch, groups, waitsByGroups: waits },
    };
  },
};
