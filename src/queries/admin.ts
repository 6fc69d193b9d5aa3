// Operator functions: bucketq.replay_dead and bucketq.maintain.
import { query } from '../db/query.js';
import type { Queryable } from '../db/with-client.js';

/** Puts dead-lettered messages of a group back in line (all of them when msgIds is omitted); returns how many. */
export async function replayDead(db: Queryable, group: string, msgIds: readonly string[] | undefined): Promise<number> {
  const rows = await query<{ replayed: number }>(db, 'select bucketq.replay_dead(group_name => $1::text, msg_ids => $2::bigint[]) as replayed', [
    group,
    msgIds ?? null,
  ]);
  return rows[0]?.replayed ?? 0;
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
