// A session's note of idle buckets (_log_quiet, _log_quiet_save): a claim by a consumer
// of 32 buckets or more looks only at the buckets its session's last claim did not find
// idle, and at those sent to since.
// Every test lengthens the note's life to an hour (bucketq.quiet_ttl_ms), so that a
// note hiding a bucket it should not fails the test instead of expiring within a second.
import { describe, expect, it } from 'vitest';
import { ack, claim, send, topicAndGroup, useDatabase, type Queryable } from './helpers/sql.js';

const ctx = useDatabase();

async function consumerSession(): Promise<Queryable> {
  const c = await ctx.session();
  await c.query(`set bucketq.quiet_ttl_ms = 3600000`);
  return c;
}

/** What _log_quiet leaves to scan for consumer c1 now, with the session's note. */
async function toScan(c: Queryable, group: string): Promise<number[]> {
  const { rows } = await c.query(
    `select q.scan
       from bucketq.consumer_group g
      cross join lateral (select array_agg(o.bucket order by o.bucket) as b, array_agg(o.epoch order by o.bucket) as e,
                                 array_agg(o.moved_at order by o.bucket) as m
                            from bucketq.bucket_owner o where o.group_id = g.group_id and o.owner = 'c1') o
      cross join lateral bucketq._log_quiet(g, 'c1', o.b, o.e, o.m, bucketq._now()) q
      where g.name = $1`,
    [group],
  );
  return rows[0].scan;
}

/** Bucket of a key in a topic of n buckets, as send_batch routes it. */
async function bucketOf(c: Queryable, key: string, buckets: number): Promise<number> {
  const { rows } = await c.query(`select ((hashtextextended($1, 0) & 9223372036854775807) % $2)::int as b`, [key, buckets]);
  return rows[0].b;
}

