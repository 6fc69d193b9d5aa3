import type pg from 'pg';
import { InvalidArgumentError } from '../errors.js';
import { inTransaction, isPool, withClient, type Queryable } from './with-client.js';

/**
 * Runs fn in one READ COMMITTED transaction on a connection of the pool, whatever the
 * database's default_transaction_isolation: rewind and skip_to_latest refuse any other
 * level (BQ005), since an older snapshot misses the acks they wait for. A caller's own
 * client runs fn as it is, in the caller's transaction and at its level.
 */
export async function inReadCommitted<T>(db: Queryable, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  if (!isPool(db)) return fn(db);
  return withClient(db, (c) => inTransaction(c, 'begin isolation level read committed', () => fn(c)));
}

/** Pools found to default to another level: their calls go straight to a READ COMMITTED transaction. */
const notReadCommitted = new WeakSet<pg.Pool>();

/** The refusal of _raise_not_read_committed (BQ005), as query() maps it. */
const isNotReadCommittedError = (err: unknown) =>
  err instanceof InvalidArgumentError && /runs only in READ COMMITTED transactions/.test(err.message);

/**
 * For the hot calls a caller makes on a pool (the client's claim, ack and nack): one
 * autocommit statement, as before, while the pool's connections default to READ
 * COMMITTED. On a pool whose default is another level the call is refused (BQ005,
 * before it changes anything: it was its own transaction), then run again in a READ
 * COMMITTED transaction, and so is every later call on that pool. A caller's own
 * client runs fn as it is: its transaction, its level, and the refusal if that is not
 * READ COMMITTED.
 */
export async function readCommittedOnPool<T>(db: Queryable, fn: (db: Queryable) => Promise<T>): Promise<T> {
  if (!isPool(db)) return fn(db);
  if (notReadCommitted.has(db)) return inReadCommitted(db, fn);
  try {
    return await fn(db);
  } catch (err) {
    if (!isNotReadCommittedError(err)) throw err;
    notReadCommitted.add(db);
    return inReadCommitted(db, fn);
  }
}
