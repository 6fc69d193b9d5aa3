// Consuming: bucketq.claim / bucketq.ack / bucketq.nack. Ids and lease tokens are
// int8 and stay strings end to end so no precision is ever lost.
import type pg from 'pg';
import { namedCall } from '../db/named-call.js';
import { PREPARE, query } from '../db/query.js';
import { mapPgError } from '../errors.js';
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
  /**
   * Proof of this lease; ack and nack must present it. null for a message claimed by
   * row lock (claim_locked): its transaction holds it.
   */
  leaseToken: string | null;
  sentAt: Date;
  /** null for a message claimed by row lock. */
  leasedUntil: Date | null;
  /** Epoch of the bucket ownership the lease was taken under (fencing). */
  epoch: string;
}

/** A message claimed with a lease (claim): ack and nack need its token. */
export interface LeasedMessage<P = unknown> extends ClaimedMessage<P> {
  leaseToken: string;
  leasedUntil: Date;
}

interface ClaimRow {
  msg_id: string;
  bucket: number;
  key: string | null;
  key_seq: string | null;
  payload: unknown;
  headers: Record<string, unknown> | null;
  attempt: number;
  lease_token: string | null;
  sent_at: Date;
  leased_until: Date | null;
  epoch: string;
}

function toMessage(r: ClaimRow): ClaimedMessage {
  return {
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
  };
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
    /** The payload as its JSON text (a string), exactly as stored, instead of parsed. */
    payloadAsText?: boolean | undefined;
  },
): Promise<LeasedMessage[]> {
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
    `select msg_id, bucket, key, key_seq, ${payloadColumn(opts.payloadAsText)}, headers, attempt, lease_token, sent_at, leased_until, epoch from ${call.text}`,
    call.values,
    PREPARE,
  );
  return rows.map(toMessage) as LeasedMessage[];
}

export interface LockedClaim {
  messages: ClaimedMessage[];
  /** The claiming transaction's id (for recordAttempt); null when nothing was claimed. */
  xact: string | null;
}

/**
 * node-pg parses json and jsonb with JSON.parse, which rounds integers beyond 2^53 and
 * decimals beyond a double's precision. As text, the payload arrives exactly as stored.
 */
const payloadColumn = (asText: boolean | undefined) => (asText ? 'payload::text as payload' : 'payload');

const lockedColumns = (payloadAsText: boolean | undefined) =>
  `msg_id, bucket, key, key_seq, ${payloadColumn(payloadAsText)}, headers, attempt, null::bigint as lease_token, sent_at, null::timestamptz as leased_until, epoch, xact`;

/**
 * begin with the given settings, then claim_locked as a named prepared statement (parsed
 * and planned once per connection; inlined into one simple-protocol text it was parsed
 * and planned on every batch). The caller commits or rolls back.
 */
export async function beginAndClaimLocked(
  client: pg.ClientBase,
  beginSql: string,
  group: string,
  consumerId: string,
  opts: { max: number; maxPerKey: number; buckets?: number[] | undefined; payloadAsText?: boolean | undefined },
): Promise<LockedClaim> {
  // Both are queued at once: the claim goes out as soon as the begin has answered.
  const begun = client.query(beginSql);
  const claimed = query<ClaimRow & { xact: string }>(
    client,
    `select ${lockedColumns(opts.payloadAsText)} from bucketq.claim_locked(group_name => $1::text, consumer_id => $2::text, ` +
      `max_messages => $3::int, max_per_key => $4::int, buckets => $5::int[])`,
    [group, consumerId, Math.trunc(opts.max), Math.trunc(opts.maxPerKey), opts.buckets ?? null],
    PREPARE,
  );
  let rows: (ClaimRow & { xact: string })[];
  try {
    [, rows] = await Promise.all([begun, claimed]);
  } catch (err) {
    await Promise.allSettled([begun, claimed]);
    throw mapPgError(err); // typed, as every other call: a worker no longer a member must see FencedError
  }
  return { messages: rows.map(toMessage), xact: rows[0]?.xact ?? null };
}

/**
 * bucketq.record_attempt, from a session other than the claiming one: if transaction
 * xact ends without committing, the messages' attempt counts.
 */
