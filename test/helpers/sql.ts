// Helpers for the database-level tests (test/sql-*.test.ts): real sessions calling the
// bucketq SQL functions directly, a movable database clock, and error capture.
import pg from 'pg';
import { afterAll, beforeAll, expect } from 'vitest';
import { freshDatabase, type FreshDatabase } from '../support/db.js';
import { inTransaction } from '../../src/db/with-client.js';

export interface Ctx {
  db: FreshDatabase;
  /** A new dedicated session (closed after the file's tests). */
  session(): Promise<pg.Client>;
  /** Unique names per test: the tests of a file share one database. */
  unique(prefix: string): string;
}

/** One fresh database per test file, with sessions closed before it is dropped. */
export function useDatabase(): Ctx {
  const clients: pg.Client[] = [];
  let n = 0;
  const ctx = {
    db: undefined as unknown as FreshDatabase,
    async session() {
      const c = new pg.Client({ connectionString: ctx.db.connectionString });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    unique(prefix: string) {
      return `${prefix}.${++n}`;
    },
  };
  beforeAll(async () => {
    ctx.db = await freshDatabase();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await ctx.db?.drop();
  });
  return ctx;
}

export type Queryable = pg.Pool | pg.Client | pg.PoolClient;

export interface PgError extends Error {
  code?: string;
  hint?: string;
  detail?: string;
}

/** The error a query raises (fails the test if it succeeds). */
export async function pgError(p: Promise<unknown>): Promise<PgError> {
  try {
    await p;
  } catch (err) {
    return err as PgError;
  }
  throw new Error('expected the query to fail, but it succeeded');
}

/** Expect a bucketq error: its SQLSTATE and a non-empty HINT. */
export async function expectBqError(p: Promise<unknown>, code: string, message?: RegExp): Promise<PgError> {
  const err = await pgError(p);
  expect({ code: err.code, message: err.message }).toMatchObject({ code });
  expect(err.hint ?? '', `hint of ${code}: ${err.message}`).not.toBe('');
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** Shift this session's bucketq clock: bucketq._now() = now() + offset. */
export async function setClock(c: Queryable, offset: string): Promise<void> {
  await c.query(`select set_config('bucketq.clock_offset', $1, false)`, [offset]);
}

export interface Claimed {
  msg_id: number;
  bucket: number;
  key: string | null;
  key_seq: number | null;
  payload: unknown;
  headers: unknown;
  attempt: number;
  lease_token: string;
  epoch: number;
  leased_until: Date;
  sent_at: Date;
}

export async function claim(
  c: Queryable, group: string, consumer: string, max = 100,
  opts: { leaseTimeout?: string; maxPerKey?: number; buckets?: number[] } = {},
): Promise<Claimed[]> {
  const { rows } = await c.query(
    `select msg_id, bucket, key, key_seq, payload, headers, attempt, lease_token::text, epoch, leased_until, sent_at
       from bucketq.claim(group_name => $1, consumer_id => $2, max_messages => $3, lease_timeout => $4::interval, max_per_key => $5,
                          buckets => $6::int[])`,
    [group, consumer, max, opts.leaseTimeout ?? null, opts.maxPerKey ?? 1, opts.buckets ?? null],
  );
  return rows.map((r) => ({
    ...r,
    msg_id: Number(r.msg_id),
    key_seq: r.key_seq === null ? null : Number(r.key_seq),
    epoch: Number(r.epoch),
  }));
}

/**
 * A claim by consumer c1 in a transaction of its own, and whether it went the long way
 * (called _log_claim: test/sql-log.test.ts, test/sql-claim-buckets.test.ts). Needs
 * track_functions = 'all' in the session.
 */
export async function claimCounted(c: Queryable, group: string, max: number, buckets?: number[]): Promise<{ got: Claimed[]; longWay: boolean }> {
  // (The view holds the calls not yet flushed to the statistics, from earlier
  // transactions too, and none is flushed inside a transaction block: hence the difference.)
  const logClaims = async () => (await c.query<{ n: number }>(
    `select coalesce(sum(calls), 0)::int as n from pg_stat_xact_user_functions where funcname = '_log_claim'`)).rows[0]!.n;
  await c.query('begin');
  try {
    const before = await logClaims();
    const got = await claim(c, group, 'c1', max, { buckets });
    return { got, longWay: (await logClaims()) > before };
  } finally {
    await c.query('commit');
  }
}

export async function ack(c: Queryable, group: string, msgs: Pick<Claimed, 'msg_id' | 'lease_token'>[], strict = true): Promise<{ msg_id: number; status: string }[]> {
  const { rows } = await c.query(
    `select msg_id, status from bucketq.ack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[], strict => $4)`,
    [group, msgs.map((m) => m.msg_id), msgs.map((m) => m.lease_token), strict],
  );
  return rows.map((r) => ({ msg_id: Number(r.msg_id), status: r.status as string }));
}

export async function nack(
  c: Queryable,
  group: string,
  msgs: Pick<Claimed, 'msg_id' | 'lease_token'>[],
  opts: { error?: string; retryDelay?: string; strict?: boolean } = {},
): Promise<{ msg_id: number; status: string; retry_at: Date | null }[]> {
  const { rows } = await c.query(
    `select msg_id, status, retry_at from bucketq.nack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[],
                                                    errors => $4::text[], retry_delay => $5::interval, strict => $6)`,
    [group, msgs.map((m) => m.msg_id), msgs.map((m) => m.lease_token), msgs.map(() => opts.error ?? 'boom'), opts.retryDelay ?? null, opts.strict ?? true],
  );
  return rows.map((r) => ({ msg_id: Number(r.msg_id), status: r.status as string, retry_at: r.retry_at as Date | null }));
}

export async function send(c: Queryable, topic: string, payload: unknown, opts: { key?: string | null; headers?: unknown; idempotencyKey?: string; notBefore?: Date | string } = {}): Promise<number> {
  const { rows } = await c.query(
    `select bucketq.send(topic => $1, payload => $2::jsonb, key => $3, headers => $4::jsonb, idempotency_key => $5, not_before => $6::timestamptz) as id`,
    [topic, JSON.stringify(payload), opts.key ?? null, opts.headers === undefined ? null : JSON.stringify(opts.headers), opts.idempotencyKey ?? null, opts.notBefore ?? null],
  );
  return Number(rows[0].id);
}

export async function sendBatch(c: Queryable, topic: string, payloads: unknown[], opts: { keys?: (string | null)[]; idempotencyKeys?: (string | null)[]; headers?: unknown[] } = {}): Promise<number[]> {
  const { rows } = await c.query(
    `select id from bucketq.send_batch(topic => $1, payloads => $2::jsonb[], keys => $3::text[], headers => $4::jsonb[], idempotency_keys => $5::text[]) as id`,
    [
      topic,
      payloads.map((p) => JSON.stringify(p)),
      opts.keys ?? null,
      opts.headers ? opts.headers.map((h) => (h === null ? null : JSON.stringify(h))) : null,
      opts.idempotencyKeys ?? null,
    ],
  );
  return rows.map((r) => Number(r.id));
}

/** Topic plus a group (default start 'earliest') and, unless consumer is null, one joined consumer owning every bucket. */
export async function topicAndGroup(
  c: Queryable,
  ctx: Ctx,
  opts: { buckets?: number; group?: Record<string, string | number>; consumer?: string | null; topic?: Record<string, string | number> } = {},
): Promise<{ topic: string; group: string; consumer: string }> {
  const topic = ctx.unique('t');
  const group = ctx.unique('g');
  const consumer = opts.consumer === undefined ? 'c1' : opts.consumer;
  const topicArgs = { buckets: opts.buckets ?? 16, ...opts.topic };
  await c.query(`select bucketq.create_topic(topic => $1, ${namedArgs(topicArgs, 2)})`, [topic, ...Object.values(topicArgs)]);
  const groupArgs = { start_at: 'earliest', ...opts.group };
  await c.query(`select bucketq.create_group(group_name => $1, topic => $2, ${namedArgs(groupArgs, 3)})`, [group, topic, ...Object.values(groupArgs)]);
  if (consumer !== null) await c.query(`select * from bucketq.join($1, $2)`, [group, consumer]);
  return { topic, group, consumer: consumer ?? '' };
}

function namedArgs(args: Record<string, string | number>, first: number): string {
  const casts: Record<string, string> = {
    buckets: 'int', retention: 'interval', max_payload_bytes: 'int', partition_interval: 'interval',
    start_at: 'text', max_attempts: 'int', on_exhausted: 'text', backoff_base: 'interval', backoff_max: 'interval',
    lease_timeout: 'interval', session_timeout: 'interval',
  };
  return Object.keys(args)
    .map((k, i) => `${k} => $${first + i}::${casts[k] ?? 'text'}`)
    .join(', ');
}

/**
 * Wait (by polling pg_stat_activity, not by time) until the backend is blocked on a lock.
 * finished: stop waiting, without error, once the statement expected to block has ended
 * (for a test whose point is that, without the fix, it does not wait).
 */
export async function waitUntilBlocked(observer: Queryable, pid: number, finished: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (finished()) return;
    const { rows } = await observer.query(`select wait_event_type from pg_stat_activity where pid = $1`, [pid]);
    if (rows[0]?.wait_event_type === 'Lock') return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`backend ${pid} never blocked on a lock`);
}

export function pidOf(c: pg.Client): number {
  return (c as unknown as { processID: number }).processID;
}

/** Row counts of every bucketq table, plus the sum of epochs and key counters: "did anything change?" */
export async function stateFingerprint(c: Queryable): Promise<Record<string, string>> {
  const { rows } = await c.query(`
    select 'topic' as t, count(*)::text as n from bucketq.topic
    union all select 'topic_key', count(*)::text || '/' || coalesce(sum((select max(c.last_seq) from bucketq.key_counter c where c.key_id = k.key_id)), 0)::text
                    from bucketq.topic_key k
    union all select 'message', count(*)::text from bucketq.message
    union all select 'consumer_group', count(*)::text from bucketq.consumer_group
    union all select 'inbox', count(*)::text || '/' || coalesce(sum(state), 0)::text || '/' || coalesce(sum(attempts), 0)::text
                    || '/' || coalesce(string_agg(lease_token::text, ',' order by msg_id), '') from bucketq.inbox
    union all select 'consumer', count(*)::text from bucketq.consumer
    union all select 'bucket_owner', count(*)::text || '/' || coalesce(sum(epoch), 0)::text || '/' || count(owner)::text from bucketq.bucket_owner
    union all select 'delivery', count(*)::text from bucketq.delivery
    union all select 'progress', count(*)::text from bucketq.progress
    union all select 'dead_letter', count(*)::text || '/' || count(replayed_at)::text from bucketq.dead_letter
    union all select 'idempotency', count(*)::text from bucketq.idempotency
    union all select 'log_partition', count(*)::text from bucketq.log_partition
    union all select 'tables', count(*)::text from pg_class where relnamespace = 'bucketq'::regnamespace`);
  return Object.fromEntries(rows.map((r) => [r.t, r.n]));
}

/** Run fn inside BEGIN ... COMMIT (ROLLBACK on error, rethrown). */
export const inTx = <T>(c: pg.Client, fn: () => Promise<T>): Promise<T> => inTransaction(c, 'begin', fn);

export const tick = () => new Promise<void>((r) => setTimeout(r, 1));

/**
 * Make the sessions' table statistics visible to the observer now: each flushes its
 * pending counters (Postgres 15 and newer), and the observer drops its cached snapshot
 * of pg_stat_*.
 */
export async function flushStats(observer: pg.Client, sessions: pg.Client[]): Promise<void> {
  for (const s of sessions) {
    await s.query('select pg_stat_force_next_flush()');
    await s.query('select 1');
  }
  await observer.query('select pg_stat_clear_snapshot()');
}

/**
 * Put a group's unfinished messages into its inbox, where retries, runs and dead letters
 * live (the normal flow reads the log): a rewind to the topic's first message. For tests
 * of the inbox's own machinery.
 */
export async function toInbox(c: Queryable, group: string): Promise<void> {
  await c.query(
    `select bucketq.rewind($1, (select min(m.sent_at) from bucketq.message m join bucketq.consumer_group g using (topic_id) where g.name = $1))`,
    [group],
  );
}
