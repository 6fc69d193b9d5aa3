// Workload 8: 1, 2 and 4 worker processes (`bucketq worker` CLI / graphile-worker
// runner processes) drain a backlog that appears in one commit once they are all up.
import { chunks, keyedMessages, now, sleep, throughputKey, waitFor, withSystem, type Workload } from '../lib/common.js';
import { startWorkers, stopProcs, type WorkerProc } from '../lib/procs.js';

export const SCALING_SESSION_TIMEOUT = '3 seconds';

export const scaling: Workload = {
  id: 'scaling',
  title: 'Scaling: worker processes draining a backlog',
  primary: 'msgsPerSecMax',
  unit: 'msg/s',
  higherIsBetter: true,
  subjects: ['bucketq', 'graphile-worker'],
  async run(subject, ctx) {
    const { messages, workers } = ctx.sizes.scaling;
    const metrics: Record<string, number> = {};
    for (const w of workers) {
      const r = await withSystem(
        subject,
        ctx,
        { groups: ['g1'] },
        async (sys) => {
          const procs: WorkerProc[] = [];
          try {
            ctx.progress(`${w} workers starting`);
            await startWorkers(sys, subject, w, 'noop', procs);
            if (subject !== 'bucketq') await sleep(200);
            const msgs = keyedMessages(messages, ctx.sizes.keys).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
            const client = await sys.connect();
            try {
              await client.query('begin');
              for (const c of chunks(msgs, 2000)) await sys.sendBatch(c, client);
              await client.query('commit');
            } finally {
              client.release();
            }
            const t0 = now();
            // Polled with the cheap probe; the count (pending) only for the progress line,
            // once a second: at 25 ms intervals bucketq's count of a 10,000-message backlog
            // took 4.5 to 17 ms a call, a share of the measured machine's two cores.
            let polls = 0;
            await waitFor('backlog drained', async () => {
              if (await sys.caughtUp()) return true;
              if (++polls % 40 === 0) ctx.progress(`${w} workers: ${messages - (await sys.backlog())}/${messages}`);
              return false;
            }, Math.max(120_000, messages * 10), 25);
            const ms = now() - t0;
            return { metrics: { msgsPerSec: (messages / ms) * 1000 }, functions: [] };
          } finally {
            await stopProcs(procs);
          }
        },
        { sessionTimeout: SCALING_SESSION_TIMEOUT },
      );
      metrics[`msgsPerSec_${w}w`] = r.metrics.msgsPerSec!;
    }
    const first = metrics[`msgsPerSec_${workers[0]}w`]!;
    const last = metrics[`msgsPerSec_${workers[workers.length - 1]}w`]!;
    return { metrics: { msgsPerSecMax: last, ...metrics, speedup: last / first }, extra: { workers, messages } };
  },
};
