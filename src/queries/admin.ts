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
  topic: string;
  action: string;
  detail: string;
}

/** Creates partitions ahead, drops expired ones, prunes idempotency keys; one row per action taken. */
export async function maintain(db: Queryable): Promise<MaintenanceAction[]> {
  return query<MaintenanceAction>(db, 'select topic, action, detail from bucketq.maintain()');
}
