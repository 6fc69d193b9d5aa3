// Every SQL call goes through here so database errors surface as typed bucketq errors.
import type pg from 'pg';
import { mapPgError } from '../errors.js';
import { statement } from './prepared.js';
import type { Queryable } from './with-client.js';

/** For the hot calls: run as a named prepared statement (src/db/prepared.ts). */
export const PREPARE = { prepare: true } as const;

/**
 * Runs one statement. `prepare`: the hot calls, whose texts are few and fixed, run as
 * named prepared statements (src/db/prepared.ts) unless db's setup turns them off.
 */
export async function query<R extends pg.QueryResultRow>(
  db: Queryable,
  text: string,
  values: unknown[] = [],
  { prepare = false }: { prepare?: boolean } = {},
): Promise<R[]> {
  try {
    const result = await db.query<R>(statement(db, text, values, prepare));
    return result.rows;
  } catch (err) {
    throw mapPgError(err);
  }
}
