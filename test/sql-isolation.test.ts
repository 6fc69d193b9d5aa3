// Settles (ack, nack, reject), rewind and skip_to_latest, the lobby (join, heartbeat,
// leave) and replay_dead outside READ COMMITTED. Their checks (the batch is still
// its bucket's latest, its lease unexpired, its claimer the owner) must see what
// committed after the caller's snapshot, and the log's rows are never updated, so an
// older snapshot meets no serialization failure there: they refuse any other level
// (sql/functions/_raise_not_read_committed.sql). Claims: test/sql-claim-buckets.test.ts.
// Real concurrent sessions.
import { describe, expect, it } from 'vitest';
import { ack, claim, nack, pgError, send, setClock, topicAndGroup, useDatabase, type Claimed, type Queryable } from './helpers/sql.js';

const ctx = useDatabase();

const deliveries = async (c: Queryable, group: string, msgId: number) =>
  (await c.query<{ n: number }>(`select count(*)::int as n from bucketq.deliveries where group_name = $1 and msg_id = $2`, [group, msgId])).rows[0]!.n;

/**
 * A message claimed under a one-second lease (first), then, on a clock ten seconds on,
 * claimed again after its lease expired and acked by that second claim: the first
 * lease is stale. `during` runs between the first claim and the second, so that a
 * snapshot taken there predates both.
 */
async function staleLease(c: Queryable, topic: string, group: string, during: () => Promise<void>): Promise<{ m: number; first: Claimed }> {
  const m = await send(c, topic, { n: 1 }, { key: 'a' });
  const first = await claim(c, group, 'c1', 10, { leaseTimeout: '1 second' });
  expect(first.map((x) => x.msg_id)).toEqual([m]);
  await during();
  await setClock(c, '10 seconds');
  const second = await claim(c, group, 'c1', 10);
  expect(second.map((x) => x.msg_id)).toEqual([m]);
  expect(second[0]!.lease_token).not.toBe(first[0]!.lease_token);
  await ack(c, group, second);
  return { m, first: first[0]! };
}

const settles = {
  ack: `select * from bucketq.ack($1, $2::bigint[], $3::bigint[])`,
  nack: `select * from bucketq.nack($1, $2::bigint[], $3::bigint[], array['boom'])`,
  reject: `select * from bucketq.reject($1, $2::bigint[], $3::bigint[], array['boom'])`,
} as const;

describe('settles outside READ COMMITTED', () => {
  for (const [fn, sql] of Object.entries(settles)) {
    it(`${fn} refuses REPEATABLE READ and SERIALIZABLE (an older snapshot passed a lease that had expired and been settled since) and changes nothing`, async () => {
      const c = await ctx.session();
      const rr = await ctx.session();
      for (const level of ['repeatable read', 'serializable']) {
        const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1, group: { session_timeout: '1 hour' } });
        await setClock(c, '0 seconds');
        const { m, first } = await staleLease(c, topic, group, async () => {
          await rr.query(`begin isolation level ${level}`);
          await rr.query('select 1'); // its snapshot, taken now
        });
        try {
          const err = await pgError(rr.query(sql, [group, [m], [first.lease_token]]));
          expect(err.code).toBe('BQ005');
          expect(err.message).toBe(`${fn}: runs only in READ COMMITTED transactions, and this one is ${level.toUpperCase()}`);
          expect(err.detail).toMatch(new RegExp(`Group ${group.replace('.', '\\.')}: .*Nothing was changed\\.`));
          expect(err.hint).toMatch(new RegExp(`Call ${fn}, and write the handler's effects, in a READ COMMITTED transaction`));
        } finally {
          await rr.query('rollback');
        }
        expect(await deliveries(c, group, m)).toBe(1);
        // The same call in READ COMMITTED finds the lease stale.
        const stale = await pgError(c.query(sql, [group, [m], [first.lease_token]]));
        expect(stale.code).toBe('BQ006');
        expect(await deliveries(c, group, m)).toBe(1);
      }
    });
  }

  it('an ack in READ COMMITTED inside a transaction whose earlier statements ran before the second claim sees it: stale, one delivery', async () => {
    const c = await ctx.session();
    const rc = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1, group: { session_timeout: '1 hour' } });
    const { m, first } = await staleLease(c, topic, group, async () => {
      await rc.query('begin isolation level read committed');
      await rc.query('select 1');
    });
    try {
      const err = await pgError(rc.query(settles.ack, [group, [m], [first.lease_token]]));
      expect(err.code).toBe('BQ006');
    } finally {
      await rc.query('rollback');
    }
    expect(await deliveries(c, group, m)).toBe(1);
  });
});

