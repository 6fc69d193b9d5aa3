// Workload 11: what consumer groups cost at ingest. send_batch to a topic with 1, 3 and
// 10 groups (nobody consuming), each in a fresh database, against a bare multi-row
// INSERT of rows as wide (bare: one table, no groups). graphile-worker, for comparison,
// adds one job per message per group (add_jobs). Three rounds over the group counts,
// the median of each.
import { bareInsert } from '../baseline.js';
import { keyedMessages, percentile, sampled, throughputKey, withSystem, type Workload } from '../lib/common.js';
import { preload } from '../lib/drain.js';

/** Passes over the group counts; each figure is the median of its passes. */
const ROUNDS = 3;
const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50)!;

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
    // Rounds over 1, 3 and 10 groups, the median per group count: one pass of about
    // a second each made the 10/1 ratio a coin toss on this kind of machine (0.89x in one
    // run for a send that does not look at groups at all).
    const rates = new Map<number, number[]>(groups.map((g) => [g, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      // Each round starts one count later (1, 3, 10; then 3, 10, 1; ...): in a fixed
      // order the first of every round was the slowest, whatever its count.
      const order = groups.map((_, i) => groups[(i + round - 1) % groups.length]!);
      for (const g of order) {
        const names = Array.from({ length: g }, (_, i) => `g${i + 1}`);
        const r = await withSystem(subject, ctx, { groups: names }, async (sys, db) => {
          const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
          const { value: ms, waits } = await sampled(ctx, db, () => preload(sys, ctx, msgs, batch));
          ctx.progress(`round ${round}, ${g} groups: ${Math.round((messages / ms) * 1000)} msg/s`);
          return { metrics: { msgsPerSec: (messages / ms) * 1000 }, waits, functions: [] };
        });
        rates.get(g)!.push(r.metrics.msgsPerSec!);
        if (round === 1) waits[`${g}g`] = r.waits ?? {};
      }
    }
    for (const g of groups) metrics[`msgsPerSec_${g}g`] = median(rates.get(g)!);
    const one = metrics[`msgsPerSec_${groups[0]}g`]!;
    const most = metrics[`msgsPerSec_${groups.at(-1)}g`]!;
    return {
      // msgsPerSec (the table's bq / bare ratio) is the first group count's, 1 at every size.
      metrics: { msgsPerSec: one, ...metrics, [`groups${groups.at(-1)}Over${groups[0]}`]: most / one },
      extra: { messages, batch, groups, rounds: ROUNDS, ratesByGroups: Object.fromEntries(rates), waitsByGroups: waits },
    };
  },
};
