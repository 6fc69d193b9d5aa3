// A graphile-worker process for the scaling and failover workloads, in the same
// configuration as the in-process runner. Env: BENCH_URL, BENCH_HANDLER (noop|effect),
// BENCH_TASK (task identifier), BENCH_TAG (names the process in bench_effects).
// Prints `ready` once the runner is up; SIGTERM stops it gracefully.
import { run } from 'graphile-worker';
import { GRAPHILE_DEFAULTS, graphileRunnerOptions } from '../systems/graphile.js';

const url = process.env.BENCH_URL!;
const mode = process.env.BENCH_HANDLER ?? 'noop';
const tag = process.env.BENCH_TAG ?? String(process.pid);
const task = process.env.BENCH_TASK ?? 'g1';

const runner = await run({
  ...graphileRunnerOptions(url, GRAPHILE_DEFAULTS),
  taskList: {
    [task]: async (payload, helpers) => {
      if (mode !== 'effect') return;
      const p = payload as { k: string | null; s: number };
      await helpers.query('insert into bench_effects (msg_id, k, s, bucket, consumer) values ($1, $2, $3, null, $4)', [
        helpers.job.id,
        p.k,
        p.s,
        tag,
      ]);
    },
  },
});
process.stdout.write('ready\n');
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) process.exit(143);
  stopping = true;
  void runner.stop().then(() => process.exit(0));
});
await runner.promise;
