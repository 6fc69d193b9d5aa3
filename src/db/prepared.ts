// Named prepared statements for the hot calls (send, claim, ack, nack, record_attempt,
// heartbeat). An unnamed statement is parsed, analysed and planned on every call: about
// 70 to 130 us of a claim's or a send's round trip (docs/design/log-cursor.md, sixteenth
// pass). A named one is prepared once per connection and then only bound and executed.
//
// A transaction pooler that does not keep prepared statements across transactions
// (PgBouncer in transaction mode before 1.21, or without max_prepared_statements)
// fails them with "prepared statement ... does not exist". Such setups turn them off:
// `preparedStatements: false` on BucketQ or consume() (for the pool and the clients it
// hands out), or BUCKETQ_PREPARED_STATEMENTS=off for the whole process (the CLI).
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConfigError } from '../errors.js';
import type { Queryable } from './with-client.js';

const unprepared = new WeakSet<object>();
const names = new Map<string, string>();
let offByEnv: boolean | undefined;

/** Whether BUCKETQ_PREPARED_STATEMENTS turns prepared statements off for the whole process. */
export function preparedStatementsOffByEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = env.BUCKETQ_PREPARED_STATEMENTS;
  const v = (raw ?? '').trim().toLowerCase();
  if (v === '' || v === 'on' || v === 'true' || v === '1' || v === 'yes') return false;
  if (v === 'off' || v === 'false' || v === '0' || v === 'no') return true;
  throw new ConfigError(
    `BUCKETQ_PREPARED_STATEMENTS=${JSON.stringify(raw)} is not understood: set it to 'off' behind a pooler that does not keep prepared statements (PgBouncer in transaction mode before 1.21), or 'on' (the default)`,
  );
}

/**
 * No prepared statements on this pool (and every client it hands out from now on) or
 * client: it goes through a pooler that does not keep them.
 */
export function withoutPreparedStatements(db: Queryable): void {
  if (unprepared.has(db)) return; // once per pool: each consume() on it would add a listener
  unprepared.add(db);
  const pool = db as pg.Pool;
  if (typeof pool.on === 'function' && 'totalCount' in pool) pool.on('acquire', (client) => unprepared.add(client));
}

/** Whether db runs the hot calls as prepared statements (not turned off for it). */
export function preparesStatements(db: Queryable): boolean {
  return !unprepared.has(db);
}

/**
 * The query to run: named (prepared once per connection) when `prepare` is set and db
 * allows it, else plain. The name is a hash of the text, so each distinct text (the
 * named arguments a call passes vary) has its own statement, and a text never changes
 * under a name.
 */
export function statement(db: Queryable, text: string, values: unknown[], prepare: boolean): pg.QueryConfig {
  // (The environment is read once: process.env is slow to read on every call.)
  if (!prepare || unprepared.has(db) || (offByEnv ??= preparedStatementsOffByEnv())) return { text, values };
  let name = names.get(text);
  if (name === undefined) {
    name = `bucketq_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
    names.set(text, name);
  }
  return { name, text, values };
}
