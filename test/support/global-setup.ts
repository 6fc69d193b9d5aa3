// Runs once per `vitest run`, in the main process: a server (DATABASE_URL, else a
// container when Docker answers, else embedded: see postgres-server.ts) and a
// migrated template database that test files clone.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/migrate.js';
import { TEMPLATE_DATABASE, databaseUrl } from './names.js';
import { chooseServer, dockerEngineAnswers, startServer } from './postgres-server.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const choice = await chooseServer(process.env, () => dockerEngineAnswers());
  console.log(`bucketq tests: Postgres from ${choice.kind} (${choice.reason})`);
  const server = await startServer(choice);
  const adminUrl = server.connectionString;
  const runPrefix = `bq_${randomBytes(3).toString('hex')}_`;

  try {
    await createTemplate(adminUrl);
  } catch (err) {
    await server.stop?.();
    throw err;
  }

  project.provide('bucketqAdminUrl', adminUrl);
  project.provide('bucketqRunPrefix', runPrefix);

  return async () => {
    // A server we started takes its databases with it; a shared one keeps them unless dropped.
    if (server.stop) return server.stop();
    await dropLeftovers(adminUrl, runPrefix);
  };
}

async function createTemplate(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, async (admin) => {
    // Rebuilt every run so it always holds the current migrations (a template must be
    // unmarked before it can be dropped).
    await admin.query(`alter database ${TEMPLATE_DATABASE} is_template false`).catch(() => {});
    await admin.query(`drop database if exists ${TEMPLATE_DATABASE} with (force)`);
    await admin.query(`create database ${TEMPLATE_DATABASE}`);
  });
  const pool = new pg.Pool({ connectionString: databaseUrl(adminUrl, TEMPLATE_DATABASE), max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  await withAdmin(adminUrl, async (admin) => {
    // No connections allowed from now on: a stray one would make every clone fail.
    await admin.query(`alter database ${TEMPLATE_DATABASE} with is_template true allow_connections false`);
  });
}

async function dropLeftovers(adminUrl: string, prefix: string): Promise<void> {
  await withAdmin(adminUrl, async (admin) => {
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where starts_with(datname, $1)`, [prefix]);
    for (const { datname } of rows) await admin.query(`drop database if exists "${datname}" with (force)`);
  });
}

async function withAdmin(adminUrl: string, fn: (admin: pg.Client) => Promise<void>): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await fn(admin);
  } finally {
    await admin.end();
  }
}
