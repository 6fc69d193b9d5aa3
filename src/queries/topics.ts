// Topic and consumer-group creation: bucketq.create_topic / bucketq.create_group.
import { namedCall } from '../db/named-call.js';
import { query } from '../db/query.js';
import type { Queryable } from '../db/with-client.js';

export interface TopicSettings {
  buckets?: number | undefined;
  /** Interval text, e.g. '7 days'. */
  retention?: string | undefined;
  maxPayloadBytes?: number | undefined;
  partitionInterval?: string | undefined;
}

/** true when created, false when it already existed with identical settings (ConflictError otherwise). */
export async function createTopic(db: Queryable, topic: string, s: TopicSettings): Promise<boolean> {
  const call = namedCall('bucketq.create_topic', [
    ['topic', 'text', topic],
    ['buckets', 'int', s.buckets],
    ['retention', 'interval', s.retention],
    ['max_payload_bytes', 'int', s.maxPayloadBytes],
    ['partition_interval', 'interval', s.partitionInterval],
  ]);
  const rows = await query<{ created: boolean }>(db, `select ${call.text} as created`, call.values);
  return rows[0]?.created === true;
}

export interface GroupSettings {
  /** 'earliest', 'latest' or an ISO timestamp. */
  startAt?: string | undefined;
  maxAttempts?: number | undefined;
  onExhausted?: 'skip' | 'block' | undefined;
  backoffBase?: string | undefined;
  backoffMax?: string | undefined;
  leaseTimeout?: string | undefined;
  sessionTimeout?: string | undefined;
}

/** true when created, false when it already existed with identical settings (ConflictError otherwise). */
export async function createGroup(db: Queryable, group: string, topic: string, s: GroupSettings): Promise<boolean> {
  const call = namedCall('bucketq.create_group', [
    ['group_name', 'text', group],
    ['topic', 'text', topic],
    ['start_at', 'text', s.startAt],
    ['max_attempts', 'int', s.maxAttempts],
    ['on_exhausted', 'text', s.onExhausted],
    ['backoff_base', 'interval', s.backoffBase],
    ['backoff_max', 'interval', s.backoffMax],
    ['lease_timeout', 'interval', s.leaseTimeout],
    ['session_timeout', 'interval', s.sessionTimeout],
  ]);
  const rows = await query<{ created: boolean }>(db, `select ${call.text} as created`, call.values);
  return rows[0]?.created === true;
}
