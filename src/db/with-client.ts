// Lets functions accept either a Pool or a caller's own client (e.g. one inside the
// caller's transaction) and run on a single connection.
import type pg from 'pg';

export type Queryable = pg.Pool | pg.ClientBase;

// Structural check: a caller's Pool may come from another copy of pg.
export function isPool(db: Queryable): db is pg.Pool {
  return 'totalCount' in db && 'idleCount' in db;
}

/**
 * Runs fn on one connection: db itself if it is a client, else one checked out of the
 * pool. A checked-out client has an error listener while we hold it: the server ending
 * the connection between fn's statements (a restart) must fail the next query, not crash
 * the process with an unhandled 'error' event (a worker's heartbeat, in chaos testing).
 */
export async function withClient<T>(db: Queryable, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  if (!isPool(db)) return fn(db);
  const client = await db.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => void (lost = err);
  client.on('error', onError);
  try {
    const result = await fn(client);
    client.off('error', onError);
    client.release(lost);
    return result;
  } catch (err) {
    client.off('error', onError);
    // Destroy rather than reuse: the connection may be mid-transaction or broken.
    client.release(lost ?? (err instanceof Error ? err : true));
    throw err;
  }
}

/** Runs fn on client between beginSql and COMMIT; ROLLBACK (its own failure ignored) and rethrow if fn fails. */
export async function inTransaction<T>(client: pg.ClientBase, beginSql: string, fn: () => Promise<T>): Promise<T> {
  await client.query(beginSql);
  try {
    const result = await fn();
    await client.query('commit');
    return result;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  }
}
