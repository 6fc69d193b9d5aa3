// send / send_batch at the SQL level: idempotency under concurrency, the transactional
// outbox (rollback leaves nothing, nothing visible before commit), headers, size limit.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { claim, expectBqError, pgError, pidOf, send, sendBatch, stateFingerprint, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

async function topicRows(c: pg.Client, topic: string) {
  const { rows } = await c.query(
    `select (select count(*)::int from bucketq.message m where m.topic_id = t.topic_id) as messages,
            (select count(*)::int from bucketq.inbox i join bucketq.consumer_group g using (group_id) where g.topic_id = t.topic_id) as inbox,
            (select count(*)::int from bucketq.idempotency x where x.topic_id = t.topic_id) as idempotency,
            (select coalesce(jsonb_object_agg(k.key, (select max(c.last_seq) from bucketq.key_counter c where c.key_id = k.key_id)), '{}')
               from bucketq.topic_key k where k.topic_id = t.topic_id) as counters
       from bucketq.topic t where t.name = $1`,
    [topic],
  );
  return rows[0] as { messages: number; inbox: number; idempotency: number; counters: Record<string, number> };
}

describe('idempotent send', () => {
  it('the same idempotency key from 8 sessions at once: one id for all, one message', async () => {
    const setup = await ctx.session();
    const sessions = await Promise.all(Array.from({ length: 8 }, () => ctx.session()));
    const { topic } = await topicAndGroup(setup, ctx);
    for (let round = 0; round < 5; round++) {
      const ids = await Promise.all(sessions.map((c, i) => send(c, topic, { from: i }, { key: 'k', idempotencyKey: `order-${round}` })));
      expect(new Set(ids).size).toBe(1);
    }
    expect(await topicRows(setup, topic)).toEqual({ messages: 5, inbox: 0, idempotency: 5, counters: { k: 5 } });
  });

  it('senders of a key held by an open transaction wait and get its id when it commits', async () => {
    const setup = await ctx.session();
    const [first, ...others] = await Promise.all(Array.from({ length: 8 }, () => ctx.session()));
    const { topic } = await topicAndGroup(setup, ctx);
    await first!.query('begin');
    const original = await send(first!, topic, { from: 0 }, { key: 'k', idempotencyKey: 'once' });
    const waiting = others.map((c, i) => send(c, topic, { from: i + 1 }, { key: 'k', idempotencyKey: 'once' }));
    for (const c of others) await waitUntilBlocked(setup, pidOf(c));
    await first!.query('commit');
    expect(await Promise.all(waiting)).toEqual(others.map(() => original));
    expect(await topicRows(setup, topic)).toEqual({ messages: 1, inbox: 0, idempotency: 1, counters: { k: 1 } });
  });

  it('when the holder rolls back, exactly one waiter sends and the rest get its id', async () => {
    const setup = await ctx.session();
    const [first, ...others] = await Promise.all(Array.from({ length: 8 }, () => ctx.session()));
    const { topic } = await topicAndGroup(setup, ctx);
    await first!.query('begin');
    const ghost = await send(first!, topic, { from: 0 }, { key: 'k', idempotencyKey: 'once' });
    const waiting = others.map((c, i) => send(c, topic, { from: i + 1 }, { key: 'k', idempotencyKey: 'once' }));
    for (const c of others) await waitUntilBlocked(setup, pidOf(c));
    await first!.query('rollback');
    const ids = await Promise.all(waiting);
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).not.toBe(ghost);
    expect(await topicRows(setup, topic)).toEqual({ messages: 1, inbox: 0, idempotency: 1, counters: { k: 1 } });
    const { rows } = await setup.query('select id::int, key_seq::int from bucketq.message where id = $1', [ids[0]]);
    expect(rows).toEqual([{ id: ids[0], key_seq: 1 }]);
  });

  it('a key repeated within a batch and across batches: first id returned, no new row, no key_seq used', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const ids = await sendBatch(c, topic, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }], {
      keys: ['k', 'k', 'k', 'k', 'k'],
      idempotencyKeys: ['a', 'b', 'a', null, null],
    });
    expect(ids[2]).toBe(ids[0]);
    expect(new Set(ids).size).toBe(4);
    const again = await sendBatch(c, topic, [{ n: 6 }, { n: 7 }, { n: 8 }], { keys: ['k', 'k', 'k'], idempotencyKeys: ['b', 'c', 'a'] });
    expect(again[0]).toBe(ids[1]);
    expect(again[2]).toBe(ids[0]);
    expect(await topicRows(c, topic)).toEqual({ messages: 5, inbox: 0, idempotency: 3, counters: { k: 5 } });
    const { rows } = await c.query(
      'select m.key_seq::int, m.payload from bucketq.message m join bucketq.topic t using (topic_id) where t.name = $1 order by m.key_seq',
      [topic],
    );
    expect(rows).toEqual([
      { key_seq: 1, payload: { n: 1 } },
      { key_seq: 2, payload: { n: 2 } },
      { key_seq: 3, payload: { n: 4 } },
      { key_seq: 4, payload: { n: 5 } },
      { key_seq: 5, payload: { n: 7 } },
    ]);
    expect((await claim(c, group, consumer, 10)).map((m) => m.payload)).toEqual([{ n: 1 }]);
  });
});

