// Workloads 10 and 10b: soak. End-to-end as in e2e (producers at full speed, keyed,
// in-process consumers) for `--soak-minutes`, with a reading per interval (a minute at
// the short and full sizes): completed/s and, per table of the system's schema
// (partitions summed into their table), n_dead_tup, rows updated + deleted in the
// interval, heap and index size. soak-pinned does the same while another session holds a
// REPEATABLE READ transaction open throughout (its snapshot pins the database's xmin
// horizon: vacuum can remove nothing that died after it began).
// Producers wait while `maxBacklog` messages are sent and not yet completed, so a
// system whose producers outrun its consumers (graphile-worker's add_jobs does) soaks at
// its completion rate instead of piling up an ever larger table.
import pg from 'pg';
import { now, round, sampled, sleep, withSystem, type Subject, type Workload } from '../lib/common.js';
import { startProducers } from '../lib/load.js';
import { cpuSample, machineBetween, type MachineInterval } from '../lib/machine.js';
import { STATS_SCHEMA, tableStats, type TableStats } from '../lib/tablestats.js';

/**
 * bucketq's per-key counter, counted apart: topic_key (one row per key, locked by each
 * keyed send; updated by each until migration 25) and key_counter (one row appended per
 * key per send; since migration 31 partitioned and rotated by maintain(), which folds a
 * part into key_counter_base, one row per key, and TRUNCATEs it).
 */
export const KEY_COUNTER_TABLES: readonly string[] = ['topic_key', 'key_counter'];
export const isKeyCounter = (table: string) => KEY_COUNTER_TABLES.includes(table);

export interface SoakInterval {
  /** End of the interval, seconds after the warm-up. */
  atSec: number;
  completedPerSec: number;
  sentPerSec: number;
  backlog: number;
  /** The whole machine over the interval (bench/lib/machine.ts); null off Linux. */
  machine: MachineInterval | null;
  tables: Record<string, { deadTup: number; liveTup: number; updDel: number; tableMB: number; indexMB: number; autovacuums: number }>;
}

const MB = 2 ** 20;

function interval(prev: TableStats, cur: TableStats): SoakInterval['tables'] {
  const out: SoakInterval['tables'] = {};
  for (const [t, s] of Object.entries(cur)) {
    const p = prev[t];
    out[t] = {
      deadTup: s.deadTup,
      liveTup: s.liveTup,
      updDel: s.upd + s.del - (p ? p.upd + p.del : 0),
      tableMB: round(s.tableBytes / MB, 2),
      indexMB: round(s.indexBytes / MB, 2),
      autovacuums: s.autovacuums - (p?.autovacuums ?? 0),
    };
  }
  return out;
}

/** A table any session of the system's database can read: the pin's first statement takes its snapshot there. */
const PIN_TABLE: Record<'bucketq' | 'graphile-worker', string> = { bucketq: 'bucketq.topic', 'graphile-worker': 'graphile_worker._private_tasks' };

/** Opens the pinning session: REPEATABLE READ, one read (the snapshot is taken), then idle in transaction. */
async function pin(url: string, subject: 'bucketq' | 'graphile-worker'): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-soak-pin' });
  client.on('error', () => {});
  await client.connect();
  // Neither a database default nor a role setting may end it early.
  await client.query('set idle_in_transaction_session_timeout = 0');
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  await client.query('begin isolation level repeatable read');
  await client.query(`select 1 from ${PIN_TABLE[subject]} limit 1`);
  return { client, pid };
}

