// Applies the embedded SQL: the numbered migrations not yet applied, then the current
// function and view definitions (sql/functions, sql/views) when their hash differs
// from the one the database records. Race-safe: every caller takes the same
// transaction-scoped advisory lock, so twenty workers starting at once apply each
// migration exactly once and the rest find the schema already current.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { BucketqError, SchemaNotMigratedError, SchemaTooNewError } from './errors.js';
import {
  type EmbeddedDefinitions,
  type EmbeddedMigration,
  definitions as embeddedDefinitions,
  latestVersion,
  migrations as embeddedMigrations,
} from './generated/migrations.js';
import { type Queryable, withClient } from './db/with-client.js';

/** Advisory lock key: the first 8 bytes of sha256('bucketq.migrate') as a signed bigint. */
export const MIGRATION_LOCK_KEY: string = createHash('sha256').update('bucketq.migrate').digest().readBigInt64BE(0).toString();

export class MigrationError extends BucketqError {
  constructor(message: string, opts?: { cause?: unknown }) {
    super('BQ_MIGRATION', message, opts);
  }
}

/** What migrate() applies: numbered migrations (1, 2, 3, ...) and the definitions step. */
export interface MigrationBundle {
  readonly migrations: readonly EmbeddedMigration[];
  readonly definitions: EmbeddedDefinitions;
}

/** This package's SQL (src/generated/migrations.ts). */
export const embeddedBundle: MigrationBundle = { migrations: embeddedMigrations, definitions: embeddedDefinitions };

/**
 * Brings the bucketq schema up to this package's latest version in one transaction.
 * A client passed in must not already be inside a transaction. `bundle` replaces the
 * embedded SQL (tests install a frozen earlier release with it).
 */
export async function migrate(
  db: Queryable,
  { bundle = embeddedBundle }: { bundle?: MigrationBundle } = {},
): Promise<{ from: number; to: number; definitions: 'applied' | 'current' }> {
  const { migrations, definitions } = bundle;
  const to = migrations.at(-1)?.version ?? 0;
  return withClient(db, async (client) => {
    await client.query('begin');
    try {
      await client.query('select pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
      // Read only after the lock: a concurrent migrator may just have committed.
      const from = await readSchemaVersion(client);
      if (from > to) throw new SchemaTooNewError(from, to);
      for (const m of migrations) {
        if (m.version <= from) continue;
        await applyOne(client, m);
      }
      const applied = await applyDefinitions(client, definitions);
      await refreshTopicCopies(client, applied);
      await client.query('commit');
      return { from, to: Math.max(from, to), definitions: applied ? 'applied' : 'current' };
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  });
}

/** Throws unless the database schema is exactly the version this package was built for. */
export async function assertSchemaCurrent(db: Queryable): Promise<void> {
  const version = await readSchemaVersion(db);
  if (version > latestVersion) throw new SchemaTooNewError(version, latestVersion);
  if (version < latestVersion) throw new SchemaNotMigratedError(version, latestVersion);
}

/** 0 when bucketq was never installed; otherwise the highest applied migration. */
export async function readSchemaVersion(db: Queryable): Promise<number> {
  const exists = await db.query<{ present: boolean }>(`select to_regclass('bucketq.migration') is not null as present`);
  if (!exists.rows[0]?.present) return 0;
  const res = await db.query<{ version: number }>('select coalesce(max(version), 0)::int as version from bucketq.migration');
  return res.rows[0]?.version ?? 0;
}

async function applyOne(client: pg.ClientBase, m: { version: number; name: string; sql: string }): Promise<void> {
  try {
    // Simple-query protocol (no parameters) so a file may hold many statements.
    await client.query(m.sql);
  } catch (err) {
    const where = lineOf(m.sql, (err as { position?: string }).position);
    const message = `migration ${m.version} (${m.name}) failed${where}: ${err instanceof Error ? err.message : String(err)}`;
    throw new MigrationError(message, { cause: err });
  }
  // Each file records itself; a file that forgets would be re-applied forever.
  const after = await readSchemaVersion(client);
  if (after !== m.version) {
    throw new MigrationError(
      `migration ${m.version} (${m.name}) ran but bucketq.migration now reports version ${after}; the file must insert its own row (version ${m.version})`,
    );
  }
}

/**
 * The repeatable step: every function and view file, in one go, when the recorded hash
 * differs. Each file is `create or replace`, so applying them again changes nothing;
 * check_function_bodies is off for the step (as in pg_dump output), so a language sql
 * function may refer to one defined by a later file.
 */
async function applyDefinitions(client: pg.ClientBase, definitions: EmbeddedDefinitions): Promise<boolean> {
  const { rows } = await client.query<{ hash: string }>('select hash from bucketq.definitions');
  if (rows[0]?.hash === definitions.hash) return false;
  await client.query('set local check_function_bodies = off');
  for (const f of definitions.files) {
    try {
      await client.query(f.sql);
    } catch (err) {
      const where = lineOf(f.sql, (err as { position?: string }).position);
      throw new MigrationError(`sql/${f.path} failed${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  await client.query('set local check_function_bodies = on');
  // New functions and views get their roles' grants (and PUBLIC loses its default EXECUTE).
  await client.query('select bucketq._grant_roles()');
  await client.query(
    `insert into bucketq.definitions (singleton, hash) values (true, $1)
     on conflict (singleton) do update set hash = excluded.hash, applied_at = now()`,
    [definitions.hash],
  );
  return true;
}

/**
 * Each topic's own copy of the claim and ack paths (schema bucketq_t<topic_id>): made
 * again from the definitions just applied (the public functions were written back
 * without their branches to them), or when a topic has none, as in a database restored
 * from a dump of schema bucketq alone (its claims would fail). Releases before these
 * copies have no _topic_copies_refresh: nothing to do.
 */
async function refreshTopicCopies(client: pg.ClientBase, definitionsApplied: boolean): Promise<void> {
  const { rows } = await client.query<{ due: boolean }>(
    `select to_regproc('bucketq._topic_copies_refresh') is not null
            and ($1 or exists (select 1 from bucketq.topic x
                                where not exists (select 1 from pg_catalog.pg_namespace n where n.nspname = 'bucketq_t' || x.topic_id))) as due`,
    [definitionsApplied],
  );
  if (rows[0]?.due) await client.query('select bucketq._topic_copies_refresh()');
}

/** " at line N" for a Postgres error position (1-based character offset), else "". */
function lineOf(sql: string, position: string | undefined): string {
  const offset = Number(position);
  if (!Number.isInteger(offset) || offset < 1) return '';
  return ` at line ${sql.slice(0, offset - 1).split('\n').length}`;
}