describe('transactional outbox', () => {
  it('a send in a transaction that rolls back leaves no log row, no inbox row, no idempotency key, no counter advance', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await send(c, topic, { n: 1 }, { key: 'old' });
    const before = await topicRows(c, topic);

    await c.query('begin');
    await send(c, topic, { ghost: 1 }, { key: 'old', idempotencyKey: 'ik' });
    await send(c, topic, { ghost: 2 }, { key: 'new' });
    await sendBatch(c, topic, [{ ghost: 3 }, { ghost: 4 }], { keys: ['new', null] });
    expect((await topicRows(c, topic)).messages).toBe(5); // the transaction sees its own rows
    await c.query('rollback');
    expect(await topicRows(c, topic)).toEqual(before);

    const id1 = await send(c, topic, { n: 2 }, { key: 'old', idempotencyKey: 'ik' });
    const id2 = await send(c, topic, { n: 1 }, { key: 'new' });
    const { rows } = await c.query('select id::int, key_seq::int from bucketq.message where id = any($1::bigint[]) order by id', [[id1, id2]]);
    expect(rows).toEqual([
      { id: id1, key_seq: 2 },
      { id: id2, key_seq: 1 },
    ]);
    expect((await claim(c, group, consumer, 10)).map((m) => m.payload)).toEqual([{ n: 1 }, { n: 1 }]);
  });

  it('nothing is claimable before the producer commits, everything right after', async () => {
    const producer = await ctx.session();
    const consumerSession = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(consumerSession, ctx);
    await producer.query('begin');
    const a = await send(producer, topic, { n: 1 }, { key: 'k' });
    const b = await send(producer, topic, { n: 2 });
    expect(await claim(consumerSession, group, consumer, 10)).toEqual([]);
    const { rows } = await consumerSession.query(`select (sum(ready) + sum(waiting))::int as n from bucketq.lag where group_name = $1`, [group]);
    expect(rows[0].n).toBe(0);
    await producer.query('commit');
    expect((await claim(consumerSession, group, consumer, 10)).map((m) => m.msg_id).sort((x, y) => x - y)).toEqual([a, b]);
  });
});

