// The test infrastructure itself, migrations and error mapping.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, SchemaNotMigratedError, SchemaTooNewError, UnknownTopicError, mapPgError } from '../src/errors.js';
import { latestVersion, migrations } from '../src/generated/migrations.js';
import { assertSchemaCurrent, migrate, readSchemaVersion } from '../src/migrate.js';
import { BucketQ } from '../src/client.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const databases: FreshDatabase[] = [];
async function track(db: Promise<FreshDatabase>): Promise<FreshDatabase> {
  databases.push(await db);
  return databases[databases.length - 1]!;
}
afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
});

describe('freshDatabase', () => {
  it('gives isolated databases: a table created in one is absent in another', async () => {
    const a = await track(freshDatabase());
    const b = await track(freshDatabase());
    expect(a.connectionString).not.toBe(b.connectionString);
    await a.pool.query('create table only_in_a (x int)');
    const inA = await a.pool.query(`select to_regclass('public.only_in_a') is not null as present`);
    const inB = await b.pool.query(`select to_regclass('public.only_in_a') is not null as present`);
    expect(inA.rows[0].present).toBe(true);
    expect(inB.rows[0].present).toBe(false);
  });

  it('clones the migrated template: the schema is current', async () => {
    const db = await track(freshDatabase());
    expect(await readSchemaVersion(db.pool)).toBe(latestVersion);
    await expect(assertSchemaCurrent(db.pool)).resolves.toBeUndefined();
  });

  it('survives many concurrent clones', async () => {
    const many = await Promise.all(Array.from({ length: 6 }, () => track(freshDatabase())));
    expect(new Set(many.map((d) => d.connectionString)).size).toBe(6);
  });
});

describe('migrate', () => {
  it('applies every migration exactly once when 20 callers race on one database', async () => {
    const db = await track(freshDatabase({ empty: true }));
    // Separate connections, all started together, so the calls truly overlap.
    const clients = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const c = new pg.Client({ connectionString: db.connectionString });
        await c.connect();
        return c;
      }),
    );
    try {
      const results = await Promise.all(clients.map((c) => migrate(c)));
      for (const r of results) expect(r.to).toBe(latestVersion);
      // Exactly one caller did the work; the rest found the schema current.
      expect(results.filter((r) => r.from === 0)).toHaveLength(1);
      expect(results.filter((r) => r.from === latestVersion)).toHaveLength(19);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    if (latestVersion > 0) {
      const { rows } = await db.pool.query<{ version: number; n: number }>(
        'select version, count(*)::int as n from bucketq.migration group by version order by version',
      );
      expect(rows).toEqual(migrations.map((m) => ({ version: m.version, n: 1 })));
    }
  });

  it('is a no-op on a current database', async () => {
    const db = await track(freshDatabase());
    await expect(migrate(db.pool)).resolves.toEqual({ from: latestVersion, to: latestVersion, definitions: 'current' });
  });

  it('refuses a database migrated by a newer bucketq, and changes nothing', async () => {
    const db = await track(freshDatabase());
    await db.pool.query(`create schema if not exists bucketq`);
    await db.pool.query(`create table if not exists bucketq.migration (version int primary key, name text, applied_at timestamptz default now())`);
    await db.pool.query(`insert into bucketq.migration (version, name) values ($1, 'from_the_future')`, [latestVersion + 1]);

    const err = await migrate(db.pool).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect((err as Error).message).toContain(`version ${latestVersion + 1}`);
    expect((err as Error).message).toContain(`version ${latestVersion}`);
    expect((err as Error).message).toMatch(/upgrade the bucketq package/);
    await expect(assertSchemaCurrent(db.pool)).rejects.toBeInstanceOf(SchemaTooNewError);
    expect(await readSchemaVersion(db.pool)).toBe(latestVersion + 1);
  });

  it.runIf(latestVersion > 0)('assertSchemaCurrent says to migrate when the database is behind', async () => {
    const db = await track(freshDatabase({ empty: true }));
    const err = await assertSchemaCurrent(db.pool).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaNotMigratedError);
    expect((err as Error).message).toMatch(/bucketq migrate.*client\.migrate\(\)/);
  });
});

describe('mapPgError', () => {
  it('maps a raised BQ002 to UnknownTopicError, keeping message, hint, detail and cause', async () => {
    const db = await track(freshDatabase());
    const raw = await db.pool
      .query(`do $$ begin raise exception 'unknown topic: %', 'nope' using errcode = 'BQ002', hint = 'create it first', detail = 'd1'; end $$`)
      .catch((e: unknown) => e);
    const mapped = mapPgError(raw);
    expect(mapped).toBeInstanceOf(UnknownTopicError);
    const e = mapped as UnknownTopicError;
    expect(e.code).toBe('BQ002');
    expect(e.message).toBe('unknown topic: nope');
    expect(e.hint).toBe('create it first');
    expect(e.detail).toBe('d1');
    expect(e.cause).toBe(raw);
  });

  it('returns other errors unchanged', async () => {
    const db = await track(freshDatabase());
    const raw = await db.pool.query('select 1/0').catch((e: unknown) => e);
    expect(mapPgError(raw)).toBe(raw);
    const plain = new Error('x');
    expect(mapPgError(plain)).toBe(plain);
  });
});

describe('BucketQ options', () => {
  it('rejects bad client options with a ConfigError naming the problem', () => {
    expect(() => new BucketQ({} as never)).toThrow(ConfigError);
    expect(() => new BucketQ({ connectionString: 'postgres://x', bogus: 1 } as never)).toThrow(/unknown option 'bogus' \(valid: connectionString, pool, poolMax, preparedStatements\)/);
    expect(() => new BucketQ({ connectionString: 'postgres://x', preparedStatements: 'no' } as never)).toThrow(/preparedStatements must be true or false/);
  });

  it('rejects bad group options before touching the database', async () => {
    const client = new BucketQ({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
    try {
      await expect(client.createGroup('g', 't', { startAt: 'first' as never })).rejects.toThrow(
        "startAt must be 'earliest', 'latest' or a Date, got 'first'",
      );
      await expect(client.createTopic('t', { retention: -5 })).rejects.toThrow(/retention must be a Postgres interval/);
    } finally {
      await client.close();
    }
  });
});