describe('a session\'s note of idle buckets', () => {
  it('skips the buckets found idle, and looks again at one sent to since', async () => {
    const c = await consumerSession();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });
    expect(await claim(c, group, 'c1')).toEqual([]);
    expect(await toScan(c, group)).toEqual([]); // all 64 idle: nothing to look at

    const m1 = await send(c, topic, { m: 1 }, { key: 'a' });
    expect(await toScan(c, group)).toEqual([await bucketOf(c, 'a', 64)]);
    const [got] = await claim(c, group, 'c1');
    expect(got!.msg_id).toBe(m1);
    await ack(c, group, [got!]);
    expect(await claim(c, group, 'c1')).toEqual([]);
  });

  it('a message of a transaction in progress at the note\'s snapshot is delivered once it commits', async () => {
    const c = await consumerSession();
    const p1 = await ctx.session();
    const p2 = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });

    await p1.query('begin');
    const m1 = await send(p1, topic, { m: 1 }, { key: 'a' });
    // p2 ends after p1 took its id: every snapshot from here on lists p1 as in progress
    // (below its xmax), so only the probe of the note's in-progress list finds m1.
    const m2 = await send(p2, topic, { m: 2 }, { key: 'b' });
    const got = await claim(c, group, 'c1');
    expect(got.map((m) => m.msg_id)).toEqual([m2]);
    await ack(c, group, got);
    expect(await claim(c, group, 'c1')).toEqual([]); // the note: every bucket idle, p1 in progress
    const { rows } = await c.query(`select current_setting('bucketq.quiet_' || group_id) as note from bucketq.consumer_group where name = $1`, [group]);
    const { rows: x } = await p1.query(`select pg_current_xact_id()::text as xid`);
    expect(rows[0].note.split(';')[1].split(':')[2].split(',')).toContain(x[0].xid);
    expect(await toScan(c, group)).toEqual([]);

    await p1.query('commit');
    const [late] = await claim(c, group, 'c1');
    expect(late?.msg_id).toBe(m1);
  });

  it('a bucket whose batch was still leased is looked at again once it is acked (the rest of its window)', async () => {
    const c = await consumerSession();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });
    const ids = [];
    for (let i = 1; i <= 3; i++) ids.push(await send(c, topic, { m: i }, { key: 'a' }));
    const [first] = await claim(c, group, 'c1', 1);
    expect(first!.msg_id).toBe(ids[0]);
    expect(await claim(c, group, 'c1')).toEqual([]); // its batch is live: nothing to hand out
    expect(await toScan(c, group)).toEqual([await bucketOf(c, 'a', 64)]);
    await ack(c, group, [first!]);
    const [second] = await claim(c, group, 'c1', 1);
    expect(second?.msg_id).toBe(ids[1]);
  });

  it('claim_locked: a bucket whose locked batch was in progress is looked at again after it commits', async () => {
    const c = await consumerSession();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });
    const ids = [];
    for (let i = 1; i <= 3; i++) ids.push(await send(c, topic, { m: i }, { key: 'a' }));
    const locked = async (max: number) =>
      (await c.query(`select msg_id from bucketq.claim_locked(group_name => $1, consumer_id => 'c1', max_messages => $2)`, [group, max])).rows.map((r) => Number(r.msg_id));
    await c.query('begin');
    expect(await locked(1)).toEqual([ids[0]]);
    expect(await locked(10)).toEqual([]); // its batch is in progress: this transaction's
    await c.query(`select * from bucketq.ack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => null, consumer_id => 'c1')`, [group, [ids[0]]]);
    await c.query('commit');
    await c.query('begin');
    expect(await locked(1)).toEqual([ids[1]]);
    await c.query('commit');
  });

  it('rewind (epochs bumped, buckets moved) is seen at once', async () => {
    const c = await consumerSession();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });
    const m1 = await send(c, topic, { m: 1 }, { key: 'a' });
    const got = await claim(c, group, 'c1');
    await ack(c, group, got);
    expect(await claim(c, group, 'c1')).toEqual([]);
    expect(await toScan(c, group)).toEqual([]);

    await c.query(`select bucketq.rewind($1, now() - interval '1 hour')`, [group]);
    expect((await toScan(c, group)).length).toBe(64);
    const [again] = await claim(c, group, 'c1');
    expect(again?.msg_id).toBe(m1);
  });

  it('is not kept for a consumer of fewer than 32 buckets (looking at each costs no more)', async () => {
    const c = await consumerSession();
    const { group } = await topicAndGroup(c, ctx, { buckets: 16 });
    expect(await claim(c, group, 'c1')).toEqual([]);
    const { rows } = await c.query(`select current_setting('bucketq.quiet_' || group_id, true) as note from bucketq.consumer_group where name = $1`, [group]);
    expect(rows[0].note ?? '').toBe('');
  });

  it('is the session\'s own, per group and consumer', async () => {
    const c = await consumerSession();
    const other = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 64 });
    expect(await claim(c, group, 'c1')).toEqual([]);
    expect(await toScan(c, group)).toEqual([]);
    expect((await toScan(other, group)).length).toBe(64); // another session has no note

    // A note of another consumer of the group is not used: c2 takes half the buckets
    // and claims on this session, which notes its buckets instead.
    await c.query(`select * from bucketq.join($1, 'c2')`, [group]);
    await c.query(`select * from bucketq.heartbeat($1, 'c1')`, [group]);
    await c.query(`select * from bucketq.heartbeat($1, 'c2')`, [group]);
    const { rows: c2owns } = await c.query(`select count(*)::int as n from bucketq.bucket_owner o join bucketq.consumer_group g using (group_id) where g.name = $1 and o.owner = 'c2'`, [group]);
    expect(c2owns[0].n).toBeGreaterThan(0);
    expect(await claim(c, group, 'c2')).toEqual([]);
    const owned = await c.query(`select count(*)::int as n from bucketq.bucket_owner o join bucketq.consumer_group g using (group_id) where g.name = $1 and o.owner = 'c1'`, [group]);
    expect((await toScan(c, group)).length).toBe(owned.rows[0].n);

    // Nor a note that is not one.
    await c.query(`select set_config('bucketq.quiet_' || group_id, 'garbage;1', false) from bucketq.consumer_group where name = $1`, [group]);
    expect((await toScan(c, group)).length).toBe(owned.rows[0].n);
    const m = await send(c, topic, { m: 1 });
    const got = [...(await claim(c, group, 'c1')), ...(await claim(c, group, 'c2'))];
    expect(got.map((x) => x.msg_id)).toEqual([m]);
  });
});
