// Consumer groups at the SQL level: fan-out, start points, idempotent creation, and a
// group created while a producer's transaction is open.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, nack, pidOf, send, sendBatch, setClock, stateFingerprint, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

async function pending(c: pg.Client, group: string): Promise<number> {
  const { rows } = await c.query(`select (sum(ready) + sum(leased) + sum(delayed) + sum(waiting))::int as n from bucketq.lag where group_name = $1`, [group]);
  return rows[0].n;
}

async function createGroup(c: pg.Client, group: string, topic: string, startAt?: string): Promise<boolean> {
  const { rows } = await c.query('select bucketq.create_group(group_name => $1, topic => $2, start_at => coalesce($3, \'latest\')) as created', [group, topic, startAt ?? null]);
  return rows[0].created;
}

async function drainIds(c: pg.Client, group: string, consumer: string): Promise<number[]> {
  const out: number[] = [];
  for (;;) {
    const got = await claim(c, group, consumer, 100);
    if (got.length === 0) return out.sort((a, b) => a - b);
    out.push(...got.map((m) => m.msg_id));
    await ack(c, group, got);
  }
}

/** A topic with two groups from its start: g1 with consumer 'a' joined, g2 with 'b'. */
async function twoGroups(s: pg.Client): Promise<{ topic: string; g1: string; g2: string }> {
  const { topic, group: g1 } = await topicAndGroup(s, ctx, { consumer: 'a' });
  const g2 = ctx.unique('g');
  await createGroup(s, g2, topic, 'earliest');
  await s.query('select * from bucketq.join($1, $2)', [g2, 'b']);
  return { topic, g1, g2 };
}

describe('fan-out', () => {
  it('two groups on one topic progress independently', async () => {
    const s = await ctx.session();
    const { topic, g1, g2 } = await twoGroups(s);
    const ids = await sendBatch(s, topic, Array.from({ length: 10 }, (_, i) => ({ i })), { keys: Array.from({ length: 10 }, (_, i) => `k${i % 3}`) });

    expect(await pending(s, g1)).toBe(10);
    expect(await pending(s, g2)).toBe(10);
    expect(await drainIds(s, g1, 'a')).toEqual(ids);
    expect(await pending(s, g1)).toBe(0);
    expect(await pending(s, g2)).toBe(10); // untouched by g1's acks
    // g2 still sees each key from its first message
    const first = await claim(s, g2, 'b', 100);
    expect(first.map((m) => m.key_seq)).toEqual([1, 1, 1]);
    await ack(s, g2, first);
    expect(await pending(s, g2)).toBe(7);
    expect(await drainIds(s, g2, 'b')).toEqual(ids.filter((id) => !first.some((m) => m.msg_id === id)));

    const { rows } = await s.query(
      `select g.name, count(*)::int as n from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name in ($1, $2) group by g.name order by g.name`,
      [g1, g2],
    );
    expect(rows).toEqual([
      { name: g1, n: 10 },
      { name: g2, n: 10 },
    ].sort((x, y) => x.name.localeCompare(y.name)));
  });
});

