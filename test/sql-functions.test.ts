// The hot path calls no SQL-language function that Postgres runs as a call. Postgres 14
// to 17 plan such a function's body again at every call, and without its arguments'
// values: _log_open, a SQL function over the log, was planned over every partition of
// every topic at each claim (1.5 ms of a 1.7 ms claim on Debian's Postgres 15; 0.05 ms
// on 18, which caches those plans). A SQL function that Postgres inlines costs nothing
// of the kind and is not counted as a call; the rest are PL/pgSQL, whose plans are
// cached per session on every version.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, nack, send, sendBatch, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

/** Runs fn in a transaction with function call tracking on; the SQL-language functions it called. */
async function sqlCalls(c: pg.ClientBase, fn: () => Promise<unknown>): Promise<string[]> {
  await c.query('begin');
  try {
    await c.query(`set local track_functions = 'all'`);
    await fn();
    const { rows } = await c.query<{ name: string }>(
      `select p.proname as name from pg_stat_xact_user_functions f
         join pg_proc p on p.oid = f.funcid
         join pg_language l on l.oid = p.prolang
        where l.lanname = 'sql' and p.pronamespace = 'bucketq'::regnamespace and f.calls > 0
          -- (an immutable one of constants, _lock_ns, is called once, when a plan is made, to fold it)
          and p.provolatile <> 'i'
        order by 1`);
    await c.query('commit');
    return rows.map((r) => r.name);
  } catch (err) {
    await c.query('rollback');
    throw err;
  }
}

describe('the hot path', () => {
  it('send, claim, ack, nack, claim_locked and heartbeat call no SQL function that is not inlined', async () => {
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    const calls = new Set<string>();
    const record = async (fn: () => Promise<unknown>) => {
      for (const name of await sqlCalls(c, fn)) calls.add(name);
    };

    // The topic's first partitions exist already (create_topic): no send here creates one.
    await record(() => send(c, topic, { n: 0 }, { key: 'a', idempotencyKey: 'i0' }));
    await record(() => sendBatch(c, topic, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }], { keys: ['a', 'a', 'b', null] }));

    // A producer's transaction open across the claims: their snapshots list it.
    const producer = await ctx.session();
    await producer.query('begin');
    await send(producer, topic, { n: 5 }, { key: 'b' });

    let first: Awaited<ReturnType<typeof claim>> = [];
    await record(async () => (first = await claim(c, group, 'c1', 10, { maxPerKey: 1 })));
    expect(first.length).toBeGreaterThan(1);
    const a = first.find((m) => m.key === 'a')!;
    const rest = first.filter((m) => m !== a);
    // A failed head: its key's next message waits in the inbox behind the retry.
    await record(() => nack(c, group, [a], { retryDelay: '0 seconds' }));
    await record(() => ack(c, group, rest));
    await producer.query('commit');

    let again: Awaited<ReturnType<typeof claim>> = [];
    await record(async () => (again = await claim(c, group, 'c1', 10, { maxPerKey: 10 })));
    expect(again.map((m) => m.attempt)).toContain(2);
    await record(() => ack(c, group, again));
    await record(() => c.query(`select bucketq.heartbeat($1, 'c1')`, [group]));

    // A locked claim in its own transaction (the worker's batch mode), then its ack.
    await send(c, topic, { n: 6 }, { key: 'a' });
    await record(async () => {
      const { rows } = await c.query<{ msg_id: string }>(`select msg_id from bucketq.claim_locked($1, 'c1', 10, null, 10)`, [group]);
      expect(rows.length).toBeGreaterThan(0);
      await c.query(`select * from bucketq.ack($1, $2::bigint[], null, 'c1')`, [group, rows.map((r) => r.msg_id)]);
    });
    // The key's waiting messages come one ack at a time after a retry.
    for (let i = 0; i < 10; i++) {
      let batch: Awaited<ReturnType<typeof claim>> = [];
      await record(async () => (batch = await claim(c, group, 'c1', 10, { maxPerKey: 10 })));
      if (batch.length === 0) break;
      await record(() => ack(c, group, batch));
    }

    const { rows: left } = await c.query<{ n: number }>(
      `select count(*)::int as n, string_agg(state || coalesce(key, '-'), ',') as s from bucketq.message_states where topic = $1 and group_name = $2 and state <> 'done'`, [topic, group]);
    expect(left[0], JSON.stringify(left)).toMatchObject({ n: 0 });
    expect([...calls].sort()).toEqual([]);
  });
});
