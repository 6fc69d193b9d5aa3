// One isolated database per caller (usually per test file), cloned from the migrated
// template, so test files run in parallel without seeing each other's data.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { CLONE_LOCK_KEY, TEMPLATE_DATABASE, databaseUrl } from './names.js';

export interface FreshDatabase {
  connectionString: string;
  pool: pg.Pool;
  /** Ends the pool and drops the database (even if other sessions are still connected). */
  drop(): Promise<void>;
}

const SOURCE_IN_USE = '55006'; // object_in_use: "source database is being accessed by other users"

/**
 * A new database cloned from the migrated template; with `{ empty: true }` a blank
 * one instead (for testing migrate itself).
 */
export async function freshDatabase(opts: { empty?: boolean } = {}): Promise<FreshDatabase> {
  const adminUrl = inject('bucketqAdminUrl');
  const name = `${inject('bucketqRunPrefix')}${randomBytes(5).toString('hex')}`;
  if (opts.empty) await withAdmin(adminUrl, (admin) => admin.query(`create database "${name}" template template0`));
  else await cloneTemplate(adminUrl, name);

  const connectionString = databaseUrl(adminUrl, name);
  const pool = new pg.Pool({ connectionString, max: 20 });
  pool.on('error', () => {}); // dropped databases kill idle clients; that is expected
  let dropped: Promise<void> | undefined;
  return {
    connectionString,
    pool,
    drop: () =>
      (dropped ??= (async () => {
        await pool.end();
        await withAdmin(adminUrl, (admin) => admin.query(`drop database if exists "${name}" with (force)`));
      })()),
  };
}

async function cloneTemplate(adminUrl: string, name: string): Promise<void> {
  await withAdmin(adminUrl, async (admin) => {
    // Serialise clones across test workers; retry if something still touches the template.
    await admin.query('select pg_advisory_lock($1::bigint)', [CLONE_LOCK_KEY]);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await admin.query(`create database "${name}" template ${TEMPLATE_DATABASE}`);
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== SOURCE_IN_USE || attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    } finally {
      await admin.query('select pg_advisory_unlock($1::bigint)', [CLONE_LOCK_KEY]);
    }
  });
}

async function withAdmin<T>(adminUrl: string, fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}