describe('pending', () => {
  // bucketq.groups counts the log past each checkpoint without telling ready, in flight
  // and waiting apart (_log_backlog_total); bucketq.lag tells them apart (_log_backlog_buckets).
  // The two must agree in every state, and lag's parts must be the right ones.
  it('groups.pending is the sum of what lag shows: ready, in flight, delayed, waiting', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { buckets: 4, group: { session_timeout: '1 hour' } });
    const keys = [...Array.from({ length: 30 }, (_, i) => `k${i % 5}`), null, null, null, null, null];
    await sendBatch(s, topic, keys.map((k, i) => ({ i, k })), { keys });
    const lagNow = async () => {
      const { rows } = await s.query(
        `select sum(ready)::int as ready, sum(leased)::int as leased, sum(delayed)::int as delayed, sum(waiting)::int as waiting,
                sum(dead_blocking)::int as dead_blocking
           from bucketq.lag where group_name = $1`,
        [group],
      );
      const { rows: g } = await s.query('select pending::int from bucketq.groups where group_name = $1', [group]);
      return { ...rows[0], pending: g[0].pending };
    };
    // 5 key heads and 5 unkeyed ready; the other 25 of the keys wait behind their heads
    expect(await lagNow()).toEqual({ ready: 10, leased: 0, delayed: 0, waiting: 25, dead_blocking: 0, pending: 35 });

    const got = await claim(s, group, consumer, 6, { maxPerKey: 2 });
    const keyed = got.filter((m) => m.key !== null);
    const runs = new Set(keyed.map((m) => m.key)).size;
    // in flight now: the claimed; ready: the heads not claimed, keys whose run was taken
    // have their next message behind the run (waiting), not ready
    expect(await lagNow()).toEqual({
      ready: 10 - runs - (got.length - keyed.length),
      leased: 6,
      delayed: 0,
      waiting: 25 - (keyed.length - runs),
      dead_blocking: 0,
      pending: 35,
    });

    // A nacked head goes to the inbox (delayed); its key's messages wait behind it.
    const head = keyed.find((m) => m.key_seq === 1)!;
    const others = got.filter((m) => m.msg_id !== head.msg_id && m.key !== head.key);
    await nack(s, group, [head], { retryDelay: '1 hour' });
    await ack(s, group, others);
    const after = await lagNow();
    expect(after.pending).toBe(35 - others.length);
    expect(after.delayed).toBe(1);
    expect(after.ready + after.leased + after.delayed + after.waiting + after.dead_blocking).toBe(after.pending);
  });
});

describe('caught_up', () => {
  // groups.caught_up answers "pending = 0" without counting (pollers: a drain's end, a
  // deploy check). It must agree with pending in every state a message can be in.
  it('is true exactly when pending is 0: in the log, leased, nacked to the inbox, dead and blocking, acked, in every bucket', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, {
      buckets: 4,
      group: { session_timeout: '1 hour', max_attempts: 1, on_exhausted: 'block' },
    });
    const state = async () => {
      const { rows } = await s.query('select pending::int, caught_up from bucketq.groups where group_name = $1', [group]);
      expect(rows[0].caught_up).toBe(rows[0].pending === 0);
      return rows[0] as { pending: number; caught_up: boolean };
    };
    expect(await state()).toEqual({ pending: 0, caught_up: true });

    // One message in each bucket, unkeyed, and two of a key.
    await sendBatch(s, topic, [1, 2, 3, 4].map((i) => ({ i })));
    await sendBatch(s, topic, [5, 6].map((i) => ({ i })), { keys: ['k', 'k'] });
    expect(await state()).toEqual({ pending: 6, caught_up: false });

    // All but one acked; the last in flight (a lease, in the log's batch under way).
    let got = await claim(s, group, consumer, 10);
    expect(got.length).toBe(5); // the key's second waits behind its first
    const last = got.find((m) => m.key === 'k')!;
    await ack(s, group, got.filter((m) => m !== last));
    expect(await state()).toEqual({ pending: 2, caught_up: false });

    // Its attempts spent, the key's head is dead and blocks its key (an inbox row); the
    // second waits behind it.
    await nack(s, group, [last], { error: 'boom' });
    expect(await state()).toEqual({ pending: 2, caught_up: false });
    // Replayed, it comes again before the key's second.
    await s.query('select bucketq.replay_dead($1, $2::bigint[])', [group, [last.msg_id]]);
    for (const [i, left] of [[5, 2], [6, 1]] as const) {
      got = await claim(s, group, consumer, 10);
      expect(got.map((m) => m.payload)).toEqual([{ i }]);
      expect(await state()).toEqual({ pending: left, caught_up: false });
      await ack(s, group, got);
    }
    expect(await state()).toEqual({ pending: 0, caught_up: true });

    // The last message left in any one of the buckets.
    for (let bucket = 0; bucket < 4; bucket++) {
      await sendBatch(s, topic, [0, 1, 2, 3].map((i) => ({ round: bucket, i })));
      got = await claim(s, group, consumer, 10);
      expect(got.map((m) => m.bucket).sort()).toEqual([0, 1, 2, 3]);
      await ack(s, group, got.filter((m) => m.bucket !== bucket));
      expect(await state()).toEqual({ pending: 1, caught_up: false });
      await ack(s, group, got.filter((m) => m.bucket === bucket));
      expect(await state()).toEqual({ pending: 0, caught_up: true });
    }
  });
});

