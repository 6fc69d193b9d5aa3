// `npm run schema`: migrate a scratch database and write sql/schema.sql from it.
// Uses DATABASE_URL when set (a role that may create databases), else an embedded Postgres.
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { migrate } from '../src/migrate.js';
import { dumpSchema } from './schema-dump.js';

const server = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
const adminUrl = process.env.DATABASE_URL ?? server!.connectionString;
const scratch = `bucketq_schema_${process.pid}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
try {
  await admin.query(`create database ${scratch}`);
  const url = new URL(adminUrl);
  url.pathname = `/${scratch}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await migrate(client);
    writeFileSync(new URL('../sql/schema.sql', import.meta.url), await dumpSchema(client));
    console.log('wrote sql/schema.sql');
  } finally {
    await client.end();
  }
} finally {
  await admin.query(`drop database if exists ${scratch} with (force)`);
  await admin.end();
  await server?.stop();
}
