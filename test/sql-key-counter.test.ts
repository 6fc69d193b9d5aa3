// The per-key counter (migrations 25 and 31): topic_key rows are never updated, senders
// lock them, and key_seq ranges are appended to a part of bucketq.key_counter that
// maintain() rotates (fold into key_counter_base, TRUNCATE) instead of deleting rows. So
// key_seq stays gapless and in commit order per key while keyed sends leave no dead row
// version behind, even under a pinned xmin horizon; a REPEATABLE READ sender whose
// snapshot missed a newer send of its key, or a rotation, gets 40001, never a duplicate
// key_seq.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { flushStats, pgError, pidOf, send, sendBatch, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

async function keySeqs(c: pg.Client, topic: string): Promise<Record<string, number[]>> {
  const { rows } = await c.query<{ key: string; seqs: number[] }>(
    `select m.key, array_agg(m.key_seq::int order by m.key_seq) as seqs
       from bucketq.message m join bucketq.topic t using (topic_id)
      where t.name = $1 and m.key is not null group by m.key order by m.key`,
    [topic],
  );
  return Object.fromEntries(rows.map((r) => [r.key, r.seqs]));
}

/** Per key, its counter rows of every part, [first_seq, last_seq] (a base row is [1, last]), by first_seq. */
async function counterRows(c: pg.Client, topic: string): Promise<Record<string, [number, number][]>> {
  const { rows } = await c.query<{ key: string; ranges: [number, number][] }>(
    `select k.key, array_agg(array[x.first_seq::int, x.last_seq::int] order by x.first_seq, x.part) as ranges
       from bucketq.key_counter x join bucketq.topic_key k using (key_id) join bucketq.topic t using (topic_id)
      where t.name = $1 group by k.key order by k.key`,
    [topic],
  );
  return Object.fromEntries(rows.map((r) => [r.key, r.ranges]));
}

/** Per key, its counter rows by part: { key: { '0': [[first, last]...], base: [[1, last]] } }. */
async function counterParts(c: pg.Client, topic: string): Promise<Record<string, Record<string, [number, number][]>>> {
  const { rows } = await c.query<{ key: string; part: number; ranges: [number, number][] }>(
    `select k.key, x.part, array_agg(array[x.first_seq::int, x.last_seq::int] order by x.first_seq) as ranges
       from bucketq.key_counter x join bucketq.topic_key k using (key_id) join bucketq.topic t using (topic_id)
      where t.name = $1 group by k.key, x.part order by k.key, x.part`,
    [topic],
  );
  const out: Record<string, Record<string, [number, number][]>> = {};
  for (const r of rows) (out[r.key] ??= {})[r.part === 2 ? 'base' : String(r.part)] = r.ranges;
  return out;
}

/** Statistics of key_counter's parts (pg_stat_user_tables), by part name. */
async function partStats(c: pg.Client): Promise<Record<string, { ins: number; upd: number; del: number; dead: number; seq: number; idx: number }>> {
  await c.query('select pg_stat_clear_snapshot()');
  const { rows } = await c.query(
    `select relname as rel, n_tup_ins::int as ins, n_tup_upd::int as upd, n_tup_del::int as del, n_dead_tup::int as dead,
            coalesce(seq_scan, 0)::int as seq, coalesce(idx_scan, 0)::int as idx
       from pg_stat_user_tables where schemaname = 'bucketq' and relname in ('key_counter_0', 'key_counter_1', 'key_counter_base')`,
  );
  return Object.fromEntries(rows.map((r) => [r.rel, r]));
}