describe('start_at', () => {
  it("'earliest' sees messages sent before the group existed, 'latest' does not, a timestamp sees those at or after it", async () => {
    const s = await ctx.session();
    const topic = ctx.unique('t');
    await s.query('select bucketq.create_topic($1)', [topic]);
    const m1 = await send(s, topic, { n: 1 }, { key: 'k' });
    const m2 = await send(s, topic, { n: 2 }, { key: 'k' });
    const { rows } = await s.query(`select to_char(sent_at, 'YYYY-MM-DD"T"HH24:MI:SS.USOF') as at from bucketq.message where id = $1`, [m2]);
    const m2At = rows[0].at as string;

    const [early, late, stamp] = [ctx.unique('g'), ctx.unique('g'), ctx.unique('g')];
    expect(await createGroup(s, early, topic, 'earliest')).toBe(true);
    expect(await createGroup(s, late, topic, 'latest')).toBe(true);
    expect(await createGroup(s, stamp, topic, m2At)).toBe(true);
    for (const g of [early, late, stamp]) await s.query('select * from bucketq.join($1, $2)', [g, 'c']);
    const m3 = await send(s, topic, { n: 3 }, { key: 'k' });

    expect(await drainIds(s, early, 'c')).toEqual([m1, m2, m3]);
    expect(await drainIds(s, late, 'c')).toEqual([m3]);
    // the timestamp group starts at m2: m2 is its first message of key k (readiness does not wait for m1)
    const [head] = await claim(s, stamp, 'c', 10);
    expect([head?.msg_id, head?.key_seq]).toEqual([m2, 2]);
    await ack(s, stamp, [head!]);
    expect(await drainIds(s, stamp, 'c')).toEqual([m3]);
  });

  it('a claim that skips a key\'s message sent before the start and hands out the next leaves the one after waiting until that is acked', async () => {
    // The claim writes its progress rows at its end, but the promotion of the skipped
    // key's waiting messages must see this claim's batch: otherwise m3 became ready
    // while m2 was out.
    const s = await ctx.session();
    const topic = ctx.unique('t');
    await s.query('select bucketq.create_topic($1)', [topic]);
    await send(s, topic, { n: 1 }, { key: 'k' });
    const m2 = await send(s, topic, { n: 2 }, { key: 'k' });
    const m3 = await send(s, topic, { n: 3 }, { key: 'k' });
    const { rows } = await s.query(`select to_char(sent_at, 'YYYY-MM-DD"T"HH24:MI:SS.USOF') as at from bucketq.message where id = $1`, [m2]);
    const group = ctx.unique('g');
    expect(await createGroup(s, group, topic, rows[0].at)).toBe(true);
    await s.query(`select * from bucketq.join($1, 'c')`, [group]);

    const first = await claim(s, group, 'c', 10); // max_per_key 1: m1 skipped, m2 out, m3 waits
    expect(first.map((m) => m.msg_id)).toEqual([m2]);
    expect(await claim(s, group, 'c', 10)).toEqual([]);
    await ack(s, group, first);
    expect((await claim(s, group, 'c', 10)).map((m) => m.msg_id)).toEqual([m3]);
  });

  it('a future start time receives only messages sent from then on', async () => {
    const s = await ctx.session();
    const topic = ctx.unique('t');
    await s.query('select bucketq.create_topic($1)', [topic]);
    const group = ctx.unique('g');
    const { rows } = await s.query(`select to_char(now() + interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS.USOF') as at`);
    await createGroup(s, group, topic, rows[0].at);
    await s.query(`select * from bucketq.join($1, 'c')`, [group]);
    await send(s, topic, { early: true });
    expect(await pending(s, group)).toBe(0);
    await setClock(s, '2 minutes');
    await s.query(`select * from bucketq.heartbeat($1, 'c')`, [group]);
    const later = await send(s, topic, { early: false });
    expect(await drainIds(s, group, 'c')).toEqual([later]);
  });
});

