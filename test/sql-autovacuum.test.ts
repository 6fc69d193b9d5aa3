// Autovacuum leaves the log alone (migration 33): a log partition is analyzed as it
// fills, never vacuumed for its inserts (under a pinned xmin horizon each such vacuum
// reread the whole partition). Autovacuum's pace is server-wide (autovacuum_naptime), so
// this runs on a server of its own, checking once a second; a plain table filled the
// same way beside it shows that autovacuum did visit and would have vacuumed.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../src/db/embedded.js';
import { migrate } from '../src/migrate.js';
import { sendBatch } from './helpers/sql.js';
import { sleep, waitFor } from './support/wait.js';

let server: EmbeddedPostgresHandle;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startEmbeddedPostgres();
  pool = new pg.Pool({ connectionString: server.connectionString, max: 2 });
  await pool.query(`alter system set autovacuum_naptime = '1s'`);
  await pool.query('select pg_reload_conf()');
  await migrate(pool);
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

interface Stats {
  autovacuums: number;
  autoanalyzes: number;
}

async function stats(rel: string): Promise<Stats> {
  const { rows } = await pool.query<Stats>(
    `select autovacuum_count::int as autovacuums, autoanalyze_count::int as autoanalyzes
       from pg_stat_user_tables where relid = $1::regclass`,
    [rel],
  );
  return rows[0]!;
}

describe('autovacuum on the log', () => {
  it('analyzes a filling log partition but does not vacuum it for inserts; a plain table filled alike is vacuumed', async () => {
    await pool.query(`select bucketq.create_topic('av', 4)`);
    await pool.query('create table public.control (like bucketq.message)');
    const payloads = Array.from({ length: 1000 }, (_, i) => ({ i }));
    for (let n = 0; n < 5; n++) await sendBatch(pool, 'av', payloads, { keys: payloads.map((_, i) => `k${i % 50}`) });
    await pool.query('insert into public.control select * from bucketq.message');
    const { rows } = await pool.query<{ rel: string }>(
      `select m.tableoid::regclass::text as rel from bucketq.message m group by m.tableoid`,
    );
    expect(rows).toHaveLength(1);
    const partition = rows[0]!.rel;

    await waitFor('autovacuum to vacuum the control table and analyze the partition', async () => {
      const [control, log] = [await stats('public.control'), await stats(partition)];
      return control.autovacuums > 0 && log.autoanalyzes > 0;
    }, 60_000);
    // Autovacuum handles a table's vacuum and analyze in one visit: having analyzed the
    // partition, it decided on its vacuum then. Two more rounds for good measure.
    await sleep(2500);
    expect(await stats(partition)).toMatchObject({ autovacuums: 0 });
    expect((await stats('public.control')).autovacuums).toBeGreaterThan(0);
  }, 120_000);
});
