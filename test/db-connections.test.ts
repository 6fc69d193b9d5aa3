// src/db's helpers that hold one pooled connection across several statements
// (withClient, and through it readSnapshot and inReadCommitted: the lobby's calls, the
// console's and the CLI's actions). The server ending that connection between two of
// the statements (a restart, pg_terminate_backend) must fail the call, not crash the
// process with an unhandled 'error' event: a worker did so in the chaos test once its
// heartbeat became a transaction of three statements.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { inReadCommitted } from '../src/db/read-committed.js';
import { withClient } from '../src/db/with-client.js';
import { useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

/** Ends the backend of c from another session and waits until c's socket has closed. */
async function killBetweenStatements(c: pg.ClientBase): Promise<void> {
  const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const closed = new Promise<void>((resolve) => (c as unknown as { connection: { stream: NodeJS.EventEmitter } }).connection.stream.once('close', () => resolve()));
  const admin = await ctx.session();
  await admin.query('select pg_terminate_backend($1)', [pid]);
  await closed;
  await new Promise((r) => setImmediate(r)); // the client's 'error' event, if any, has been emitted
}

describe('a pooled connection lost between statements', () => {
  for (const [name, run] of [
    ['withClient', withClient],
    ['inReadCommitted', inReadCommitted],
  ] as const) {
    it(`${name}: the call fails with the connection error, the process goes on, and the pool replaces the connection`, async () => {
      const pool = new pg.Pool({ connectionString: ctx.db.connectionString, max: 1 });
      pool.on('error', () => {});
      try {
        const err = await run(pool, async (c) => {
          await killBetweenStatements(c);
          return c.query('select 1');
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(Error);
        expect(String((err as Error).message)).toMatch(/terminat|connection/i);
        // The broken connection was discarded, not handed out again.
        expect((await pool.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }]);
      } finally {
        await pool.end();
      }
    });
  }
});