/**
 * A batch acked after the snapshot of `rr` was taken: its message, sent before the
 * rewind's time, must stay done. Returns the message and the time to rewind to.
 */
async function ackedAfterSnapshot(c: Queryable, rr: Queryable, topic: string, group: string, level: string): Promise<{ m: number; to: Date }> {
  const m = await send(c, topic, { n: 1 }, { key: 'a' });
  const got = await claim(c, group, 'c1', 10);
  expect(got.map((x) => x.msg_id)).toEqual([m]);
  const to = (await c.query<{ t: Date }>('select clock_timestamp() as t')).rows[0]!.t;
  await rr.query(`begin isolation level ${level}`);
  await rr.query('select 1'); // its snapshot, taken now
  await ack(c, group, got);
  return { m, to };
}

const operatorCalls = {
  rewind: `select bucketq.rewind($1, $2::timestamptz)`,
  skip_to_latest: `select bucketq.skip_to_latest($1)`,
} as const;

describe('rewind and skip_to_latest outside READ COMMITTED', () => {
  for (const [fn, sql] of Object.entries(operatorCalls)) {
    it(`${fn} refuses REPEATABLE READ and SERIALIZABLE (an older snapshot missed a batch acked since, and recorded or delivered it again) and changes nothing`, async () => {
      const c = await ctx.session();
      const rr = await ctx.session();
      for (const level of ['repeatable read', 'serializable']) {
        const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
        const { m, to } = await ackedAfterSnapshot(c, rr, topic, group, level);
        try {
          const err = await pgError(rr.query(sql, fn === 'rewind' ? [group, to] : [group]));
          expect(err.code).toBe('BQ005');
          expect(err.message).toBe(`${fn}: runs only in READ COMMITTED transactions, and this one is ${level.toUpperCase()}`);
          expect(err.detail).toMatch(new RegExp(`Group ${group.replace('.', '\\.')}: .*Nothing was changed\\.`));
          expect(err.hint).toMatch(/READ COMMITTED/);
        } finally {
          await rr.query('rollback');
        }
        expect(await claim(c, group, 'c1', 10)).toEqual([]);
        expect(await deliveries(c, group, m)).toBe(1);
      }
    });
  }

  it('rewind in READ COMMITTED inside a transaction whose earlier statements ran before the ack sees it: nothing delivered again', async () => {
    const c = await ctx.session();
    const rc = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
    const { m, to } = await ackedAfterSnapshot(c, rc, topic, group, 'read committed');
    await rc.query(operatorCalls.rewind, [group, to]);
    await rc.query('commit');
    expect(await claim(c, group, 'c1', 10)).toEqual([]);
    expect(await deliveries(c, group, m)).toBe(1);
  });

  it('skip_to_latest in READ COMMITTED inside a transaction whose earlier statements ran before the ack sees it: one delivery record', async () => {
    const c = await ctx.session();
    const rc = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
    const { m } = await ackedAfterSnapshot(c, rc, topic, group, 'read committed');
    await rc.query(operatorCalls.skip_to_latest, [group]);
    await rc.query('commit');
    expect(await deliveries(c, group, m)).toBe(1);
  });
});

const membership = async (c: Queryable, group: string) =>
  (await c.query<{ consumer_id: string; buckets: number }>(
    `select o.owner as consumer_id, count(*)::int as buckets from bucketq.bucket_owner o
       join bucketq.consumer_group g on g.group_id = o.group_id
      where g.name = $1 group by o.owner order by o.owner`, [group])).rows;

