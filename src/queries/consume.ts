// Consuming: bucketq.claim / bucketq.ack / bucketq.nack. Ids and lease tokens are
// int8 and stay strings end to end so no precision is ever lost.
import { namedCall } from '../db/named-call.js';
import { query } from '../db/query.js';
import type { Queryable } from '../db/with-client.js';

export interface ClaimedMessage<P = unknown> {
  msgId: string;
  bucket: number;
  key: string | null;
  /** 1, 2, 3, ... per (topic, key), gapless; null for unkeyed messages. */
  keySeq: string | null;
  payload: P;
  headers: Record<string, unknown> | null;
  /** 1 on the first delivery. */
  attempt: number;
  /** Proof of this lease; ack and nack must present it. */
  leaseToken: string;
  sentAt: Date;
  leasedUntil: Date;
  /** Epoch of the bucket ownership the lease was taken under (fencing). */
  epoch: string;
}

interface ClaimRow {
  msg_id: string;
  bucket: number;
  key: string | null;
  key_seq: string | null;
  payload: unknown;
  headers: Record<string, unknown> | null;
  attempt: number;
  lease_token: string;
  sent_at: Date;
  leased_until: Date;
  epoch: string;
}

export async function claim(
  db: Queryable,
  group: string,
  consumerId: string,
  opts: {
    max?: number | undefined;
    buckets?: number[] | undefined;
    leaseTimeout?: string | undefined;
    /** > 1: a key may come as a run of consecutive messages, in key_seq order. */
    maxPerKey?: number | undefined;
  },
): Promise<ClaimedMessage[]> {
  const call = namedCall('bucketq.claim', [
    ['group_name', 'text', group],
    ['consumer_id', 'text', consumerId],
    ['max_messages', 'int', opts.max],
    ['buckets', 'int[]', opts.buckets],
    ['lease_timeout', 'interval', opts.leaseTimeout],
    ['max_per_key', 'int', opts.maxPerKey],
  ]);
  const rows = await query<ClaimRow>(
    db,
    `select msg_id, bucket, key, key_seq, payload, headers, attempt, lease_token, sent_at, leased_until, epoch from ${call.text}`,
    call.values,
  );
  return rows.map((r) => ({
    msgId: r.msg_id,
    bucket: r.bucket,
    key: r.key,
    keySeq: r.key_seq,
    payload: r.payload,
    headers: r.headers,
    attempt: r.attempt,
    leaseToken: r.lease_token,
    sentAt: r.sent_at,
    leasedUntil: r.leased_until,
    epoch: r.epoch,
  }));
}

export interface AckResult {
  msgId: string;
  /** As reported by bucketq.ack, e.g. 'acked'. */
  status: string;
}

export async function ack(
  db: Queryable,
  group: string,
  items: readonly { msgId: string; leaseToken: string }[],
  opts: { consumerId?: string | undefined; strict?: boolean | undefined },
): Promise<AckResult[]> {
  if (items.length === 0) return [];
  const call = namedCall('bucketq.ack', [
    ['group_name', 'text', group],
    ['msg_ids', 'bigint[]', items.map((i) => i.msgId)],
    ['lease_tokens', 'bigint[]', items.map((i) => i.leaseToken)],
    ['consumer_id', 'text', opts.consumerId],
    ['strict', 'boolean', opts.strict],
  ]);
  const rows = await query<{ msg_id: string; status: string }>(db, `select msg_id, status from ${call.text}`, call.values);
  return rows.map((r) => ({ msgId: r.msg_id, status: r.status }));
}

export interface NackResult {
  msgId: string;
  /** As reported by bucketq.nack, e.g. 'retry' or 'dead'. */
  status: string;
  /** When the message becomes ready again; null when it was dead-lettered. */
  retryAt: Date | null;
}

export async function nack(
  db: Queryable,
  group: string,
  items: readonly { msgId: string; leaseToken: string; error?: string | undefined }[],
  opts: { retryDelay?: string | undefined; strict?: boolean | undefined },
): Promise<NackResult[]> {
  if (items.length === 0) return [];
  const call = namedCall('bucketq.nack', [
    ['group_name', 'text', group],
    ['msg_ids', 'bigint[]', items.map((i) => i.msgId)],
    ['lease_tokens', 'bigint[]', items.map((i) => i.leaseToken)],
    ['errors', 'text[]', items.some((i) => i.error !== undefined) ? items.map((i) => i.error ?? null) : undefined],
    ['retry_delay', 'interval', opts.retryDelay],
    ['strict', 'boolean', opts.strict],
  ]);
  const rows = await query<{ msg_id: string; status: string; retry_at: Date | null }>(
    db,
    `select msg_id, status, retry_at from ${call.text}`,
    call.values,
  );
  return rows.map((r) => ({ msgId: r.msg_id, status: r.status, retryAt: r.retry_at }));
}
