// Workload 9: three worker processes under a steady keyed load; SIGKILL one and time
// until every bucket it owned delivers again (first committed effect in that bucket
// after the kill). Then drain and count lost and duplicated effects (bench_effects is
// written by the handler; bucketq writes it through the ack's transaction).
// graphile-worker has no buckets: the killed process's locked jobs stay locked until
// its lock timeout (4 hours), so it reports how many jobs are stranded at the end of
// the window instead, and a recovery time only if none are.
import type pg from 'pg';
import { keyedMessages, now, round, sleep, throughputKey, waitFor, withSystem, type Workload } from '../lib/common.js';
import { startWorkers, stopProcs, type WorkerProc } from '../lib/procs.js';

const EFFECTS_SQL = `create table bench_effects (
  msg_id bigint not null, k text, s int, bucket int, consumer text not null,
  at timestamptz not null default clock_timestamp())`;
const WORKERS = 3;
const KEYS = 256;

export const failover: Workload = {
  id: 'failover',
  title: 'Failover: SIGKILL one of 3 workers',
  primary: 'recoveryMs',
  unit: 'ms',
  higherIsBetter: false,
  subjects: ['bucketq', 'graphile-worker'],
  zeroForBucketq: ['lost', 'duplicates'],
  async run(subject, ctx) {
    const { sessionTimeoutMs, rate, warmupMs, windowMs } = ctx.sizes.failover;
    return withSystem(
      subject,
      ctx,
      { groups: ['g1'] },
      async (sys) => {
        const pool = (sys as unknown as { pool: pg.Pool }).pool;
        await pool.query(EFFECTS_SQL);
        const procs: WorkerProc[] = [];
        let producing = true;
        let sent = 0;
        let producer: Promise<void> = Promise.resolve();
        try {
          ctx.progress('workers starting');
          await startWorkers(sys, subject, WORKERS, 'effect', procs);
          // Steady keyed load: a batch every 50 ms.
          const perTick = Math.max(1, Math.round(rate / 20));
          producer = (async () => {
            let offset = 0;
            const t0 = now();
            for (let tick = 0; producing; tick++) {
              const batch = keyedMessages(perTick, KEYS, offset).map((m) => ({ ...m, key: throughputKey(subject, m.key) }));
              offset += perTick;
              await sys.sendBatch(batch);
              sent += perTick;
              const due = t0 + (tick + 1) * 50;
              if (due > now()) await sleep(due - now());
            }
          })();
          await sleep(warmupMs);
          const victim = procs[0]!;
          const owned =
            subject === 'bucketq'
              ? // Buckets the victim owns that carried traffic (some of 16 buckets may get none of the keys).
                (
                  await pool.query<{ bucket: number }>(
                    `select bucket from bucketq.bucket_owner where owner = $1 and bucket in (select distinct bucket from bench_effects)`,
                    [victim.id],
                  )
                ).rows.map((r) => r.bucket)
              : [];
          victim.child.kill('SIGKILL');
          const killedAt = (await pool.query<{ t: Date; e: string }>(`select clock_timestamp() as t, extract(epoch from clock_timestamp())::text as e`)).rows[0]!.e;
          ctx.progress(`killed ${victim.id} (${owned.length} buckets)`);
          let recoveryMs: number | null = null;
          let takeoverMs: number | null = null;
          const deadline = now() + windowMs;
          if (subject === 'bucketq') {
            while (now() < deadline) {
              const { rows } = await pool.query<{ n: number; last: number | null }>(
                `select count(*)::int as n, max(first_at) as last from (
                   select bucket, extract(epoch from min(at)) - $2::float8 as first_at
                     from bench_effects where at > to_timestamp($2::float8) and bucket = any($1::int[]) and consumer <> $3
                    group by bucket) x`,
                [owned, killedAt, victim.id],
              );
              ctx.progress(`${rows[0]!.n}/${owned.length} buckets flowing again`);
              if (rows[0]!.n === owned.length) {
                recoveryMs = round(rows[0]!.last! * 1000, 1);
                break;
              }
              await sleep(50);
            }
            const t = await pool.query<{ ms: number | null }>(
              `select (extract(epoch from max(moved_at)) - $2::float8) * 1000 as ms from bucketq.bucket_owner where bucket = any($1::int[])`,
              [owned, killedAt],
            );
            takeoverMs = t.rows[0]!.ms === null ? null : round(t.rows[0]!.ms, 1);
          } else {
            await sleep(Math.min(windowMs, 3 * sessionTimeoutMs));
          }
          producing = false;
          await producer;
          // Drain what the survivors can; stranded jobs (graphile-worker) stay locked.
          let stranded = 0;
          await waitFor('survivors drained the backlog', async () => {
            stranded = await sys.backlog();
            ctx.progress(`draining, ${stranded} left`);
            return stranded === 0 || now() > deadline + 5000;
          }, windowMs + 60_000, 100);
          if (subject === 'graphile-worker' && stranded === 0) {
            const r = await pool.query<{ ms: number | null }>(
              `select (extract(epoch from min(at)) - $1::float8) * 1000 as ms from bench_effects where at > to_timestamp($1::float8)`,
              [killedAt],
            );
            recoveryMs = r.rows[0]!.ms === null ? null : round(r.rows[0]!.ms, 1);
          }
          const e = await pool.query<{ total: number; distinct: number }>(
            `select count(*)::int as total, count(distinct msg_id)::int as distinct from bench_effects`,
          );
          const { total, distinct } = e.rows[0]!;
          return {
            metrics: {
              recoveryMs,
              takeoverMs,
              sessionTimeoutMs,
              recoveryOverSessionTimeout: recoveryMs === null ? null : round(recoveryMs / sessionTimeoutMs, 2),
              lost: sent - distinct - stranded,
              duplicates: total - distinct,
              stranded,
              sent,
            },
            functions: [],
            extra: { workers: WORKERS, victimBuckets: owned.length, rate, note: subject === 'graphile-worker' ? 'jobs locked by a killed worker are released after 4 h' : undefined },
          };
        } finally {
          producing = false;
          await producer.catch(() => {});
          await stopProcs(procs);
        }
      },
      { sessionTimeout: `${sessionTimeoutMs} milliseconds` },
    );
  },
};