async function maintainCounters(c: pg.Client): Promise<{ action: string; detail: string }[]> {
  const { rows } = await c.query(`select action, detail from bucketq.maintain() where action like '%key_counters'`);
  return rows;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('key_seq in commit order, gapless', () => {
  it('transactions held open on shared keys and committed out of order: each key numbers its senders in commit order', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    const [A, B, C, D, E] = await Promise.all(Array.from({ length: 5 }, () => ctx.session()));
    for (const s of [A, B, C, D, E]) await s!.query('begin');
    await send(A!, topic, { by: 'A' }, { key: 'a' });
    await send(B!, topic, { by: 'B' }, { key: 'b' });
    await send(E!, topic, { by: 'E' }, { key: 'c' });
    // C needs a (held by A) and then b; D needs b (held by B).
    let cDone = false;
    const cSend = sendBatch(C!, topic, [{ by: 'C' }, { by: 'C' }, { by: 'C' }], { keys: ['b', 'a', 'c'] }).finally(() => (cDone = true));
    await waitUntilBlocked(c, pidOf(C!));
    const dSend = sendBatch(D!, topic, [{ by: 'D' }, { by: 'D' }], { keys: ['b', 'b'] });
    await waitUntilBlocked(c, pidOf(D!));

    await B!.query('commit'); // D gets b (C is still waiting for a)
    await dSend;
    await D!.query('commit');
    expect(cDone).toBe(false);
    await A!.query('commit'); // C gets a, b, then waits for c (E)
    await waitUntilBlocked(c, pidOf(C!));
    expect(cDone).toBe(false);
    await E!.query('commit');
    await cSend;
    await C!.query('commit');

    const { rows } = await c.query<{ key: string; by: string; key_seq: number }>(
      `select m.key, m.payload->>'by' as by, m.key_seq::int from bucketq.message m join bucketq.topic t using (topic_id)
        where t.name = $1 order by m.key, m.key_seq`,
      [topic],
    );
    // Commit order: B, D, A, E, C.
    expect(rows.map((r) => `${r.key}${r.key_seq}:${r.by}`)).toEqual(['a1:A', 'a2:C', 'b1:B', 'b2:D', 'b3:D', 'b4:C', 'c1:E', 'c2:C']);
    expect(await counterRows(c, topic)).toEqual({ a: [[1, 1], [2, 2]], b: [[1, 1], [2, 3], [4, 4]], c: [[1, 1], [2, 2]] });
  });

  it('a batch with a new key after a held one, against a transaction sending both keys in key order: no deadlock', async () => {
    // Key order within and across transactions is the caller's promise; bucketq must keep
    // it too. A send that created its new keys before locking its existing ones broke it:
    // A created "c", then waited for "b" (held by B); B, sending "c" next, waited for A's
    // new row: a deadlock (the one CI met once in sql-order's 200-key run on Postgres 15).
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await send(c, topic, { by: 'setup' }, { key: 'b' });
    const [A, B] = [await ctx.session(), await ctx.session()];
    await B.query('begin');
    await send(B, topic, { by: 'B' }, { key: 'b' });
    const aSend = sendBatch(A, topic, [{ by: 'A' }, { by: 'A' }], { keys: ['b', 'c'] });
    await waitUntilBlocked(c, pidOf(A));
    const bSend = send(B, topic, { by: 'B' }, { key: 'c' });
    // B must not wait on A: A holds nothing B needs until it has "b".
    await bSend;
    await B.query('commit');
    await aSend;
    expect(await keySeqs(c, topic)).toEqual({ b: [1, 2, 3], c: [1, 2] });
    const { rows } = await c.query<{ by: string; key: string; key_seq: number }>(
      `select m.payload->>'by' as by, m.key, m.key_seq::int from bucketq.message m join bucketq.topic t using (topic_id) where t.name = $1 order by m.key, m.key_seq`,
      [topic],
    );
    expect(rows.map((r) => `${r.key}${r.key_seq}:${r.by}`)).toEqual(['b1:setup', 'b2:B', 'b3:A', 'c1:B', 'c2:A']);
  });

  it('6 producer sessions, random batches over 4 shared keys, random delays before commit or rollback: gapless, and a key\'s senders commit in key_seq order', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    const producers = await Promise.all(Array.from({ length: 6 }, () => ctx.session()));
    const keys = ['k1', 'k2', 'k3', 'k4'];
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // Per committed transaction: its xid, a snapshot taken after its send returned (so
    // after the commit of every earlier sender of its keys), its message ids.
    const committed: { xid: string; snap: string; ids: number[] }[] = [];
    let rolledBack = 0;
    for (let round = 0; round < 25; round++) {
      await Promise.all(
        producers.map(async (p) => {
          const n = 1 + Math.floor(rand() * 4);
          const batch = Array.from({ length: n }, () => keys[Math.floor(rand() * keys.length)]!);
          const rollback = rand() < 0.15;
          const delay = Math.floor(rand() * 15);
          await sleep(Math.floor(rand() * 5));
          await p.query('begin');
          const ids = await sendBatch(p, topic, batch.map((k) => ({ k })), { keys: batch });
          const { rows } = await p.query<{ xid: string; snap: string }>('select pg_current_xact_id()::text as xid, pg_current_snapshot()::text as snap');
          await sleep(delay);
          if (rollback) {
            await p.query('rollback');
            rolledBack++;
          } else {
            await p.query('commit');
            committed.push({ xid: rows[0]!.xid, snap: rows[0]!.snap, ids });
          }
        }),
      );
    }
    expect(rolledBack).toBeGreaterThan(0);

    const { rows: msgs } = await c.query<{ id: number; key: string; key_seq: number; xid: string }>(
      `select m.id::int, m.key, m.key_seq::int, m.xid::text from bucketq.message m join bucketq.topic t using (topic_id) where t.name = $1`,
      [topic],
    );
    expect(msgs.length).toBe(committed.reduce((s, t) => s + t.ids.length, 0));
    const seqs = await keySeqs(c, topic);
    for (const [key, s] of Object.entries(seqs)) expect(s, key).toEqual(range(s.length));
    const counters = await counterRows(c, topic);
    for (const [key, s] of Object.entries(seqs)) expect(counters[key]!.at(-1)![1], key).toBe(s.length);

    // For each key, consecutive senders X then Y (in key_seq order): X had committed when
    // Y's send returned (X's xid is visible in Y's snapshot), so X committed first.
    const byXid = new Map(committed.map((t) => [t.xid, t]));
    const pairs: [string, string][] = [];
    for (const key of keys) {
      const order = msgs.filter((m) => m.key === key).sort((a, b) => a.key_seq - b.key_seq).map((m) => m.xid);
      for (let i = 1; i < order.length; i++) if (order[i] !== order[i - 1]) pairs.push([order[i - 1]!, order[i]!]);
      // a transaction's messages of a key are contiguous
      expect(new Set(order).size, key).toBe(order.filter((x, i) => i === 0 || order[i - 1] !== x).length);
    }
    expect(pairs.length).toBeGreaterThan(50);
    const { rows: checked } = await c.query<{ ok: boolean }>(
      `select bool_and(pg_visible_in_snapshot(x::xid8, s::pg_snapshot)) as ok from unnest($1::text[], $2::text[]) as u(x, s)`,
      [pairs.map(([x]) => x), pairs.map(([, y]) => byXid.get(y)!.snap)],
    );
    expect(checked[0]!.ok).toBe(true);
  });
});

