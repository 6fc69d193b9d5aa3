// Workload 12: churn. Rows updated or deleted on the system's tables from send to ack,
// per 1,000 messages: sends of `batch` keyed messages (spread over the topic's 16
// buckets) from one connection while 2 worker processes consume, until the backlog is
// gone. Measured from pg_stat_user_tables (n_tup_upd + n_tup_del, partitions summed into
// their table) between a settled reading with the workers up and balanced and a settled
// reading after the producer's connection and the workers have ended (a backend flushes
// its counters when it exits; see lib/tablestats.ts). bucketq's per-key counter
// (topic_key and key_counter, see KEY_COUNTER_TABLES) is shown but not counted;
// the workers' lobby rows (consumer, bucket_owner: heartbeats and the leave at the
// end) are counted.
import pg from 'pg';
import { keyedMessages, chunks, throughputKey, waitFor, withSystem, sleep, type Workload } from '../lib/common.js';
import { startWorkers, stopProcs, type WorkerProc } from '../lib/procs.js';
import { churnDelta, settledTableStats, STATS_SCHEMA } from '../lib/tablestats.js';
import { isKeyCounter, KEY_COUNTER_TABLES } from './soak.js';

export const churn: Workload = {
  id: 'churn',
  title: 'Churn: rows updated or deleted per 1,000 messages, send to ack',
  primary: 'updDelPer1000',
  unit: 'rows per 1,000 msgs',
  higherIsBetter: false,
  subjects: ['bucketq', 'graphile-worker'],
  async run(subject, ctx) {
    if (subject === 'bare') throw new Error('no bare churn');
    const { messages, batch, workers, maxBacklog } = ctx.sizes.churn;
    const schema = STATS_SCHEMA[subject];
    return withSystem(subject, ctx, { groups: ['g1'] }, async (sys) => {
      const procs: WorkerProc[] = [];
      try {
        ctx.progress(`${workers} workers starting`);
        await startWorkers(sys, subject, workers, 'noop', procs);
        ctx.progress('settling statistics');
        const before = await settledTableStats(sys.url, schema);
        // The producer: its own connection, ended before the last reading.
        const producer = new pg.Client({ connectionString: sys.url, application_name: 'bench-churn-producer' });
        producer.on('error', () => {});
        await producer.connect();
        let sent = 0;
        try {
          for (const c of chunks(keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) })), batch)) {
            if (maxBacklog !== undefined) while (sent > 0 && (await sys.backlog()) >= maxBacklog) await sleep(10);
            await sys.sendBatch(c, producer);
            sent += c.length;
            ctx.progress(`sent ${sent}/${messages}`);
          }
          await waitFor('backlog drained', async () => {
            ctx.progress(`sent ${sent}, draining`);
            return sys.caughtUp();
          }, Math.max(120_000, messages * 10), 50);
          await producer.query('select pg_stat_force_next_flush()');
        } finally {
          await producer.end().catch(() => {});
        }
        await stopProcs(procs);
        // The harness's own pool only read (backlog counts); its counters are not at stake.
        ctx.progress('settling statistics');
        const after = await settledTableStats(sys.url, schema);
        const delta = churnDelta(before.stats, after.stats);
        let counted = 0;
        const metrics: Record<string, number> = {};
        for (const [t, d] of Object.entries(delta)) {
          const n = d.upd + d.del;
          if (!isKeyCounter(t)) counted += n;
          if (n !== 0 || (subject === 'bucketq' && isKeyCounter(t))) metrics[`per1000_${t}${isKeyCounter(t) ? '_notCounted' : ''}`] = (n / messages) * 1000;
        }
        const upd = Object.entries(delta).reduce((n, [t, d]) => n + (isKeyCounter(t) ? 0 : d.upd), 0);
        const del = Object.entries(delta).reduce((n, [t, d]) => n + (isKeyCounter(t) ? 0 : d.del), 0);
        return {
          metrics: {
            updDelPer1000: (counted / messages) * 1000,
            updPer1000: (upd / messages) * 1000,
            delPer1000: (del / messages) * 1000,
            ...metrics,
            statsSettled: before.settled && after.settled ? 1 : 0,
          },
          functions: [],
          extra: { messages, batch, workers, maxBacklog, tables: delta, notCounted: subject === 'bucketq' ? KEY_COUNTER_TABLES : [], settleMs: [before.waitedMs, after.waitedMs] },
        };
      } finally {
        await stopProcs(procs);
      }
    });
  },
};