describe('the lobby and replay_dead outside READ COMMITTED', () => {
  it('leave refuses REPEATABLE READ and SERIALIZABLE (an older snapshot missed a batch acked while it waited, and handed its message out again) and changes nothing', async () => {
    const c = await ctx.session();
    const rr = await ctx.session();
    for (const level of ['repeatable read', 'serializable']) {
      const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
      const { m } = await ackedAfterSnapshot(c, rr, topic, group, level);
      const before = await membership(c, group);
      try {
        const err = await pgError(rr.query(`select bucketq.leave($1, 'c1')`, [group]));
        expect(err.code).toBe('BQ005');
        expect(err.message).toBe(`leave: runs only in READ COMMITTED transactions, and this one is ${level.toUpperCase()}`);
        expect(err.detail).toMatch(/could miss batches acked while it waited for them.*Nothing was changed\./);
        expect(err.hint).toMatch(/Call leave in a READ COMMITTED transaction/);
      } finally {
        await rr.query('rollback');
      }
      expect(await membership(c, group)).toEqual(before);
      await c.query(`select bucketq.leave($1, 'c1')`, [group]);
      await c.query(`select * from bucketq.join($1, 'c2')`, [group]);
      expect(await claim(c, group, 'c2', 10)).toEqual([]);
      expect(await deliveries(c, group, m)).toBe(1);
    }
  });

  it('leave in READ COMMITTED inside a transaction whose earlier statements ran before the ack sees it: nothing handed out again', async () => {
    const c = await ctx.session();
    const rc = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
    const { m } = await ackedAfterSnapshot(c, rc, topic, group, 'read committed');
    await rc.query(`select bucketq.leave($1, 'c1')`, [group]);
    await rc.query('commit');
    await c.query(`select * from bucketq.join($1, 'c2')`, [group]);
    expect(await claim(c, group, 'c2', 10)).toEqual([]);
    expect(await deliveries(c, group, m)).toBe(1);
  });

  const calls = {
    join: `select * from bucketq.join($1, 'c9')`,
    heartbeat: `select * from bucketq.heartbeat($1, 'c1')`,
    replay_dead: `select bucketq.replay_dead($1)`,
  } as const;
  for (const [fn, sql] of Object.entries(calls)) {
    it(`${fn} refuses REPEATABLE READ and SERIALIZABLE, and changes nothing`, async () => {
      const c = await ctx.session();
      const rr = await ctx.session();
      const { topic, group } = await topicAndGroup(c, ctx, { buckets: 2, group: { max_attempts: 1 } });
      const dead = await send(c, topic, { n: 1 }, { key: 'a' });
      expect((await nack(c, group, await claim(c, group, 'c1', 10))).map((r) => r.status)).toEqual(['dead']);
      const state = async () => ({
        members: await membership(c, group),
        seen: (await c.query(`select consumer_id, heartbeat_at from bucketq._consumer_now x join bucketq.consumer_group g using (group_id) where g.name = $1 order by consumer_id`, [group])).rows,
        dead: (await c.query(`select msg_id, replayed_at from bucketq.dead_letter x join bucketq.consumer_group g using (group_id) where g.name = $1`, [group])).rows,
      });
      const before = await state();
      expect(before.dead).toEqual([{ msg_id: String(dead), replayed_at: null }]);
      for (const level of ['repeatable read', 'serializable']) {
        await rr.query(`begin isolation level ${level}`);
        try {
          const err = await pgError(rr.query(sql, [group]));
          expect(err.code).toBe('BQ005');
          expect(err.message).toBe(`${fn}: runs only in READ COMMITTED transactions, and this one is ${level.toUpperCase()}`);
          expect(err.detail).toMatch(/Nothing was (changed|replayed)\./);
          expect(err.hint).toMatch(new RegExp(`Call ${fn} in a READ COMMITTED transaction`));
        } finally {
          await rr.query('rollback');
        }
      }
      expect(await state()).toEqual(before);
      // The same call in READ COMMITTED does its work.
      await c.query(sql, [group]);
      expect(await state()).not.toEqual(before);
    });
  }

  it('delete_group refuses REPEATABLE READ and SERIALIZABLE (an older snapshot missed the progress of a batch acked while it waited, and left it behind) and changes nothing', async () => {
    const c = await ctx.session();
    const rr = await ctx.session();
    const progressRows = async (groupId: number) =>
      (await c.query<{ n: number }>('select count(*)::int as n from bucketq.progress where group_id = $1', [groupId])).rows[0]!.n;
    for (const level of ['repeatable read', 'serializable']) {
      const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
      const groupId = (await c.query<{ id: number }>('select group_id as id from bucketq.consumer_group where name = $1', [group])).rows[0]!.id;
      await ackedAfterSnapshot(c, rr, topic, group, level);
      const before = await progressRows(groupId);
      try {
        const err = await pgError(rr.query(`select bucketq.delete_group($1, force => true)`, [group]));
        expect(err.code).toBe('BQ005');
        expect(err.message).toBe(`delete_group: runs only in READ COMMITTED transactions, and this one is ${level.toUpperCase()}`);
        expect(err.detail).toMatch(/could miss progress its batches wrote while it waited for them.*Nothing was changed\./);
        expect(err.hint).toMatch(/Call delete_group in a READ COMMITTED transaction/);
      } finally {
        await rr.query('rollback');
      }
      expect(await progressRows(groupId)).toBe(before);
      await c.query(`select bucketq.delete_group($1, force => true)`, [group]);
      expect(await progressRows(groupId)).toBe(0);
    }
  });
});