describe('no dead tuples from keyed sends', () => {
  it('2,000 keyed sends over 4 keys and 3 rotations under a pinned xmin horizon: topic_key sees no update or delete, key_counter no delete and one base row version per key and fold, no dead row in its parts', async () => {
    const c = await ctx.session();
    const pin = await ctx.session();
    const senders = await Promise.all(Array.from({ length: 2 }, () => ctx.session()));
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    // Create the keys first (their topic_key rows are inserted once).
    for (const k of ['a', 'b', 'c', 'd']) await send(c, topic, { first: k }, { key: k });

    // key_counter summed over its parts; key_counter_0 and _1 apart for their dead rows.
    const stats = async () => {
      await c.query('select pg_stat_clear_snapshot()');
      const { rows } = await c.query<{ rel: string; ins: number; upd: number; hot: number; del: number; dead: number }>(
        `select case when relname like 'key_counter%' then 'key_counter' else relname end as rel,
                sum(n_tup_ins)::int as ins, sum(n_tup_upd)::int as upd, sum(n_tup_hot_upd)::int as hot, sum(n_tup_del)::int as del,
                sum(n_dead_tup)::int as dead, sum(n_dead_tup) filter (where relname in ('key_counter_0', 'key_counter_1'))::int as parts_dead
           from pg_stat_user_tables where schemaname = 'bucketq' and relname in ('topic_key', 'key_counter_0', 'key_counter_1', 'key_counter_base')
          group by 1`,
      );
      return Object.fromEntries(rows.map((r) => [r.rel, r as typeof r & { parts_dead: number | null }]));
    };
    await flushStats(c, [c]);
    const before = await stats();

    // The pin: a REPEATABLE READ transaction that has read something, kept open.
    await pin.query('begin isolation level repeatable read');
    await pin.query('select count(*) from bucketq.topic');
    const { rows: pinned } = await c.query('select backend_xmin is not null as pinned from pg_stat_activity where pid = $1', [pidOf(pin)]);
    expect(pinned[0].pinned).toBe(true);

    // Four rounds of 500 sends, a rotation after each of the first three: the first
    // points the topics at part 1, the next two each fold and empty a part.
    const keys = ['a', 'b', 'c', 'd'];
    const rotations: string[] = [];
    for (let round = 0; round < 4; round++) {
      await Promise.all(
        senders.map(async (s, i) => {
          for (let n = round * 250; n < (round + 1) * 250; n++) await send(s, topic, { n }, { key: keys[(n + i) % keys.length]! });
        }),
      );
      if (round < 3) rotations.push(...(await maintainCounters(c)).map((r) => r.action));
    }
    expect(rotations).toEqual(['rotated_key_counters', 'rotated_key_counters', 'rotated_key_counters']);
    await flushStats(c, [c, ...senders]);
    let after = await stats();
    for (let i = 0; i < 200 && after.key_counter!.ins - before.key_counter!.ins < 2000; i++) {
      await new Promise((r) => setTimeout(r, 25));
      after = await stats();
    }
    // (at least: statistics of earlier tests' sessions may arrive meanwhile, inserts only)
    expect(after.key_counter!.ins - before.key_counter!.ins).toBeGreaterThanOrEqual(2000);
    expect({
      topic_key: { upd: after.topic_key!.upd - before.topic_key!.upd, hot: after.topic_key!.hot - before.topic_key!.hot,
                   del: after.topic_key!.del - before.topic_key!.del },
      key_counter: { del: after.key_counter!.del - before.key_counter!.del, partsDead: after.key_counter!.parts_dead },
    }).toEqual({ topic_key: { upd: 0, hot: 0, del: 0 }, key_counter: { del: 0, partsDead: 0 } });
    // The 4 keys were sent to in every round, so no fold wrote their base rows (each
    // kept newer rows in the part sends appended to). The table's counts: at most once
    // per key and fold (2 folds), whatever the other
    // tests' keys did (they were folded by the first fold: inserts).
    expect(after.key_counter!.upd - before.key_counter!.upd).toBeLessThanOrEqual(8);
    expect(after.key_counter!.dead).toBeLessThanOrEqual(8);
    expect(after.topic_key!.dead).toBeLessThanOrEqual(before.topic_key!.dead);
    expect(Object.values(await counterParts(c, topic)).filter((parts) => parts.base)).toEqual([]);
    await pin.query('rollback');

    expect(await keySeqs(c, topic)).toEqual({ a: range(501), b: range(501), c: range(501), d: range(501) });
  });
});

