// Producing: bucketq.send / bucketq.send_batch. Payloads are serialised here so a JS
// string payload becomes a JSON string, not text that Postgres would fail to parse.
import { PREPARE, query } from '../db/query.js';
import type { Queryable } from '../db/with-client.js';
import { ConfigError } from '../errors.js';

export interface OutgoingMessage {
  payload: unknown;
  key?: string | undefined;
  headers?: Record<string, unknown> | undefined;
  idempotencyKey?: string | undefined;
  notBefore?: Date | undefined;
}

const SEND_SQL = `select bucketq.send(
  topic => $1::text, payload => $2::jsonb, key => $3::text, headers => $4::jsonb,
  idempotency_key => $5::text, not_before => $6::timestamptz) as id`;

// WITH ORDINALITY + ORDER BY: input order is part of the contract, so do not rely on
// the executor happening to preserve set-returning-function order.
const SEND_BATCH_SQL = `select id from bucketq.send_batch(
  topic => $1::text, payloads => $2::jsonb[], keys => $3::text[], headers => $4::jsonb[],
  idempotency_keys => $5::text[], not_before => $6::timestamptz[]) with ordinality as r(id, n)
  order by n`;

/** Returns the message id as a string (int8 does not fit a JS number in general). */
export async function send(db: Queryable, topic: string, m: OutgoingMessage): Promise<string> {
  const rows = await query<{ id: string }>(db, SEND_SQL, [
    topic,
    toJson(m.payload, 'payload'),
    m.key ?? null,
    m.headers === undefined ? null : toJson(m.headers, 'headers'),
    m.idempotencyKey ?? null,
    m.notBefore ?? null,
  ], PREPARE);
  const id = rows[0]?.id;
  if (id === undefined || id === null) throw new Error('bucketq.send returned no id');
  return id;
}

/** Sends all messages in one statement; returns their ids in input order. */
export async function sendBatch(db: Queryable, topic: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
  if (messages.length === 0) return [];
  const rows = await query<{ id: string }>(db, SEND_BATCH_SQL, [
    topic,
    messages.map((m, i) => toJson(m.payload, `messages[${i}].payload`)),
    // A column of all-missing values is sent as NULL: the SQL default, and less to parse.
    column(messages, (m) => m.key),
    column(messages, (m, i) => (m.headers === undefined ? undefined : toJson(m.headers, `messages[${i}].headers`))),
    column(messages, (m) => m.idempotencyKey),
    column(messages, (m) => m.notBefore),
  ], PREPARE);
  if (rows.length !== messages.length) {
    throw new Error(`bucketq.send_batch returned ${rows.length} ids for ${messages.length} messages`);
  }
  return rows.map((r) => r.id);
}

function column<T>(messages: readonly OutgoingMessage[], pick: (m: OutgoingMessage, i: number) => T | undefined): (T | null)[] | null {
  let any = false;
  const values = messages.map((m, i) => {
    const v = pick(m, i);
    if (v !== undefined) any = true;
    return v ?? null;
  });
  return any ? values : null;
}

function toJson(value: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new ConfigError(`${what} is not JSON-serialisable: ${err instanceof Error ? err.message : String(err)}`, [], { cause: err });
  }
  if (json === undefined) throw new ConfigError(`${what} is not JSON-serialisable (got ${value === undefined ? 'undefined' : typeof value})`);
  return json;
}
