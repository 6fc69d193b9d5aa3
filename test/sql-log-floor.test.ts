// The log's floor (topic.log_from, migration 27): maintain() raises it past the
// partitions every group has passed, claims then no longer read them, and no message is
// lost on the way: producers in flight hold it back, a transaction that began before it
// moved sends at the floor, a group that lags keeps its partitions read. Real sessions;
// time moves with the session clock (bucketq.clock_offset) of the maintaining session.
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ack, claim, flushStats, send, sendBatch, setClock, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();
const opened: pg.Client[] = [];
async function session(): Promise<pg.Client> {
  const c = await ctx.session();
  opened.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.query('rollback').catch(() => {})));
});

interface Action {
  topic: string;
  action: string;
  detail: string;
}

/** maintain() as of `offset` from now, this topic's actions. */
async function maintainAt(c: pg.Client, topic: string, offset: string): Promise<Action[]> {
  await setClock(c, offset);
  const { rows } = await c.query<Action>('select topic, action, detail from bucketq.maintain()');
  await setClock(c, '');
  return rows.filter((r) => r.topic === topic);
}

/** The topic's floor and its groups' copies, in ms since the epoch (-Infinity: none yet). */
async function floors(c: pg.Client, topic: string) {
  const { rows } = await c.query(
    `select (extract(epoch from t.log_from) * 1000)::float8 as topic,
            array_agg((extract(epoch from g.log_from) * 1000)::float8 order by g.name) as groups
       from bucketq.topic t left join bucketq.consumer_group g using (topic_id)
      where t.name = $1 group by t.log_from`,
    [topic],
  );
  return { topic: Number(rows[0].topic), groups: (rows[0].groups as (string | number)[]).map(Number) };
}

/** The hourly topic's first partition, where everything sent now lands. */
async function firstPartition(c: pg.Client, topic: string) {
  const { rows } = await c.query(
    `select p.message_rel, p.upper_bound from bucketq.log_partition p join bucketq.topic t using (topic_id)
      where t.name = $1 order by p.lower_bound limit 1`,
    [topic],
  );
  return rows[0] as { message_rel: string; upper_bound: Date };
}

/** Index and sequential scans of a partition (and its indexes) so far. */
async function scansOf(observer: pg.Client, sessions: pg.Client[], rel: string): Promise<number> {
  await flushStats(observer, sessions);
  const { rows } = await observer.query(
    `select coalesce(idx_scan, 0) + coalesce(seq_scan, 0) as n from pg_stat_user_tables where schemaname = 'bucketq' and relname = $1`,
    [rel],
  );
  return Number(rows[0].n);
}

/** A topic of hourly partitions with groups (each joined by consumer 'c'), from 'earliest'. */
async function hourlyTopic(c: pg.Client, groups: string[]): Promise<{ topic: string; groups: string[] }> {
  const topic = ctx.unique('floor');
  await c.query(`select bucketq.create_topic($1, 4, retention => '1 day', partition_interval => '1 hour')`, [topic]);
  const names = groups.map((g) => `${topic}.${g}`);
  for (const g of names) {
    await c.query(`select bucketq.create_group($1, $2, 'earliest')`, [g, topic]);
    await c.query(`select * from bucketq.join($1, 'c')`, [g]);
  }
  return { topic, groups: names };
}

async function drain(c: pg.Client, group: string): Promise<number[]> {
  const ids: number[] = [];
  for (;;) {
    await c.query(`select * from bucketq.heartbeat($1, 'c')`, [group]);
    const got = await claim(c, group, 'c', 500, { maxPerKey: 500 });
    if (got.length === 0) return ids;
    ids.push(...got.map((m) => m.msg_id));
    await ack(c, group, got);
  }
}

