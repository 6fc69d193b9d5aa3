// Settles (ack, nack, reject) outside READ COMMITTED. Their checks (the batch is still
// its bucket's latest, its lease unexpired, its claimer the owner) must see what
// committed after the caller's snapshot, and the log's rows are never updated, so an
// older snapshot meets no serialization failure there: they refuse any other level
// (sql/functions/_raise_not_read_committed.sql). Claims: test/sql-claim-buckets.test.ts.
// Real concurrent sessions.
import { describe, expect, it } from 'vitest';
import { ack, claim, pgError, send, setClock, topicAndGroup, useDatabase, type Claimed, type Queryable } from './helpers/sql.js';

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
