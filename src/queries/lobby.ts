// The lobby: bucketq.join / heartbeat / leave, and the group settings a worker needs.
import { PREPARE, query } from '../db/query.js';
import { inReadCommitted } from '../db/read-committed.js';
import type { Queryable } from '../db/with-client.js';
import { UnknownGroupError } from '../errors.js';

/** A bucket this consumer owns, with the epoch its leases are granted under. */
export interface OwnedBucket {
  bucket: number;
  epoch: string;
}

interface OwnedRow {
  bucket: number;
  epoch: string;
}

const toOwned = (rows: OwnedRow[]): OwnedBucket[] => rows.map((r) => ({ bucket: r.bucket, epoch: r.epoch }));

// join, heartbeat and leave run only in READ COMMITTED (BQ005 in any other level): on a
// pool they get a transaction of their own at that level, whatever the database's
// default; a caller's client runs them in its own transaction.

export async function join(db: Queryable, group: string, consumerId: string, meta?: unknown): Promise<OwnedBucket[]> {
  return inReadCommitted(db, async (c) =>
    toOwned(
      await query<OwnedRow>(
        c,
        'select bucket, epoch from bucketq.join(group_name => $1::text, consumer_id => $2::text, meta => $3::jsonb)',
        [group, consumerId, meta === undefined ? null : JSON.stringify(meta)],
      ),
    ),
  );
}

export async function heartbeat(db: Queryable, group: string, consumerId: string): Promise<OwnedBucket[]> {
  return inReadCommitted(db, async (c) =>
    toOwned(
      await query<OwnedRow>(
        c,
        'select bucket, epoch from bucketq.heartbeat(group_name => $1::text, consumer_id => $2::text)',
        [group, consumerId],
        PREPARE,
      ),
    ),
  );
}

export async function leave(db: Queryable, group: string, consumerId: string): Promise<number> {
  return inReadCommitted(db, async (c) => {
    const rows = await query<{ released: number }>(
      c,
      'select bucketq.leave(group_name => $1::text, consumer_id => $2::text) as released',
      [group, consumerId],
    );
    return rows[0]?.released ?? 0;
  });
}

export interface GroupSettings {
  topic: string;
  sessionTimeoutMs: number;
  leaseTimeoutMs: number;
  maxAttempts: number;
  /** Retry n waits backoffBase * 2^(n-1), at most backoffMax (as bucketq.nack computes it). */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export async function groupSettings(db: Queryable, group: string): Promise<GroupSettings> {
  const rows = await query<{ topic: string; session_ms: number; lease_ms: number; max_attempts: number; backoff_base_ms: number; backoff_max_ms: number }>(
    db,
    `select topic,
            extract(epoch from session_timeout) * 1000 as session_ms,
            extract(epoch from lease_timeout) * 1000 as lease_ms,
            max_attempts,
            extract(epoch from backoff_base) * 1000 as backoff_base_ms,
            extract(epoch from backoff_max) * 1000 as backoff_max_ms
       from bucketq.groups where group_name = $1`,
    [group],
  );
  const row = rows[0];
  if (!row) {
    throw new UnknownGroupError(`unknown consumer group: '${group}'`, {
      hint: 'Create it first with client.createGroup(name, topic), or in SQL: select bucketq.create_group(...)',
    });
  }
  return {
    topic: row.topic,
    sessionTimeoutMs: Number(row.session_ms),
    leaseTimeoutMs: Number(row.lease_ms),
    maxAttempts: row.max_attempts,
    backoffBaseMs: Number(row.backoff_base_ms),
    backoffMaxMs: Number(row.backoff_max_ms),
  };
}
