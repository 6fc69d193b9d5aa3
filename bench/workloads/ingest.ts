// Workload 1: ingest. send_batch vs graphile-worker add_jobs vs a bare multi-row INSERT.
import { bareInsert, bareLogInsert, bareSingleInsert } from '../baseline.js';
import { keyedMessages, now, sampled, throughputKey, withSystem, type Workload } from '../lib/common.js';
import { preload } from '../lib/drain.js';

function runIngest(keyed: boolean, bare = bareInsert): Workload['run'] {
  return async (subject, ctx) => {
    const { messages, batch } = ctx.sizes.ingest;
    if (subject === 'bare') return bare(ctx, messages, batch);
    return withSystem(subject, ctx, { groups: ['g1'] }, async (sys, db) => {
      const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: keyed ? throughputKey(subject, m.key) : null }));
      const { value: ms, waits } = await sampled(ctx, db, () => preload(sys, ctx, msgs, batch));
      return { metrics: { msgsPerSec: (messages / ms) * 1000, seconds: ms / 1000 }, waits, extra: { batch, groups: 1, keyed } };
    });
  };
}

export const ingest: Workload = {
  id: 'ingest',
  title: 'Ingest (batched send, one connection)',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker', 'bare'],
  run: runIngest(true),
};

/**
 * The same without keys: what a send costs without the per-key counter (a key's lock,
 * its last key_seq, its counter row). bucketq's figure in ingest is keyed; the bare
 * INSERT is the same in both (it has no counter to keep).
 */
export const ingestUnkeyed: Workload = {
  id: 'ingest-unkeyed',
  title: 'Ingest without keys (batched send, one connection)',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'bare'],
  run: runIngest(false),
};

/**
 * Unkeyed sends against the floor the log's shape sets: a bare INSERT into a table with
 * a log partition's columns and indexes (bare_message), filled as send_batch fills the
 * log. Where bucketq's ingest stands against what any write of its log must cost.
 */
export const ingestFloor: Workload = {
  id: 'ingest-floor',
  title: 'Ingest without keys against an INSERT shaped as the log (batched, one connection)',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'bare'],
  run: runIngest(false, bareLogInsert),
};

/**
 * One message per statement, as a producer sends inside its own transaction (the
 * transactional outbox): BucketQ.send (bucketq.send) keyed as in ingest, graphile-worker's
 * addJob, and a one-row INSERT. What a statement costs around its message.
 */
export const ingestSingle: Workload = {
  id: 'ingest-single',
  title: 'Ingest, one message per statement (single sends, one connection)',
  primary: 'msgsPerSec',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker', 'bare'],
  run: async (subject, ctx) => {
    const { messages } = ctx.sizes.ingestSingle;
    if (subject === 'bare') return bareSingleInsert(ctx, messages);
    return withSystem(subject, ctx, { groups: ['g1'] }, async (sys, db) => {
      const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
      const { value: ms, waits } = await sampled(ctx, db, async () => {
        const t0 = now();
        for (const [i, m] of msgs.entries()) {
          await sys.sendOne(m);
          if (i % 500 === 0) ctx.progress(`${i}/${messages}`);
        }
        return now() - t0;
      });
      return { metrics: { msgsPerSec: (messages / ms) * 1000, seconds: ms / 1000 }, waits, extra: { groups: 1, keyed: subject === 'bucketq' } };
    });
  },
};