describe('message contents', () => {
  it('payloads of every JSON type and headers round-trip; keyed messages share their bucket', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const headers = { 'trace-id': 'abc', n: 1, nested: { a: [1, 2, null] }, 'ünï': 'cödé' };
    const payloads = [{ a: 1 }, 'text', 42, [1, 'two', { three: 3 }], true, { deep: { x: [{}] } }];
    const single = await send(c, topic, payloads[0], { headers });
    const batch = await sendBatch(c, topic, payloads.slice(1), { headers: [null, { h: 2 }, null, null, {}] });
    const got = await claim(c, group, consumer, 100);
    const byId = new Map(got.map((m) => [m.msg_id, m]));
    expect(byId.get(single)?.headers).toEqual(headers);
    expect(byId.get(single)?.payload).toEqual(payloads[0]);
    batch.forEach((id, i) => expect(byId.get(id)?.payload).toEqual(payloads[i + 1]));
    expect(batch.map((id) => byId.get(id)?.headers)).toEqual([null, { h: 2 }, null, null, {}]);

    const keyed = await sendBatch(c, topic, [1, 2, 3, 4], { keys: ['same', 'other', 'same', 'other'] });
    const { rows } = await c.query('select id::int, bucket, key from bucketq.message where id = any($1::bigint[]) order by id', [keyed]);
    expect(rows[0].bucket).toBe(rows[2].bucket);
    expect(rows[1].bucket).toBe(rows[3].bucket);
    expect(rows.every((r) => r.bucket >= 0 && r.bucket < 16)).toBe(true);
  });

  it('a batch of one takes its elements by position whatever the arrays start at, as a batch of two does', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    // Arrays based at 0, 3, 7, 2 and 5: the one element of each is the message's.
    const { rows: one } = await c.query(
      `select id::int from bucketq.send_batch($1, '[0:0]={"{\\"a\\": 1}"}'::jsonb[], keys => '[3:3]={k1}'::text[],
         headers => '[7:7]={"{\\"h\\": 1}"}'::jsonb[], idempotency_keys => '[2:2]={ik1}'::text[],
         not_before => '[5:5]={"2000-01-01 00:00:00+00"}'::timestamptz[]) as s(id)`,
      [topic],
    );
    const { rows: two } = await c.query(
      `select id::int from bucketq.send_batch($1, '[0:1]={"{\\"a\\": 2}","{\\"a\\": 3}"}'::jsonb[], keys => '[3:4]={k1,k2}'::text[]) as s(id)`,
      [topic],
    );
    expect(one).toHaveLength(1);
    expect(two).toHaveLength(2);
    const { rows } = await c.query(
      `select id::int, key, key_seq::int, payload, headers, idempotency_key, not_before
         from bucketq.message where id = any($1::bigint[]) order by id`,
      [[one[0].id, two[0].id, two[1].id]],
    );
    expect(rows).toEqual([
      { id: one[0].id, key: 'k1', key_seq: 1, payload: { a: 1 }, headers: { h: 1 }, idempotency_key: 'ik1', not_before: new Date('2000-01-01T00:00:00Z') },
      { id: two[0].id, key: 'k1', key_seq: 2, payload: { a: 2 }, headers: null, idempotency_key: null, not_before: null },
      { id: two[1].id, key: 'k2', key_seq: 1, payload: { a: 3 }, headers: null, idempotency_key: null, not_before: null },
    ]);
    // The idempotency key of the batch of one was recorded: sending it again returns the same id.
    expect(await send(c, topic, { a: 9 }, { idempotencyKey: 'ik1' })).toBe(one[0].id);
    // k1's head is the batch of one's message (key_seq 1); k2's is the second of the batch of two.
    const got = await claim(c, group, consumer, 10);
    expect(got.map((m) => m.msg_id).sort((x, y) => x - y)).toEqual([one[0].id, two[1].id]);
  });

  it('headers that are not a JSON object raise BQ005 and insert nothing', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx);
    const before = await stateFingerprint(c);
    await expectBqError(send(c, topic, { a: 1 }, { headers: ['not', 'an', 'object'] }), 'BQ005', /headers/);
    await expectBqError(sendBatch(c, topic, [1, 2], { headers: [{}, 'str'] }), 'BQ005', /headers 2 of 2/);
    expect(await stateFingerprint(c)).toEqual(before);
  });
});