describe('a send reads its keys by index', () => {
  it('a topic with 3,000 keys: single and batched keyed sends never scan topic_key or key_counter sequentially', async () => {
    const c = await ctx.session();
    const sender = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    const many = Array.from({ length: 3000 }, (_, i) => `key-${i}`);
    await sendBatch(c, topic, many.map((k) => ({ k })), { keys: many });
    // As autovacuum would: the planner then knows that all these keys are one topic's.
    await c.query('analyze bucketq.topic_key, bucketq.key_counter');

    const scans = async () => {
      await flushStats(c, [c, sender]);
      const { rows } = await c.query<{ rel: string; seq: number; idx: number }>(
        `select case when relname like 'key_counter%' then 'key_counter' else relname end as rel,
                sum(seq_scan)::int as seq, sum(idx_scan)::int as idx
           from pg_stat_user_tables where schemaname = 'bucketq' and relname in ('topic_key', 'key_counter_0', 'key_counter_1', 'key_counter_base')
          group by 1`,
      );
      return Object.fromEntries(rows.map((r) => [r.rel, r]));
    };
    const before = await scans();
    // A generic plan (send_batch forces them) joined the keys to topic_key by name with
    // a hash join over all of the topic's keys: every send read every key.
    for (let i = 0; i < 20; i++) await send(sender, topic, { i }, { key: many[i * 7]! });
    await sendBatch(sender, topic, Array.from({ length: 50 }, (_, i) => ({ i })), { keys: many.slice(100, 150) });
    const after = await scans();
    expect({
      topic_key: after.topic_key!.seq - before.topic_key!.seq,
      key_counter: after.key_counter!.seq - before.key_counter!.seq,
    }).toEqual({ topic_key: 0, key_counter: 0 });
    expect(after.topic_key!.idx - before.topic_key!.idx).toBeGreaterThanOrEqual(21);
    const seqs = await keySeqs(c, topic);
    expect(seqs['key-7']).toEqual([1, 2]);
    expect(seqs['key-120']).toEqual([1, 2]);
  });
});

