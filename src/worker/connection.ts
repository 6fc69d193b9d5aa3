// A pool connection held for one transaction (a batch, or one message), and the begin
// that bounds how long such a transaction may sit idle.
import type pg from 'pg';
import type { Runtime } from './runtime.js';

export interface HeldConnection {
  client: pg.PoolClient;
  /** Back to the pool; with an error the pool discards the connection instead. */
  release: (err?: Error) => void;
}

/**
 * A checked-out client gets an error listener while we hold it: the server ending the
 * connection mid-transaction (restart, idle_in_transaction timeout) must fail the
 * next query, not crash the process with an unhandled 'error' event.
 */
export async function checkout(rt: Runtime, pool: pg.Pool = rt.pool): Promise<HeldConnection> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost = err;
    rt.log.warn({ err }, 'database connection lost mid-transaction');
  };
  client.on('error', onError);
  return {
    client,
    release: (err?: Error) => {
      client.off('error', onError);
      client.release(err ?? lost);
    },
  };
}

/** begin and the idle limit: a worker frozen inside a transaction must not hold row
 * locks forever (past its lease the message is delivered again anyway). READ COMMITTED
 * whatever the database's default: claims run only there (see _claim.sql). */
export function beginSql(rt: Runtime): string {
  const limit = Math.max(1000, rt.settings.sessionTimeoutMs, rt.opts.leaseTimeoutMs ?? rt.settings.leaseTimeoutMs);
  return `begin isolation level read committed; set local idle_in_transaction_session_timeout = ${Math.round(limit)}`;
}