describe('payload size limit', () => {
  it('raises BQ004 with a hint and inserts nothing, also for one bad element of a batch', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { topic: { max_payload_bytes: 100 } });
    await send(c, topic, { ok: 'small' }, { key: 'k' });
    const before = await stateFingerprint(c);
    const big = { blob: 'x'.repeat(200) };

    const e1 = await expectBqError(send(c, topic, big, { key: 'k', idempotencyKey: 'big' }), 'BQ004');
    expect(e1.message).toMatch(/over the limit of 100 bytes/);
    const e2 = await expectBqError(
      sendBatch(c, topic, [{ ok: 1 }, big, { ok: 3 }], { keys: ['k', 'k', 'fresh'], idempotencyKeys: ['i1', 'i2', 'i3'] }),
      'BQ004',
    );
    expect(e2.message).toMatch(/payload 2 of 3/);
    expect(await stateFingerprint(c)).toEqual(before);
    // the key continues where it was
    const id = await send(c, topic, { ok: 'again' }, { key: 'k' });
    const { rows } = await c.query('select key_seq::int from bucketq.message where id = $1', [id]);
    expect(rows[0].key_seq).toBe(2);
  });

  it('a JSON null payload raises BQ005; text that is not JSON is refused by the cast', async () => {
    const c = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx);
    const before = await stateFingerprint(c);
    await expectBqError(send(c, topic, null), 'BQ005', /null/);
    await expectBqError(c.query(`select bucketq.send($1, null::jsonb)`, [topic]), 'BQ005', /null/);
    const notJson = await pgError(c.query(`select bucketq.send($1, $2::jsonb)`, [topic, '{not json']));
    expect(notJson.code).toBe('22P02');
    expect(await stateFingerprint(c)).toEqual(before);
  });
});

describe('what a send reads', () => {
  it('a send neither reads nor writes the inbox: its cost does not grow with the backlog of any group', async () => {
    // Sends used to fan every message out to an inbox row per group and probe the inbox
    // per key; now a message is its log row (and its key counter). Counted, not timed.
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx);
    await c.query(`select bucketq.create_group($1, $2, start_at => 'earliest')`, [`${group}.2`, topic]);
    const batch = (n: number, offset: number) =>
      c.query(
        `select count(*) from bucketq.send_batch($1,
           (select array_agg(jsonb_build_object('i', i)) from generate_series($2::int + 1, $2::int + $3::int) i),
           (select array_agg('k' || (i % 1000)) from generate_series($2::int + 1, $2::int + $3::int) i))`,
        [topic, offset, n],
      );
    await batch(20_000, 0);
    // The counters of this backend that are not yet flushed to the shared statistics
    // (pg_stat_xact_* shows those too: e.g. the set-up's own reads a moment ago), before
    // and after: the difference is what the sends did.
    const counts = async () =>
      (
        await c.query(
          `select seq_scan::int, coalesce(idx_scan, 0)::int as idx_scan, n_tup_ins::int from pg_stat_xact_user_tables where relid = 'bucketq.inbox'::regclass`,
        )
      ).rows[0] as { seq_scan: number; idx_scan: number; n_tup_ins: number };
    await c.query('begin');
    const before = await counts();
    await batch(100, 20_000);
    await batch(1000, 20_100);
    const after = await counts();
    await c.query('commit');
    expect({
      seq_scan: after.seq_scan - before.seq_scan,
      idx_scan: after.idx_scan - before.idx_scan,
      n_tup_ins: after.n_tup_ins - before.n_tup_ins,
    }).toEqual({ seq_scan: 0, idx_scan: 0, n_tup_ins: 0 });
    const { rows: inbox } = await c.query(
      `select count(*)::int as n from bucketq.inbox i join bucketq.consumer_group g using (group_id) join bucketq.topic t using (topic_id) where t.name = $1`,
      [topic],
    );
    expect(inbox[0].n).toBe(0);
    // and both groups see all of it, each key in order
    const { rows: lag } = await c.query(
      `select group_name, sum(ready + waiting + leased)::int as pending from bucketq.lag where topic = $1 group by 1 order by 1`,
      [topic],
    );
    expect(lag.map((r) => r.pending)).toEqual([21_100, 21_100]);
  });
});

