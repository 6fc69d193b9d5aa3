import type pg from 'pg';
import { inTransaction, withClient, type Queryable } from './with-client.js';

/**
 * Runs fn in one read-only REPEATABLE READ transaction on one connection, so that every
 * number it reads comes from the same instant. JIT compilation is off for the
 * transaction: the views' plans are estimated dear enough to be compiled, and compiling
 * costs far more than running them (Debian's Postgres 15, JIT on by default: the
 * console's overview 1.5 s with it and 0.16 s without, a message's lookup 1.55 s against
 * 7 ms). SET LOCAL, so that a pooler's shared session keeps its own setting.
 */
export async function readSnapshot<T>(db: Queryable, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  return withClient(db, (c) =>
    inTransaction(c, 'begin isolation level repeatable read read only', async () => {
      await c.query('set local jit = off');
      return fn(c);
    }),
  );
}
