// The SQL layout: migrations, then one file per current function and view applied as a
// repeatable step, and the generated sql/schema.sql kept fresh.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { dumpSchema } from '../scripts/schema-dump.js';
import { definitions } from '../src/generated/migrations.js';
import { migrate } from '../src/migrate.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const databases: FreshDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});
async function database(opts: { empty?: boolean } = {}): Promise<FreshDatabase> {
  const db = await freshDatabase(opts);
  databases.push(db);
  return db;
}

/** Every function and view of the schema with its definition, comment and grants. */
async function objects(db: FreshDatabase): Promise<Map<string, string>> {
  const { rows } = await db.pool.query<{ name: string; def: string }>(`
    select 'function ' || p.proname as name,
           concat_ws(' | ', pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc'), p.proacl::text) as def
      from pg_proc p where p.pronamespace = 'bucketq'::regnamespace
    union all
    select 'view ' || c.relname, concat_ws(' | ', pg_get_viewdef(c.oid), obj_description(c.oid, 'pg_class'), c.relacl::text)
      from pg_class c where c.relnamespace = 'bucketq'::regnamespace and c.relkind = 'v'`);
  return new Map(rows.map((r) => [r.name, r.def]));
}

describe('sql/functions and sql/views', () => {
  it('define exactly the functions and views the schema has, one file each', async () => {
    const db = await database();
    const inDatabase = [...(await objects(db)).keys()].sort();
    const inFiles = definitions.files
      .map((f) => `${f.path.startsWith('functions/') ? 'function' : 'view'} ${f.path.replace(/^\w+\/|\.sql$/g, '')}`)
      .sort();
    // A function defined only in a migration (or a file whose object no longer exists)
    // would make a reader look in the wrong place.
    expect(inFiles).toEqual(inDatabase);
  });

  it('are applied again when the recorded hash differs, changing nothing when the files did not', async () => {
    const db = await database();
    const before = await objects(db);
    await db.pool.query(`update bucketq.definitions set hash = 'stale'`);
    const result = await migrate(db.pool);
    expect(result.definitions).toBe('applied');
    expect(await objects(db)).toEqual(before);
    const { rows } = await db.pool.query<{ hash: string }>('select hash from bucketq.definitions');
    expect(rows[0]!.hash).toBe(definitions.hash);
    expect((await migrate(db.pool)).definitions).toBe('current');
  });

  it('replace what an older migration defined: a function body edited in place is restored by migrate', async () => {
    const db = await database();
    const before = await objects(db);
    // As an upgrade from a release whose ack differed: the database holds another body.
    await db.pool.query(`create or replace function bucketq._state_name(state smallint) returns text language sql immutable as $$ select 'old' $$`);
    await db.pool.query(`update bucketq.definitions set hash = 'previous release'`);
    await migrate(db.pool);
    expect(await objects(db)).toEqual(before);
    const { rows } = await db.pool.query<{ name: string }>('select bucketq._state_name(0::smallint) as name');
    expect(rows[0]!.name).toBe('ready');
  });
});

describe('sql/schema.sql', () => {
  it('is what a freshly migrated database holds (run `npm run schema` after changing sql/)', async (ctx) => {
    const committed = readFileSync(new URL('../sql/schema.sql', import.meta.url), 'utf8');
    const db = await database({ empty: true });
    await migrate(db.pool);
    const client = await db.pool.connect();
    try {
      const dumped = await dumpSchema(client);
      // Catalog deparsing differs between major versions: the file is generated on the
      // embedded default, and only a server of that major version can check it.
      const major = /on PostgreSQL (\d+)/.exec(committed)?.[1];
      const server = /on PostgreSQL (\d+)/.exec(dumped)?.[1];
      if (major !== server) ctx.skip(`sql/schema.sql was generated on PostgreSQL ${major}; this server is ${server}`);
      expect(dumped).toBe(committed);
    } finally {
      client.release();
    }
  });
});
