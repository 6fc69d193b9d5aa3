// Server, template databases and one fresh database per (workload, system, repetition).
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Logger, runMigrations } from 'graphile-worker';
import pg from 'pg';
import { migrate } from '../../src/migrate.js';

// Per process, so two harness runs on one server (DATABASE_URL) do not collide.
const RUN_ID = randomBytes(3).toString('hex');
export const TEMPLATES = {
  bucketq: `bench_tpl_bucketq_${RUN_ID}`,
  graphile: `bench_tpl_graphile_${RUN_ID}`,
  bare: `bench_tpl_bare_${RUN_ID}`,
} as const;
export type TemplateName = keyof typeof TEMPLATES;

export function databaseUrl(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function withAdmin<T>(adminUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl });
  c.on('error', () => {}); // a query in flight still gets the error
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

// Same width as a bucketq.message row (the log), for the bare baselines.
export const BARE_SCHEMA = `
create table bare_log (
  id bigint generated always as identity primary key,
  topic_id int not null,
  sent_at timestamptz not null default now(),
  bucket int not null,
  key text,
  key_seq bigint,
  payload jsonb not null,
  headers jsonb
);
-- Shaped as a partition of bucketq.message (sql/functions/_create_partitions.sql): its
-- columns, its three indexes and no insert-triggered vacuum (test/bench-floor.test.ts
-- checks it against a real partition). For ingest-floor: what the log's shape costs.
create table bare_message (
  id bigint not null,
  topic_id int not null,
  sent_at timestamptz not null,
  bucket int not null,
  key text,
  key_id bigint,
  key_seq bigint,
  payload jsonb not null,
  headers jsonb,
  not_before timestamptz,
  idempotency_key text,
  xid xid8,
  ord bigint
) with (autovacuum_vacuum_insert_threshold = -1, toast.autovacuum_vacuum_insert_threshold = -1);
create unique index bare_message_id_key on bare_message (id);
create index bare_message_window on bare_message (bucket, ord);
create index bare_message_xid on bare_message (bucket, xid);
create sequence bare_message_id_seq;
create sequence bare_message_ord_seq;
create table bare_queue (
  id bigint generated always as identity primary key,
  key text,
  payload jsonb not null
);`;

/** Builds the three template databases (dropped and rebuilt each run so they hold current migrations). */
export async function buildTemplates(adminUrl: string, log: (s: string) => void = () => {}): Promise<void> {
  for (const [kind, name] of Object.entries(TEMPLATES) as [TemplateName, string][]) {
    await withAdmin(adminUrl, async (a) => {
      await a.query(`alter database ${name} is_template false`).catch(() => {});
      await a.query(`drop database if exists ${name} with (force)`);
      await a.query(`create database ${name}`);
    });
    const url = databaseUrl(adminUrl, name);
    if (kind === 'bucketq') {
      const pool = new pg.Pool({ connectionString: url, max: 1 });
      try {
        await migrate(pool);
      } finally {
        await pool.end();
      }
    } else if (kind === 'graphile') {
      await runMigrations({ connectionString: url, logger: quietGraphileLogger() });
    } else {
      await withAdmin(url, (c) => c.query(BARE_SCHEMA));
    }
    await withAdmin(adminUrl, (a) => a.query(`alter database ${name} with is_template true allow_connections false`));
    log(`template ${name} ready`);
  }
}

export async function dropTemplates(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, async (a) => {
    for (const name of Object.values(TEMPLATES)) {
      await a.query(`alter database ${name} is_template false`).catch(() => {});
      await a.query(`drop database if exists ${name} with (force)`);
    }
  });
}

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** A fresh clone of a template. Function-call statistics are on (pg_stat_user_functions). */
export async function freshDatabase(adminUrl: string, kind: TemplateName): Promise<BenchDatabase> {
  const name = `bench_${kind}_${randomBytes(4).toString('hex')}`;
  await withAdmin(adminUrl, async (a) => {
    await a.query(`create database ${name} template ${TEMPLATES[kind]}`);
    await a.query(`alter database ${name} set track_functions = 'all'`);
  });
  let dropped: Promise<void> | undefined;
  return {
    name,
    url: databaseUrl(adminUrl, name),
    drop: () => (dropped ??= withAdmin(adminUrl, (a) => a.query(`drop database if exists ${name} with (force)`)).then(() => {})),
  };
}

export function quietGraphileLogger(): Logger {
  return new Logger(() => (level, message) => {
    if (level === 'error' && process.env.BENCH_DEBUG) process.stderr.write(`[graphile] ${message}\n`);
  });
}

const SETTINGS = [
  'server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers',
  'max_connections', 'work_mem', 'max_wal_size', 'checkpoint_timeout', 'wal_buffers', 'commit_delay',
  'effective_io_concurrency', 'max_locks_per_transaction', 'jit',
];

export async function serverSettings(adminUrl: string): Promise<Record<string, string>> {
  return withAdmin(adminUrl, async (a) => {
    const { rows } = await a.query<{ name: string; value: string }>(
      'select name, current_setting(name) as value from pg_settings where name = any($1) order by name',
      [SETTINGS],
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  });
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    loadavgAtEnd: [] as number[],
  };
}

/** Samples wait events of active backends in one database while a workload runs. */
export class WaitSampler {
  private timer: NodeJS.Timeout | undefined;
  private client: pg.Client | undefined;
  private busy = false;
  readonly counts = new Map<string, number>();
  samples = 0;

  constructor(private readonly adminUrl: string, private readonly database: string, private readonly everyMs = 100) {}

  async start(): Promise<void> {
    this.client = new pg.Client({ connectionString: this.adminUrl });
    this.client.on('error', () => {});
    await this.client.connect();
    this.timer = setInterval(() => void this.sample(), this.everyMs);
  }

  private async sample(): Promise<void> {
    if (this.busy || !this.client) return;
    this.busy = true;
    try {
      const { rows } = await this.client.query<{ w: string; n: number }>(
        `select coalesce(wait_event_type || ':' || wait_event, 'CPU') as w, count(*)::int as n
           from pg_stat_activity where datname = $1 and state = 'active' and pid <> pg_backend_pid()
          group by 1`,
        [this.database],
      );
      this.samples++;
      for (const r of rows) this.counts.set(r.w, (this.counts.get(r.w) ?? 0) + r.n);
    } catch {
      /* sampling is best effort */
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<Record<string, number>> {
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
    await this.client?.end().catch(() => {});
    // Average active backends per sample in each wait state, top 8.
    return Object.fromEntries(
      [...this.counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8)
        .map(([k, v]) => [k, Math.round((v / Math.max(1, this.samples)) * 100) / 100]),
    );
  }
}

export interface FunctionStat {
  fn: string;
  calls: number;
  totalMs: number;
  selfMs: number;
}

/** Top PL/pgSQL and SQL functions by total time (needs track_functions; stats flush within ~1 s of a backend going idle). */
export async function functionStats(url: string, top = 8): Promise<FunctionStat[]> {
  await new Promise((r) => setTimeout(r, 1100));
  return withAdmin(url, async (c) => {
    const { rows } = await c.query<{ fn: string; calls: string; total: number; self: number }>(
      `select schemaname || '.' || funcname as fn, calls, total_time as total, self_time as self
         from pg_stat_user_functions order by total_time desc limit $1`,
      [top],
    );
    return rows.map((r) => ({ fn: r.fn, calls: Number(r.calls), totalMs: Math.round(r.total), selfMs: Math.round(r.self) }));
  });
}