export async function recordAttempt(db: Queryable, group: string, consumerId: string, xact: string, msgIds: string[]): Promise<void> {
  await query(db, 'select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumerId, xact, msgIds], PREPARE);
}

export interface AckResult {
  msgId: string;
  /** As reported by bucketq.ack, e.g. 'acked'. */
  status: string;
}

export async function ack(
  db: Queryable,
  group: string,
  items: readonly { msgId: string; leaseToken: string | null }[],
  opts: { consumerId?: string | undefined; strict?: boolean | undefined },
): Promise<AckResult[]> {
  if (items.length === 0) return [];
  const call = namedCall('bucketq.ack', [
    ['group_name', 'text', group],
    ['msg_ids', 'bigint[]', items.map((i) => i.msgId)],
    ['lease_tokens', 'bigint[]', leaseTokensOf(items)],
    ['consumer_id', 'text', opts.consumerId],
    ['strict', 'boolean', opts.strict],
  ]);
  const rows = await query<{ msg_id: string; status: string }>(db, `select msg_id, status from ${call.text}`, call.values, PREPARE);
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
  items: readonly {
    msgId: string;
    leaseToken: string | null;
    error?: string | undefined;
    /** This message's own delay (an interval); else opts.retryDelay, else the group's backoff. */
    retryDelay?: string | undefined;
    /** No retry can help (a payload the consumer cannot read): dead-letter it at once (bucketq.reject). */
    permanent?: boolean | undefined;
  }[],
  opts: { retryDelay?: string | undefined; strict?: boolean | undefined; consumerId?: string | undefined },
): Promise<NackResult[]> {
  if (items.length === 0) return [];
  const permanent = items.filter((i) => i.permanent);
  if (permanent.length > 0) {
    const retried = items.filter((i) => !i.permanent);
    const results = [...(await nack(db, group, retried, opts)), ...(await reject(db, group, permanent, opts))];
    return items.map((i) => results.find((r) => r.msgId === i.msgId)!).filter(Boolean);
  }
  if (items.some((i) => i.retryDelay !== undefined)) return nackEach(db, group, items, opts);
  const call = namedCall('bucketq.nack', [
    ['group_name', 'text', group],
    ['msg_ids', 'bigint[]', items.map((i) => i.msgId)],
    ['lease_tokens', 'bigint[]', leaseTokensOf(items)],
    ['errors', 'text[]', items.some((i) => i.error !== undefined) ? items.map((i) => i.error ?? null) : undefined],
    ['retry_delay', 'interval', opts.retryDelay],
    ['strict', 'boolean', opts.strict],
    ['consumer_id', 'text', opts.consumerId],
  ]);
  const rows = await query<{ msg_id: string; status: string; retry_at: Date | null }>(
    db,
    `select msg_id, status, retry_at from ${call.text}`,
    call.values,
    PREPARE,
  );
  return rows.map((r) => ({ msgId: r.msg_id, status: r.status, retryAt: r.retry_at }));
}

/** Dead-letter claimed messages at once (bucketq.reject: nack's checks, no attempts left). */
export async function reject(
  db: Queryable,
  group: string,
  items: readonly { msgId: string; leaseToken: string | null; error?: string | undefined }[],
  opts: { strict?: boolean | undefined; consumerId?: string | undefined },
): Promise<NackResult[]> {
  if (items.length === 0) return [];
  const call = namedCall('bucketq.reject', [
    ['group_name', 'text', group],
    ['msg_ids', 'bigint[]', items.map((i) => i.msgId)],
    ['lease_tokens', 'bigint[]', leaseTokensOf(items)],
    ['errors', 'text[]', items.some((i) => i.error !== undefined) ? items.map((i) => i.error ?? null) : undefined],
    ['strict', 'boolean', opts.strict],
    ['consumer_id', 'text', opts.consumerId],
  ]);
  const rows = await query<{ msg_id: string; status: string; retry_at: Date | null }>(db, `select msg_id, status, retry_at from ${call.text}`, call.values, PREPARE);
  return rows.map((r) => ({ msgId: r.msg_id, status: r.status, retryAt: r.retry_at }));
}

/**
 * nack with a delay per message: bucketq.nack takes one retry_delay per call, so it is
 * called once per message, all in one statement (one round trip, one transaction, and
 * one error undoes them all, as with a single call). Results come in the items' order.
 */
async function nackEach(
  db: Queryable,
  group: string,
  items: readonly { msgId: string; leaseToken: string | null; error?: string | undefined; retryDelay?: string | undefined }[],
  opts: { retryDelay?: string | undefined; strict?: boolean | undefined; consumerId?: string | undefined },
): Promise<NackResult[]> {
  const tokens = leaseTokensOf(items);
  const rows = await query<{ msg_id: string; status: string; retry_at: Date | null }>(
    db,
    `select r.msg_id, r.status, r.retry_at
       from unnest($2::bigint[], $3::bigint[], $4::text[], $5::interval[]) with ordinality as x(msg_id, lease_token, error, retry_delay, n)
      cross join lateral bucketq.nack(
             group_name => $1::text,
             msg_ids => array[x.msg_id],
             lease_tokens => case when $3::bigint[] is null then null else array[x.lease_token] end,
             errors => array[x.error],
             retry_delay => coalesce(x.retry_delay, $6::interval),
             strict => coalesce($7::boolean, true),
             consumer_id => $8::text) r
      order by x.n`,
    [
      group,
      items.map((i) => i.msgId),
      tokens,
      items.map((i) => i.error ?? null),
      items.map((i) => i.retryDelay ?? null),
      opts.retryDelay ?? null,
      opts.strict ?? null,
      opts.consumerId ?? null,
    ],
  );
  return rows.map((r) => ({ msgId: r.msg_id, status: r.status, retryAt: r.retry_at }));
}

/** The tokens, or null for messages claimed by row lock (all of them must be). */
function leaseTokensOf(items: readonly { msgId: string; leaseToken: string | null }[]): string[] | null {
  const locked = items.filter((i) => i.leaseToken === null).length;
  if (locked === items.length) return null;
  if (locked > 0) {
    throw new TypeError('ack/nack: mix of leased messages (claim) and locked ones (claim_locked); ack or nack each kind in its own call');
  }
  return items.map((i) => i.leaseToken!);
}
