// Bare baselines on the same server: the ceiling for ingest and drain.
//  - insert: a multi-row INSERT (unnest of arrays) of rows as wide as a bucketq.message row
//  - drain: DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING, in batches,
//    from several connections at once, until the table is empty
import pg from 'pg';
import { chunks, keyedMessages, now, sampled, type RunContext, type RunResult } from './lib/common.js';
import { freshDatabase } from './lib/db.js';

const INSERT_SQL = `insert into bare_log (topic_id, bucket, key, key_seq, payload)
  select 1, (hashtextextended(k, 0) & 15)::int, k, s, p from unnest($1::text[], $2::bigint[], $3::jsonb[]) as u(k, s, p)`;

// One message per statement, as a producer that sends inside its own transaction writes.
const SINGLE_INSERT_SQL = `insert into bare_log (topic_id, bucket, key, key_seq, payload)
  values (1, (hashtextextended($1, 0) & 15)::int, $1, $2, $3)`;

// As an unkeyed send_batch writes its messages: an id and an order from sequences, the
// bucket from the id, the sending transaction's id, one send time for the batch.
const LOG_INSERT_SQL = `insert into bare_message (id, topic_id, sent_at, bucket, payload, xid, ord)
  select i, 1, now(), (i % 16)::int, p, pg_current_xact_id(), nextval('bare_message_ord_seq')
    from (select nextval('bare_message_id_seq') as i, u.p from unnest($1::jsonb[]) with ordinality as u(p, o) order by u.o) x`;

export const BARE_OPTIONS = {
  logInsert: 'insert into bare_message (...) select ... from unnest($payloads): a table shaped as a log partition (bucketq.message\'s columns, its three indexes), ids and orders from sequences, the transaction id, unkeyed; one statement per batch, autocommit, one connection',
  insert: 'insert into bare_log (...) select ... from unnest($keys, $seqs, $payloads): one statement per batch, autocommit, one connection; table with an identity primary key',
  singleInsert: 'insert into bare_log (...) values ($key, $seq, $payload): one statement per message, autocommit, one connection; table with an identity primary key',
  drain: 'delete from bare_queue where id in (select id from bare_queue order by id limit 250 for update skip locked) returning payload; 4 connections',
};

/**
 * Timed multi-row INSERTs on one connection in a fresh bare database: one statement per
 * batch, with the parameters `params` makes of the batch's messages. `table` must then
 * hold every message (a check that the statement wrote what it was given).
 */
async function timedInserts(
  ctx: RunContext, messages: number, batch: number, table: string, sql: string,
  params: (c: ReturnType<typeof keyedMessages>) => unknown[], baseline: string,
): Promise<RunResult> {
  const db = await freshDatabase(ctx.adminUrl, 'bare');
  const client = new pg.Client({ connectionString: db.url });
  client.on('error', () => {}); // the drop at the end terminates a connection still closing
  await client.connect();
  try {
    const msgs = keyedMessages(messages, ctx.sizes.keys);
    const { value: ms, waits } = await sampled(ctx, db, async () => {
      const t0 = now();
      let sent = 0;
      for (const c of chunks(msgs, batch)) {
        await client.query(sql, params(c));
        sent += c.length;
        ctx.progress(`${sent}/${messages}`);
      }
      return now() - t0;
    });
    const { rows } = await client.query<{ n: string }>(`select count(*) as n from ${table}`);
    if (Number(rows[0]!.n) !== messages) throw new Error(`bare insert into ${table} wrote ${rows[0]!.n} of ${messages} rows`);
    return { metrics: { msgsPerSec: (messages / ms) * 1000, seconds: ms / 1000 }, waits, extra: { options: { baseline, batch } } };
  } finally {
    await client.end();
    await db.drop();
  }
}

export function bareInsert(ctx: RunContext, messages: number, batch: number): Promise<RunResult> {
  return timedInserts(ctx, messages, batch, 'bare_log', INSERT_SQL,
    (c) => [c.map((m) => m.key), c.map((m) => m.payload.s), c.map((m) => JSON.stringify(m.payload))], BARE_OPTIONS.insert);
}

/** One single-row INSERT per message (ingest-single). */
export function bareSingleInsert(ctx: RunContext, messages: number): Promise<RunResult> {
  return timedInserts(ctx, messages, 1, 'bare_log', SINGLE_INSERT_SQL,
    (c) => [c[0]!.key, c[0]!.payload.s, JSON.stringify(c[0]!.payload)], BARE_OPTIONS.singleInsert);
}

/** A multi-row INSERT into a table shaped as a partition of bucketq.message (ingest-floor). */
export function bareLogInsert(ctx: RunContext, messages: number, batch: number): Promise<RunResult> {
  return timedInserts(ctx, messages, batch, 'bare_message', LOG_INSERT_SQL,
    (c) => [c.map((m) => JSON.stringify(m.payload))], BARE_OPTIONS.logInsert);
}

export async function bareDrain(ctx: RunContext, messages: number, connections = 4, batch = 250): Promise<RunResult> {
  const db = await freshDatabase(ctx.adminUrl, 'bare');
  const pool = new pg.Pool({ connectionString: db.url, max: connections + 1 });
  // A client still closing when the database is dropped gets 57P01: without a listener
  // that error killed the whole bench run.
  pool.on('error', () => {});
  try {
    const msgs = keyedMessages(messages, ctx.sizes.keys);
    for (const c of chunks(msgs, 2000)) {
      await pool.query('insert into bare_queue (key, payload) select * from unnest($1::text[], $2::jsonb[])', [
        c.map((m) => m.key),
        c.map((m) => JSON.stringify(m.payload)),
      ]);
    }
    let done = 0;
    const { value: ms, waits } = await sampled(ctx, db, async () => {
      const t0 = now();
      await Promise.all(
        Array.from({ length: connections }, async () => {
          for (;;) {
            const r = await pool.query(
              `delete from bare_queue where id in (select id from bare_queue order by id limit $1 for update skip locked) returning payload`,
              [batch],
            );
            if (r.rowCount === 0) break;
            done += r.rowCount ?? 0;
            ctx.progress(`${done}/${messages}`);
          }
        }),
      );
      return now() - t0;
    });
    if (done !== messages) throw new Error(`bare drain removed ${done} of ${messages} rows`);
    return { metrics: { msgsPerSec: (messages / ms) * 1000, seconds: ms / 1000 }, waits, extra: { options: { baseline: BARE_OPTIONS.drain } } };
  } finally {
    await pool.end();
    await db.drop();
  }
}