describe('REPEATABLE READ senders', () => {
  async function rr(s: pg.Client) {
    await s.query('begin isolation level repeatable read');
    await s.query('select count(*) from bucketq.topic'); // takes the snapshot
  }

  it('two RR sessions send to one key concurrently: the one whose snapshot predates the other\'s commit gets 40001 naming topic and key; its retry continues the sequence', async () => {
    const c = await ctx.session();
    const [r1, r2] = await Promise.all([ctx.session(), ctx.session()]);
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await send(c, topic, { n: 1 }, { key: 'k' });

    await rr(r1!);
    await rr(r2!);
    await send(r2!, topic, { n: 2 }, { key: 'k' });
    let failed = false;
    const late = pgError(send(r1!, topic, { n: 'late' }, { key: 'k' })).finally(() => (failed = true));
    await waitUntilBlocked(c, pidOf(r1!), () => failed); // waits for r2's lock on the key
    await r2!.query('commit');
    const err = await late;
    expect(err.code).toBe('40001');
    expect(err.message).toContain(`key 'k' of topic ${topic}`);
    expect((err as { hint?: string }).hint).toMatch(/Retry the transaction/);
    await r1!.query('rollback');

    await rr(r1!);
    await send(r1!, topic, { n: 3 }, { key: 'k' });
    await r1!.query('commit');
    expect(await keySeqs(c, topic)).toEqual({ k: [1, 2, 3] });
    expect(await counterRows(c, topic)).toEqual({ k: [[1, 1], [2, 2], [3, 3]] });
  });

  it('a send committed after the RR snapshot, not concurrent: 40001 too (also when the key is new, and in a batch naming the stale key)', async () => {
    const c = await ctx.session();
    const r = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await send(c, topic, { n: 1 }, { key: 'old' });

    await rr(r);
    await send(c, topic, { n: 2 }, { key: 'old' });
    const err = await pgError(sendBatch(r, topic, [{}, {}, {}], { keys: ['fine', 'old', 'zzz'] }));
    expect([err.code, err.message]).toEqual(['40001', expect.stringContaining(`key 'old' of topic ${topic}`)]);
    await r.query('rollback');

    await rr(r);
    await send(c, topic, { n: 1 }, { key: 'new' });
    const err2 = await pgError(send(r, topic, {}, { key: 'new' }));
    expect([err2.code, err2.message]).toEqual(['40001', expect.stringContaining(`key 'new' of topic ${topic}`)]);
    await r.query('rollback');

    // An RR sender with a fresh snapshot sends as usual.
    await rr(r);
    await sendBatch(r, topic, [{}, {}, {}], { keys: ['old', 'new', 'old'] });
    await r.query('commit');
    expect(await keySeqs(c, topic)).toEqual({ new: [1, 2], old: [1, 2, 3, 4] });
  });

  it('a snapshot taken before a rotation emptied the part it would read: 40001 naming the topic, no duplicate key_seq; the retry continues the sequence', async () => {
    const c = await ctx.session();
    const r = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await send(c, topic, { n: 1 }, { key: 'k' });
    await rr(r);
    await send(c, topic, { n: 2 }, { key: 'k' });
    // Two rotations: the first retires the part holding k's rows, the second folds it
    // into the base and empties it (r's snapshot would see it empty and the base old).
    await maintainCounters(c);
    await maintainCounters(c);
    expect(await counterParts(c, topic)).toEqual({ k: { base: [[1, 2]] } });

    const err = await pgError(send(r, topic, { n: 'stale' }, { key: 'k' }));
    expect([err.code, err.message]).toEqual(['40001', expect.stringContaining(`could not serialize access to topic ${topic}`)]);
    expect((err as { hint?: string }).hint).toMatch(/Retry the transaction/);
    await r.query('rollback');

    await rr(r);
    await send(r, topic, { n: 3 }, { key: 'k' });
    await r.query('commit');
    expect(await keySeqs(c, topic)).toEqual({ k: [1, 2, 3] });
    expect(await counterRows(c, topic)).toEqual({ k: [[1, 2], [3, 3]] });
  });
});

