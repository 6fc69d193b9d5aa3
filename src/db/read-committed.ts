import type pg from 'pg';
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
