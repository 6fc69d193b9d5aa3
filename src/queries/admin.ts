// Operator functions: bucketq.replay_dead, rewind, skip_to_latest and maintain.
import { query } from '../db/query.js';
import { inReadCommitted } from '../db/read-committed.js';
import type { Queryable } from '../db/with-client.js';

/** Puts dead-lettered messages of a group back in line (all of them when msgIds is omitted); returns how many. */
export async function replayDead(db: Queryable, group: string, msgIds: readonly string[] | undefined): Promise<number> {
  // READ COMMITTED, whatever the database's default: replay_dead refuses any other level.
  return inReadCommitted(db, async (c) => {
    const rows = await query<{ replayed: number }>(c, 'select bucketq.replay_dead(group_name => $1::text, msg_ids => $2::bigint[]) as replayed', [
      group,
      msgIds ?? null,
    ]);
    return rows[0]?.replayed ?? 0;
  });
}

/** bucketq.rewind (READ COMMITTED, whatever the database's default); returns how many messages will be delivered again. */
export async function rewind(db: Queryable, group: string, to: Date): Promise<number> {
  return inReadCommitted(db, async (c) => {
    const rows = await query<{ n: number }>(c, 'select bucketq.rewind(group_name => $1::text, to_time => $2::timestamptz) as n', [group, to]);
    return rows[0]!.n;
  });
}

/** bucketq.skip_to_latest (READ COMMITTED, whatever the database's default); returns how many messages were skipped. */
export async function skipToLatest(db: Queryable, group: string): Promise<number> {
  return inReadCommitted(db, async (c) => {
    const rows = await query<{ n: string }>(c, 'select bucketq.skip_to_latest(group_name => $1::text)::text as n', [group]);
    return Number(rows[0]!.n);
  });
}

export interface MaintenanceAction {
  /** null for an action on every topic at once (the per-key counters' rotation). */
  topic: string | null;
  action: string;
  detail: string;
}

/** Creates partitions ahead, drops expired ones, prunes idempotency keys, rotates the per-key counters; one row per action taken. */
export async function maintain(db: Queryable): Promise<MaintenanceAction[]> {
  return query<MaintenanceAction>(db, 'select topic, action, detail from bucketq.maintain()');
}

export interface GroupBacklog {
  ready: number;
  leased: number;
  delayed: number;
  waiting: number;
  deadBlocking: number;
}

/** A group's unfinished messages summed over its buckets, from the bucketq.lag view. */
export async function groupBacklog(db: Queryable, group: string): Promise<GroupBacklog> {
  const rows = await query<GroupBacklog>(
    db,
    `select coalesce(sum(ready), 0)::int as ready, coalesce(sum(leased), 0)::int as leased,
            coalesce(sum(delayed), 0)::int as delayed, coalesce(sum(waiting), 0)::int as waiting,
            coalesce(sum(dead_blocking), 0)::int as "deadBlocking"
       from bucketq.lag where group_name = $1::text`,
    [group],
  );
  return rows[0] ?? { ready: 0, leased: 0, delayed: 0, waiting: 0, deadBlocking: 0 };
}