async function rotationOf(c: pg.Client, topic: string): Promise<number> {
  const { rows } = await c.query('select key_rotation from bucketq.topic where name = $1', [topic]);
  return rows[0].key_rotation;
}

describe('maintain rotates the counter parts', () => {
  it('each run folds the retired part into key_counter_base, empties it and points every topic at it; an idle database is left alone; sends continue each sequence', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    const { topic: other } = await topicAndGroup(c, ctx, { consumer: null });
    // Whatever earlier tests left: two runs fold both parts; a third finds nothing.
    await maintainCounters(c);
    await maintainCounters(c);
    const { rows: topicsBefore } = await c.query('select topic_id, xmin::text from bucketq.topic order by topic_id');
    expect(await maintainCounters(c)).toEqual([]);
    const { rows: topicsAfter } = await c.query('select topic_id, xmin::text from bucketq.topic order by topic_id');
    expect(topicsAfter).toEqual(topicsBefore);

    const rot = await rotationOf(c, topic);
    expect(await rotationOf(c, other)).toBe(rot);
    const [P, Q] = [String(rot % 2), String((rot + 1) % 2)];
    for (let i = 0; i < 5; i++) await sendBatch(c, topic, [{}, {}], { keys: ['a', i % 2 ? 'a' : 'b'] });
    await send(c, topic, {}, { key: 'single' });
    for (let i = 0; i < 3; i++) await send(c, other, {}, { key: 'a' });
    expect(await counterParts(c, topic)).toEqual({
      a: { [P]: [[1, 1], [2, 3], [4, 4], [5, 6], [7, 7]] },
      b: { [P]: [[1, 1], [2, 2], [3, 3]] },
      single: { [P]: [[1, 1]] },
    });

    // The retired part is empty: the first run only points the topics at it.
    expect(await maintainCounters(c)).toEqual([{ action: 'rotated_key_counters', detail: `sends append to bucketq.key_counter_${Q} now` }]);
    expect([await rotationOf(c, topic), await rotationOf(c, other)]).toEqual([rot + 1, rot + 1]);
    await sendBatch(c, topic, [{}, {}, {}], { keys: ['b', 'a', 'b'] });
    await send(c, other, {}, { key: 'a' });
    expect(await counterParts(c, topic)).toEqual({
      a: { [P]: [[1, 1], [2, 3], [4, 4], [5, 6], [7, 7]], [Q]: [[8, 8]] },
      b: { [P]: [[1, 1], [2, 2], [3, 3]], [Q]: [[4, 5]] },
      single: { [P]: [[1, 1]] },
    });

    // The second folds part P and empties it: of its 4 keys (a, b, single and the other
    // topic's a) only single, the one not sent to since: the others' newer rows in part Q
    // are read before the base, so their base rows are not written.
    expect(await maintainCounters(c)).toEqual([
      { action: 'rotated_key_counters', detail: `1 keys of bucketq.key_counter_${P} folded into key_counter_base (keys sent to since keep newer rows in key_counter_${Q}), the part emptied; sends append to it now` },
    ]);
    expect(await counterParts(c, topic)).toEqual({
      a: { [Q]: [[8, 8]] },
      b: { [Q]: [[4, 5]] },
      single: { base: [[1, 1]] },
    });
    expect(await counterParts(c, other)).toEqual({ a: { [Q]: [[4, 4]] } });
    const { rows: left } = await c.query(`select count(*)::int as n from bucketq.key_counter_${P}`);
    expect(left[0].n).toBe(0);

    // Sends read the current part, the other, then the base.
    await sendBatch(c, topic, [{}, {}, {}, {}], { keys: ['a', 'b', 'single', 'new'] });
    await send(c, other, {}, { key: 'a' });
    expect(await keySeqs(c, topic)).toEqual({ a: range(9), b: range(6), new: [1], single: [1, 2] });
    expect(await keySeqs(c, other)).toEqual({ a: range(5) });
    expect(await counterParts(c, topic)).toEqual({
      a: { [P]: [[9, 9]], [Q]: [[8, 8]] },
      b: { [P]: [[6, 6]], [Q]: [[4, 5]] },
      new: { [P]: [[1, 1]] },
      single: { [P]: [[2, 2]], base: [[1, 1]] },
    });
    // The third finds every key of part Q sent to since (a, b, the other topic's a):
    // nothing to fold; the part is emptied.
    expect(await maintainCounters(c)).toEqual([
      { action: 'rotated_key_counters', detail: `0 keys of bucketq.key_counter_${Q} folded into key_counter_base (keys sent to since keep newer rows in key_counter_${P}), the part emptied; sends append to it now` },
    ]);
    expect(await counterParts(c, topic)).toEqual({
      a: { [P]: [[9, 9]] },
      b: { [P]: [[6, 6]] },
      new: { [P]: [[1, 1]] },
      single: { [P]: [[2, 2]], base: [[1, 1]] },
    });
    // Idle through the next: a, b and new are folded; the base takes each key's highest
    // last_seq, and sends go on from it.
    await maintainCounters(c);
    expect(await counterParts(c, topic)).toEqual({
      a: { base: [[1, 9]] },
      b: { base: [[1, 6]] },
      new: { base: [[1, 1]] },
      single: { base: [[1, 2]] },
    });
    await sendBatch(c, topic, [{}, {}], { keys: ['a', 'single'] });
    expect(await keySeqs(c, topic)).toEqual({ a: range(10), b: range(6), new: [1], single: [1, 2, 3] });
  });

  it('a producer transaction open across a rotation: maintain gives up after about 500 ms, changes nothing, and rotates on the next run', async () => {
    const c = await ctx.session();
    const p = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    // Both parts empty first: the rotation then truncates nothing, and only the
    // producer lock can hold it back (a TRUNCATE would also wait for the sender's
    // lock on the part).
    await maintainCounters(c);
    await maintainCounters(c);
    expect(await maintainCounters(c)).toEqual([]);
    await send(c, topic, {}, { key: 'k' });
    await p.query('begin');
    await send(p, topic, {}, { key: 'k' });
    const rot = await rotationOf(c, topic);
    const t0 = Date.now();
    expect(await maintainCounters(c)).toEqual([
      { action: 'kept_key_counters', detail: 'producers or readers of bucketq.key_counter in flight (lock timeout); retried on the next run' },
    ]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(await rotationOf(c, topic)).toBe(rot);
    await p.query('commit');
    expect((await maintainCounters(c)).map((r) => r.action)).toEqual(['rotated_key_counters']);
    expect(await rotationOf(c, topic)).toBe(rot + 1);
    await send(c, topic, {}, { key: 'k' });
    expect(await keySeqs(c, topic)).toEqual({ k: [1, 2, 3] });
  });

  it('4 producer sessions on 6 shared keys of 2 topics while maintain() rotates 12 times: every key gapless, each key_seq once', async () => {
    const c = await ctx.session();
    const m = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    const { topic: other } = await topicAndGroup(c, ctx, { consumer: null });
    const producers = await Promise.all(Array.from({ length: 4 }, () => ctx.session()));
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6'];
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    let stop = false;
    const sent: Record<string, number> = {};
    const loops = producers.map(async (p, i) => {
      while (!stop) {
        const t = i % 2 ? topic : other;
        const batch = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => keys[Math.floor(rand() * keys.length)]!).sort();
        await p.query('begin');
        await sendBatch(p, t, batch.map((k) => ({ k })), { keys: batch });
        if (rand() < 0.3) await new Promise((r) => setTimeout(r, Math.floor(rand() * 10)));
        await p.query('commit');
        for (const k of batch) sent[`${t}/${k}`] = (sent[`${t}/${k}`] ?? 0) + 1;
      }
    });
    const actions: string[] = [];
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 30));
      actions.push(...(await maintainCounters(m)).map((r) => r.action));
    }
    stop = true;
    await Promise.all(loops);
    expect(actions.filter((a) => a === 'rotated_key_counters').length).toBeGreaterThanOrEqual(6);
    for (const t of [topic, other]) {
      const seqs = await keySeqs(c, t);
      for (const [key, s] of Object.entries(seqs)) expect(s, `${t}/${key}`).toEqual(range(sent[`${t}/${key}`]!));
    }
  });

  it('a topic created after rotations starts at the others\' rotation; topics that disagree are aligned before the next rotation', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await send(c, topic, {}, { key: 'k' });
    await maintainCounters(c);
    const rot = await rotationOf(c, topic);
    const { topic: late } = await topicAndGroup(c, ctx, { consumer: null });
    expect(await rotationOf(c, late)).toBe(rot);

    // As a partial restore could leave it: one topic a rotation behind.
    await c.query('update bucketq.topic set key_rotation = key_rotation - 1 where name = $1', [late]);
    expect(await maintainCounters(c)).toEqual([{ action: 'aligned_key_counters', detail: `every topic appends to bucketq.key_counter_${rot % 2}` }]);
    const { rows } = await c.query('select count(distinct key_rotation)::int as n, max(key_rotation) as r from bucketq.topic');
    expect(rows[0]).toEqual({ n: 1, r: rot });
    await send(c, late, {}, { key: 'k' });
    await send(c, topic, {}, { key: 'k' });
    expect(await keySeqs(c, topic)).toEqual({ k: [1, 2] });
  });

  it('delete_topic deletes its keys\' counter rows in every part', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { consumer: null });
    await sendBatch(c, topic, [{}, {}], { keys: ['a', 'b'] });
    await maintainCounters(c);
    await maintainCounters(c);
    await sendBatch(c, topic, [{}, {}], { keys: ['a', 'b'] });
    await maintainCounters(c);
    await sendBatch(c, topic, [{}], { keys: ['a'] });
    const { rows: ids } = await c.query(`select k.key_id from bucketq.topic_key k join bucketq.topic t using (topic_id) where t.name = $1`, [topic]);
    const count = async () =>
      (await c.query('select count(*)::int as n, count(distinct part)::int as parts from bucketq.key_counter where key_id = any($1::bigint[])', [ids.map((r) => r.key_id)])).rows[0];
    expect(await count()).toEqual({ n: 5, parts: 3 });
    await c.query('select bucketq.delete_topic($1, true)', [topic]);
    expect(await count()).toEqual({ n: 0, parts: 0 });
  });
});
