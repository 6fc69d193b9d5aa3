// Table statistics per table of a schema, partitions summed into their root table
// (pg_partition_root): dead tuples, rows updated and deleted, heap and index size.
import pg from 'pg';
import { sleep, now } from './common.js';

export interface TableStat {
  /** Leaf tables (partitions) summed into this row; 1 for a plain table. */
  parts: number;
  liveTup: number;
  deadTup: number;
  ins: number;
  upd: number;
  del: number;
  /** pg_relation_size (main fork) summed over the partitions. */
  tableBytes: number;
  /** pg_indexes_size summed over the partitions. */
  indexBytes: number;
  vacuums: number;
  autovacuums: number;
}
export type TableStats = Record<string, TableStat>;

/** Where each system keeps its tables. */
export const STATS_SCHEMA = { bucketq: 'bucketq', 'graphile-worker': 'graphile_worker' } as const;

const SQL = `
select coalesce(root.relname, s.relname) as t,
       count(*) filter (where c.relkind = 'r')::int as parts,
       sum(s.n_live_tup)::float8 as live, sum(s.n_dead_tup)::float8 as dead,
       sum(s.n_tup_ins)::float8 as ins, sum(s.n_tup_upd)::float8 as upd, sum(s.n_tup_del)::float8 as del,
       sum(pg_relation_size(s.relid))::float8 as tbytes, sum(pg_indexes_size(s.relid))::float8 as ibytes,
       sum(s.vacuum_count)::float8 as vac, sum(s.autovacuum_count)::float8 as avac
  from pg_stat_user_tables s
  join pg_class c on c.oid = s.relid
  left join pg_class root on root.oid = pg_partition_root(s.relid)
 where s.schemaname = $1
 group by 1 order by 1`;

/** One reading; partitions of a partitioned table are summed under the root's name. */
export async function tableStats(c: pg.ClientBase, schema: string): Promise<TableStats> {
  // A fresh statistics snapshot (stats_fetch_consistency may cache within a transaction).
  await c.query('select pg_stat_clear_snapshot()');
  const { rows } = await c.query<{ t: string; parts: number; live: number; dead: number; ins: number; upd: number; del: number; tbytes: number; ibytes: number; vac: number; avac: number }>(SQL, [schema]);
  return Object.fromEntries(
    rows.map((r) => [r.t, { parts: r.parts, liveTup: r.live, deadTup: r.dead, ins: r.ins, upd: r.upd, del: r.del, tableBytes: r.tbytes, indexBytes: r.ibytes, vacuums: r.vac, autovacuums: r.avac }]),
  );
}

const moved = (a: TableStats, b: TableStats) =>
  Object.keys({ ...a, ...b }).some((t) => a[t]?.ins !== b[t]?.ins || a[t]?.upd !== b[t]?.upd || a[t]?.del !== b[t]?.del);

/**
 * A reading once the counters have stopped moving. Backends flush their table counters
 * at most once a second, when they go idle, and an idle backend that flushed less than
 * a second ago keeps the rest pending up to 10 s (PGSTAT_IDLE_INTERVAL); one that exits
 * flushes at once. So: end or stop the connections that wrote first (or run
 * `select pg_stat_force_next_flush()` on them), then read until two readings `quietMs`
 * apart agree (or `timeoutMs` passes: then the last reading, and `settled` false).
 */
export async function settledTableStats(url: string, schema: string, quietMs = 1500, timeoutMs = 20_000): Promise<{ stats: TableStats; settled: boolean; waitedMs: number }> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    const t0 = now();
    let prev = await tableStats(c, schema);
    for (;;) {
      await sleep(quietMs);
      const cur = await tableStats(c, schema);
      if (!moved(prev, cur)) return { stats: cur, settled: true, waitedMs: Math.round(now() - t0) };
      if (now() - t0 > timeoutMs) return { stats: cur, settled: false, waitedMs: Math.round(now() - t0) };
      prev = cur;
    }
  } finally {
    await c.end().catch(() => {});
  }
}

/** Rows updated and deleted per table between two readings. */
export function churnDelta(before: TableStats, after: TableStats): Record<string, { ins: number; upd: number; del: number }> {
  const out: Record<string, { ins: number; upd: number; del: number }> = {};
  for (const t of Object.keys({ ...before, ...after }).sort()) {
    const b = before[t];
    const a = after[t];
    out[t] = { ins: (a?.ins ?? 0) - (b?.ins ?? 0), upd: (a?.upd ?? 0) - (b?.upd ?? 0), del: (a?.del ?? 0) - (b?.del ?? 0) };
  }
  return out;
}