describe('idempotent creation', () => {
  it('create_topic and create_group return false for the same settings and raise BQ007 for others, changing nothing', async () => {
    const s = await ctx.session();
    const topic = ctx.unique('t');
    const group = ctx.unique('g');
    const topicSql = `select bucketq.create_topic(topic => $1, buckets => $2, retention => $3::interval) as r`;
    expect((await s.query(topicSql, [topic, 8, '2 days'])).rows[0].r).toBe(true);
    expect((await s.query(topicSql, [topic, 8, '48 hours'])).rows[0].r).toBe(false);
    const groupSql = `select bucketq.create_group(group_name => $1, topic => $2, start_at => $3, max_attempts => $4) as r`;
    expect((await s.query(groupSql, [group, topic, 'earliest', 5])).rows[0].r).toBe(true);
    expect((await s.query(groupSql, [group, topic, 'earliest', 5])).rows[0].r).toBe(false);

    const before = await stateFingerprint(s);
    const e1 = await expectBqError(s.query(topicSql, [topic, 16, '2 days']), 'BQ007');
    expect(e1.detail).toMatch(/buckets=8.*buckets=16/);
    await expectBqError(s.query(topicSql, [topic, 8, '3 days']), 'BQ007');
    await expectBqError(s.query(groupSql, [group, topic, 'latest', 5]), 'BQ007');
    await expectBqError(s.query(groupSql, [group, topic, 'earliest', 6]), 'BQ007');
    const other = ctx.unique('t');
    await s.query('select bucketq.create_topic($1, 8, $2::interval)', [other, '2 days']);
    const mid = await stateFingerprint(s);
    await expectBqError(s.query(groupSql, [group, other, 'earliest', 5]), 'BQ007');
    expect(await stateFingerprint(s)).toEqual(mid);
    expect(before.topic).not.toEqual(mid.topic);
    const { rows } = await s.query(`select buckets, retention::text, max_attempts from bucketq.groups gr join bucketq.topics t on t.name = gr.topic where gr.group_name = $1`, [group]);
    expect(rows).toEqual([{ buckets: 8, retention: '2 days', max_attempts: 5 }]);
  });

  it('8 sessions creating the same topic and group at once: one creates, all succeed', async () => {
    const sessions = await Promise.all(Array.from({ length: 8 }, () => ctx.session()));
    const topic = ctx.unique('t');
    const group = ctx.unique('g');
    const topics = await Promise.all(sessions.map((c) => c.query('select bucketq.create_topic($1) as r', [topic]).then((r) => r.rows[0].r)));
    expect(topics.filter(Boolean)).toHaveLength(1);
    const groups = await Promise.all(sessions.map((c) => createGroup(c, group, topic, 'earliest')));
    expect(groups.filter(Boolean)).toHaveLength(1);
    const { rows } = await sessions[0]!.query(`select count(*)::int as n from bucketq.buckets where group_name = $1`, [group]);
    expect(rows[0].n).toBe(16);
  });
});