export function soakWorkload(id: string, title: string, pinned: boolean): Workload {
  return {
    id,
    title,
    primary: 'completedPerSec',
    unit: 'msg/s',
    higherIsBetter: true,
    subjects: ['bucketq', 'graphile-worker'],
    // Minutes per run: one repetition per suite run, whatever --reps says.
    maxReps: 1,
    async run(subject: Subject, ctx) {
      if (subject === 'bare') throw new Error('no bare soak');
      const { minutes, intervalSec, warmupSeconds, producers, producerBatch, maxBacklog } = ctx.sizes.soak;
      const intervals = Math.max(1, Math.round((minutes * 60) / intervalSec));
      const schema = STATS_SCHEMA[subject];
      return withSystem(subject, ctx, { groups: ['g1'] }, async (sys, db) => {
        const stats = new pg.Client({ connectionString: db.url, application_name: 'bench-soak-stats' });
        stats.on('error', () => {});
        await stats.connect();
        const pinSession = pinned ? await pin(db.url, subject) : undefined;
        let completed = 0;
        const workers = await sys.consume({ g1: () => void completed++ });
        try {
          const { value, waits } = await sampled(ctx, db, async () => {
            const prod = startProducers(sys, subject, ctx, { producers, batch: producerBatch, maxBacklog, completed: () => completed });
            try {
              await sleep(warmupSeconds * 1000);
              const t0 = now();
              const c0 = completed;
              const s0 = prod.sent;
              const first = await tableStats(stats, schema);
              let prev = first;
              let [pc, ps, pt] = [c0, s0, t0];
              let pcpu = cpuSample();
              const rows: SoakInterval[] = [];
              for (let i = 1; i <= intervals; i++) {
                const due = t0 + i * intervalSec * 1000;
                while (now() < due) {
                  ctx.progress(`${pinned ? 'pinned, ' : ''}${Math.round((now() - t0) / 1000)}/${intervals * intervalSec} s, done ${completed}, backlog ${prod.sent - completed}`);
                  await sleep(Math.min(500, Math.max(0, due - now())));
                }
                const [c, s, t] = [completed, prod.sent, now()];
                const cur = await tableStats(stats, schema);
                const cpu = cpuSample();
                rows.push({
                  atSec: round((t - t0) / 1000, 1),
                  completedPerSec: round(((c - pc) / (t - pt)) * 1000),
                  sentPerSec: round(((s - ps) / (t - pt)) * 1000),
                  backlog: s - c,
                  machine: machineBetween(pcpu, cpu),
                  tables: interval(prev, cur),
                });
                [pc, ps, pt, prev, pcpu] = [c, s, t, cur, cpu];
              }
              const ms = pt - t0;
              return { rows, first, last: prev, completed: pc - c0, ms, heldMs: prod.heldMs, start: interval({}, first) };
            } finally {
              await prod.stop();
            }
          });
          let pinHeld = 0;
          let pinXminAge: number | null = null;
          if (pinSession) {
            // The pin must still be there, idle in its transaction, holding the horizon.
            const { rows } = await stats.query<{ state: string; age: number | null }>(
              'select state, age(backend_xmin)::int as age from pg_stat_activity where pid = $1',
              [pinSession.pid],
            );
            pinHeld = rows[0]?.state === 'idle in transaction' && rows[0].age !== null ? 1 : 0;
            pinXminAge = rows[0]?.age ?? null;
            if (!pinHeld) throw new Error(`the pinning session ${pinSession.pid} was not holding its transaction at the end (${JSON.stringify(rows[0] ?? null)})`);
          }
          const { rows, first, last, completed: done, ms, heldMs, start } = value;
          const firstRate = rows[0]!.completedPerSec;
          const lastRate = rows.at(-1)!.completedPerSec;
          const sum = (f: (t: string) => number, tables: string[]) => tables.reduce((n, t) => n + f(t), 0);
          const hot = Object.keys(last).filter((t) => !isKeyCounter(t));
          const updDel = sum((t) => last[t]!.upd + last[t]!.del - ((first[t]?.upd ?? 0) + (first[t]?.del ?? 0)), hot);
          const all = Object.keys(last);
          return {
            metrics: {
              completedPerSec: (done / ms) * 1000,
              firstIntervalPerSec: firstRate,
              lastIntervalPerSec: lastRate,
              lastOverFirst: firstRate > 0 ? lastRate / firstRate : null,
              updDelPer1000: done > 0 ? (updDel / done) * 1000 : null,
              deadTupEnd: sum((t) => last[t]!.deadTup, all),
              tableMBEnd: round(sum((t) => last[t]!.tableBytes, all) / MB, 1),
              indexMBEnd: round(sum((t) => last[t]!.indexBytes, all) / MB, 1),
              backlogEnd: rows.at(-1)!.backlog,
              producersHeldShare: round(heldMs / producers / (ms + warmupSeconds * 1000), 3),
              ...(pinned ? { pinHeld, pinXminAge } : {}),
            },
            waits,
            extra: { start, intervals: rows, intervalSec, minutes, warmupSeconds, producers, producerBatch, maxBacklog, pinned, schema, updDelExcludes: subject === 'bucketq' ? KEY_COUNTER_TABLES : undefined },
          };
        } finally {
          await workers.stop();
          if (pinSession) await pinSession.client.query('rollback').catch(() => {});
          await pinSession?.client.end().catch(() => {});
          await stats.end().catch(() => {});
        }
      });
    },
  };
}

export const soak = soakWorkload('soak', 'Soak: end-to-end at full speed, per interval', false);
export const soakPinned = soakWorkload('soak-pinned', 'Soak with a REPEATABLE READ transaction held open throughout', true);