describe('wake-up notifications', () => {
  it('one NOTIFY per statement: the topic, with the bucket when every message went to one; once per bucket a transaction', async () => {
    const setup = await ctx.session();
    const listener = await ctx.session();
    const { topic } = await topicAndGroup(setup, ctx, { buckets: 8 });
    const heard: string[] = [];
    listener.on('notification', (n) => {
      if (n.channel === 'bucketq' && n.payload?.startsWith(topic)) heard.push(n.payload);
    });
    await listener.query('listen bucketq');
    const bucketsOf = async (ids: number[]) =>
      (await setup.query<{ b: number[] }>('select array_agg(distinct bucket order by bucket) as b from bucketq.message where id = any($1)', [ids]))
        .rows[0]!.b;
    const bucketOf = async (id: number) => (await bucketsOf([id]))[0];
    // Notifications come with the commit; a round trip on the listener's session
    // afterwards has read every one sent before it.
    const drain = async () => {
      await listener.query('select 1');
      return heard.splice(0);
    };

    const unkeyed = await send(setup, topic, { a: 1 });
    expect(await drain()).toEqual([`${topic}:${await bucketOf(unkeyed)}`]);
    const keyed = await send(setup, topic, { a: 2 }, { key: 'k1' });
    expect(await drain()).toEqual([`${topic}:${await bucketOf(keyed)}`]);
    // a batch of one key: that key's bucket
    const [first] = await sendBatch(setup, topic, [{ a: 3 }, { a: 4 }], { keys: ['k2', 'k2'] });
    expect(await drain()).toEqual([`${topic}:${await bucketOf(first!)}`]);
    // a batch of one whose keys array starts at 3: its key's bucket, not the one its id
    // would give an unkeyed message (at least one of these keys' buckets differs from it)
    let told = 0;
    for (let i = 0; i < 8; i++) {
      const { rows } = await setup.query<{ id: number; by_id: number }>(
        `select s.id::int, bucketq._bucket_of(null, s.id, 8) as by_id
           from bucketq.send_batch($1, array['{}']::jsonb[], keys => $2::text[]) as s(id)`,
        [topic, `[3:3]={based-${i}}`],
      );
      const bucket = await bucketOf(rows[0]!.id);
      expect(await drain()).toEqual([`${topic}:${bucket}`]);
      if (bucket !== rows[0]!.by_id) told++;
    }
    expect(told).toBeGreaterThan(0);

    // Several buckets, or an unkeyed message beside keyed ones: the topic alone.
    const keys = Array.from({ length: 40 }, (_, i) => `spread-${i}`);
    const spread = await sendBatch(setup, topic, keys.map((k) => ({ k })), { keys });
    expect((await bucketsOf(spread)).length).toBeGreaterThan(1);
    expect(await drain()).toEqual([topic]);
    await sendBatch(setup, topic, [{ a: 5 }, { a: 6 }], { keys: ['k2', null] });
    expect(await drain()).toEqual([topic]);
    await sendBatch(setup, topic, [{ a: 7 }, { a: 8 }]);
    expect(await drain()).toEqual([topic]);

    // A transaction of many sends: one notification per bucket and one for the topic,
    // not one per send.
    await setup.query('begin');
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) ids.push(await send(setup, topic, { i }, { key: `k${i % 3}` }));
    for (let i = 0; i < 3; i++) await sendBatch(setup, topic, [{ i }, { i }], { keys: ['k0', 'k1'] });
    expect(await drain()).toEqual([]); // nothing before the commit
    await setup.query('commit');
    const buckets = await bucketsOf(ids);
    expect((await drain()).sort()).toEqual([...buckets.map((b) => `${topic}:${b}`), ...(buckets.length > 1 ? [topic] : [])].sort());
  });
});