describe('a group created while a producer transaction is open', () => {
  it("'earliest': waits for the producer and gets its messages once it commits", async () => {
    const admin = await ctx.session();
    const producer = await ctx.session();
    const creator = await ctx.session();
    const topic = ctx.unique('t');
    await admin.query('select bucketq.create_topic($1)', [topic]);
    const group = ctx.unique('g');

    await producer.query('begin');
    const m1 = await send(producer, topic, { n: 1 }, { key: 'k' });
    const creating = createGroup(creator, group, topic, 'earliest');
    await waitUntilBlocked(admin, pidOf(creator));
    const m2 = await send(producer, topic, { n: 2 }, { key: 'k' }); // same transaction, still before the group
    await producer.query('commit');
    expect(await creating).toBe(true);

    await admin.query(`select * from bucketq.join($1, 'c')`, [group]);
    const m3 = await send(admin, topic, { n: 3 }, { key: 'k' });
    const got: number[] = [];
    for (;;) {
      const c = await claim(admin, group, 'c', 10);
      if (c.length === 0) break;
      got.push(...c.map((m) => m.msg_id));
      await ack(admin, group, c);
    }
    expect(got).toEqual([m1, m2, m3]);
  });

  it("'latest': a producer that starts while the group is being created waits, and its message reaches the group", async () => {
    const admin = await ctx.session();
    const producer = await ctx.session();
    const creator = await ctx.session();
    const topic = ctx.unique('t');
    await admin.query('select bucketq.create_topic($1)', [topic]);
    const group = ctx.unique('g');

    await creator.query('begin');
    await createGroup(creator, group, topic, 'latest');
    const sending = send(producer, topic, { n: 1 }, { key: 'k' });
    await waitUntilBlocked(admin, pidOf(producer));
    await creator.query('commit');
    const id = await sending;

    await admin.query(`select * from bucketq.join($1, 'c')`, [group]);
    expect((await claim(admin, group, 'c', 10)).map((m) => m.msg_id)).toEqual([id]);
  });

  it("'latest': a producer transaction that committed before the group gets no fan-out, one committing after does", async () => {
    const admin = await ctx.session();
    const p1 = await ctx.session();
    const topic = ctx.unique('t');
    await admin.query('select bucketq.create_topic($1)', [topic]);
    const group = ctx.unique('g');
    await send(p1, topic, { before: true });
    await createGroup(admin, group, topic, 'latest');
    const after = await send(p1, topic, { before: false });
    await admin.query(`select * from bucketq.join($1, 'c')`, [group]);
    expect(await drainIds(admin, group, 'c')).toEqual([after]);
  });

  it("'earliest': a REPEATABLE READ producer whose snapshot predates the group must retry, then the group gets it", async () => {
    // The outbox runs inside the caller's transaction, whatever its isolation level.
    const admin = await ctx.session();
    const producer = await ctx.session();
    const topic = ctx.unique('t');
    await admin.query('select bucketq.create_topic($1)', [topic]);
    const group = ctx.unique('g');

    await producer.query('begin isolation level repeatable read');
    await producer.query('select 1'); // the business transaction has read something: snapshot taken
    expect(await createGroup(admin, group, topic, 'earliest')).toBe(true); // nothing to wait for yet
    // Its snapshot cannot see the new group: sending would miss it, so it must fail...
    const err = await send(producer, topic, { n: 1 }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('40001');
    await producer.query('rollback');
    // ...and the retried transaction reaches the group.
    await producer.query('begin isolation level repeatable read');
    const id = await send(producer, topic, { n: 1 });
    await producer.query('commit');

    await admin.query(`select * from bucketq.join($1, 'c')`, [group]);
    expect(await drainIds(admin, group, 'c')).toEqual([id]);
  });
});

describe('delete_group', () => {
  it("removes the group's progress, cursors, lobby and delivery records and nothing of another group's", async () => {
    const s = await ctx.session();
    const { topic, g1, g2 } = await twoGroups(s);
    await sendBatch(s, topic, Array.from({ length: 20 }, (_, i) => ({ i })), { keys: Array.from({ length: 20 }, (_, i) => `k${i % 4}`) });
    for (const [g, c] of [[g1, 'a'], [g2, 'b']] as const) {
      const got = await claim(s, g, c, 5);
      await ack(s, g, got.slice(0, 2));
    }
    const { rows: ids } = await s.query('select name, group_id from bucketq.consumer_group where name in ($1, $2)', [g1, g2]);
    const id = Object.fromEntries(ids.map((r) => [r.name, r.group_id as number]));
    const counts = async (groupId: number) =>
      (
        await s.query(
          `select (select count(*) from bucketq.progress where group_id = $1)::int as progress,
                  (select count(*) from bucketq.cursor where group_id = $1)::int as cursors,
                  (select count(*) from bucketq.bucket_owner where group_id = $1)::int as owners,
                  (select count(*) from bucketq.consumer where group_id = $1)::int as consumers,
                  (select count(*) from bucketq.delivery where group_id = $1)::int as deliveries`,
          [groupId],
        )
      ).rows[0];
    const before = await counts(id[g2]!);
    expect(before.progress).toBeGreaterThan(0);
    expect((await counts(id[g1]!)).progress).toBeGreaterThan(0);

    await s.query('select bucketq.delete_group($1, force => true)', [g1]);
    expect(await counts(id[g1]!)).toEqual({ progress: 0, cursors: 0, owners: 0, consumers: 0, deliveries: 0 });
    expect(await counts(id[g2]!)).toEqual(before);
  });
});
