// Every SQL call goes through here so database errors surface as typed bucketq errors.
import type pg from 'pg';
import { mapPgError } from '../errors.js';
import type { Queryable } from './with-client.js';

export async function query<R extends pg.QueryResultRow>(db: Queryable, text: string, values: unknown[] = []): Promise<R[]> {
  try {
    const result = await db.query<R>(text, values);
    return result.rows;
  } catch (err) {
    throw mapPgError(err);
  }
}