describe('the log floor', () => {
  it('rises past the partitions every group has passed; claims then read none of them, and nothing sent since is missed', async () => {
    const admin = await session();
    const worker = await session();
    const { topic, groups: [g] } = await hourlyTopic(admin, ['g']);
    const sent = await sendBatch(admin, topic, Array.from({ length: 20 }, (_, i) => ({ i })), { keys: Array.from({ length: 20 }, (_, i) => `k${i % 5}`) });
    expect((await drain(worker, g!)).sort((a, b) => a - b)).toEqual(sent);
    const first = await firstPartition(admin, topic);

    // Before: a claim reads the first partition (every bucket's log, in every partition).
    let before = await scansOf(admin, [worker], first.message_rel);
    await drain(worker, g!);
    expect(await scansOf(admin, [worker], first.message_rel), 'a claim below the floor reads the partition').toBeGreaterThan(before);

    // Two hours on, the first partition is over and passed by the group: the floor
    // moves to its end (and past the next one, empty and over too).
    const actions = await maintainAt(admin, topic, '2 hours');
    const raised = actions.find((a) => a.action === 'raised_log_floor');
    expect(raised, JSON.stringify(actions)).toBeDefined();
    const f = await floors(admin, topic);
    expect(f.topic).toBeGreaterThanOrEqual(first.upper_bound.getTime());
    expect(f.groups).toEqual([f.topic]);
    const { rows: view } = await admin.query('select partitions::int, partitions_read::int from bucketq.topics where name = $1', [topic]);
    expect(view[0].partitions_read, JSON.stringify(view)).toBeLessThan(view[0].partitions);
    expect(view[0].partitions_read).toBeGreaterThan(0);

    // After: sends on the real clock (before the floor) land at the floor, and claims
    // taking them one at a time (the rest of each window read every time) leave the
    // first partition alone, and deliver them all.
    before = await scansOf(admin, [worker], first.message_rel);
    const late = await sendBatch(admin, topic, Array.from({ length: 6 }, (_, i) => ({ late: i })), { keys: ['k1', 'k2', 'k1', 'k3', 'k2', 'k1'] });
    const { rows } = await admin.query('select distinct sent_at from bucketq.message where id = any($1::bigint[])', [late]);
    expect(rows.map((r) => (r.sent_at as Date).getTime())).toEqual([f.topic]);
    const got: number[] = [];
    for (let i = 0; i < 10 && got.length < late.length; i++) {
      const one = await claim(worker, g!, 'c', 1);
      got.push(...one.map((m) => m.msg_id));
      if (one.length > 0) await ack(worker, g!, one);
    }
    expect(got.sort((a, b) => a - b)).toEqual(late);
    expect(await drain(worker, g!)).toEqual([]);
    expect(await scansOf(admin, [worker], first.message_rel), 'claims above the floor do not open the partition').toBe(before);
  });

  it('a group that has not passed a partition holds the floor below it; once it has, the floor rises', async () => {
    const admin = await session();
    const worker = await session();
    const { topic, groups: [fast, slow] } = await hourlyTopic(admin, ['fast', 'slow']);
    const sent = await sendBatch(admin, topic, [{ a: 1 }, { a: 2 }, { a: 3 }], { keys: ['x', 'y', 'x'] });
    expect(await drain(worker, fast!)).toHaveLength(3);
    // slow takes one batch and leaves it under way (a lease): not passed yet
    await admin.query(`select * from bucketq.heartbeat($1, 'c')`, [slow]);
    const held = await claim(worker, slow!, 'c', 1);
    expect(held).toHaveLength(1);

    const actions = await maintainAt(admin, topic, '2 hours');
    expect(actions.map((a) => a.action)).not.toContain('raised_log_floor');
    expect((await floors(admin, topic)).topic).toBe(-Infinity);

    await ack(worker, slow!, held);
    const rest = await drain(worker, slow!);
    expect([held[0]!.msg_id, ...rest].sort((a, b) => a - b)).toEqual(sent);
    expect((await maintainAt(admin, topic, '2 hours')).map((a) => a.action)).toContain('raised_log_floor');
  });

  it('a producer in flight holds the floor back (maintain waits at most 500 ms); its message is delivered', async () => {
    const admin = await session();
    const worker = await session();
    const producer = await session();
    const { topic, groups: [g] } = await hourlyTopic(admin, ['g']);
    await producer.query('begin');
    const inFlight = await send(producer, topic, { inFlight: true }, { key: 'k' });
    const t0 = Date.now();
    const actions = await maintainAt(admin, topic, '2 hours');
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(actions).toContainEqual({ topic, action: 'kept_log_floor', detail: expect.stringContaining('producers in flight') });
    expect((await floors(admin, topic)).topic).toBe(-Infinity);
    await producer.query('commit');
    expect(await drain(worker, g!)).toEqual([inFlight]);
    expect((await maintainAt(admin, topic, '2 hours')).map((a) => a.action)).toContain('raised_log_floor');
  });

  it('a transaction that began before the floor rose sends at the floor; its message is delivered', async () => {
    const admin = await session();
    const worker = await session();
    const producer = await session();
    const { topic, groups: [g] } = await hourlyTopic(admin, ['g']);
    await producer.query('begin');
    const { rows: started } = await producer.query('select now() as t');
    expect((await maintainAt(admin, topic, '2 hours')).map((a) => a.action)).toContain('raised_log_floor');
    const f = await floors(admin, topic);
    expect(f.topic).toBeGreaterThan((started[0].t as Date).getTime());
    const id = await send(producer, topic, { began: 'before' }, { key: 'k' });
    await producer.query('commit');
    const { rows } = await admin.query('select sent_at from bucketq.message where id = $1', [id]);
    expect((rows[0].sent_at as Date).getTime()).toBe(f.topic);
    expect(await drain(worker, g!)).toEqual([id]);
  });

  it('a REPEATABLE READ producer whose snapshot predates the floor gets a serialization failure (40001), and its retry lands above', async () => {
    const admin = await session();
    const worker = await session();
    const producer = await session();
    const { topic, groups: [g] } = await hourlyTopic(admin, ['g']);
    await producer.query('begin isolation level repeatable read');
    await producer.query('select 1'); // the snapshot
    expect((await maintainAt(admin, topic, '2 hours')).map((a) => a.action)).toContain('raised_log_floor');
    const err = await send(producer, topic, { rr: 1 }, { key: 'k' }).then(() => null, (e: { code?: string }) => e);
    expect(err?.code).toBe('40001');
    await producer.query('rollback');
    const id = await send(producer, topic, { rr: 2 }, { key: 'k' });
    expect(await drain(worker, g!)).toEqual([id]);
  });

  it('a group created after the floor rose starts from it', async () => {
    const admin = await session();
    const { topic } = await hourlyTopic(admin, ['g']);
    expect((await maintainAt(admin, topic, '2 hours')).map((a) => a.action)).toContain('raised_log_floor');
    await admin.query(`select bucketq.create_group($1, $2, 'earliest')`, [`${topic}.late`, topic]);
    const f = await floors(admin, topic);
    expect(f.groups).toEqual([f.topic, f.topic]);
  });
});
