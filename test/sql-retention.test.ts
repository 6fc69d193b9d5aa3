// Retention and maintenance at the SQL level: maintain() keeps partitions some group still
// needs, drops them (whole tables) once every group is done, creates partitions ahead,
// prunes idempotency keys, stays bounded over many cycles, and is safe to run concurrently.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, nack, send, sendBatch, setClock, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

interface Action {
  topic: string;
  action: string;
  detail: string;
}

async function maintain(c: pg.Client, offset: string): Promise<Action[]> {
  await setClock(c, offset);
  const { rows } = await c.query<Action>('select topic, action, detail from bucketq.maintain()');
  return rows;
}

async function partitions(c: pg.Client, topic: string) {
  const { rows } = await c.query(
    `select p.message_rel, p.delivery_rel, p.lower_bound, p.upper_bound,
            to_regclass('bucketq.' || quote_ident(p.message_rel)) is not null as message_exists,
            to_regclass('bucketq.' || quote_ident(p.delivery_rel)) is not null as delivery_exists
       from bucketq.log_partition p join bucketq.topic t using (topic_id) where t.name = $1 order by p.lower_bound`,
    [topic],
  );
  return rows as { message_rel: string; delivery_rel: string; lower_bound: Date; upper_bound: Date; message_exists: boolean; delivery_exists: boolean }[];
}

async function relationExists(c: pg.Client, name: string): Promise<boolean> {
  const { rows } = await c.query(`select count(*)::int as n from pg_class where relnamespace = 'bucketq'::regnamespace and relname = $1`, [name]);
  return rows[0].n === 1;
}

async function counts(c: pg.Client, topic: string) {
  const { rows } = await c.query(
    `select (select count(*)::int from bucketq.message m where m.topic_id = t.topic_id) as messages,
            (select count(*)::int from bucketq.deliveries d where d.topic_id = t.topic_id) as deliveries,
            (select count(*)::int from bucketq.dead_letter d where d.topic_id = t.topic_id) as dead_letters,
            (select count(*)::int from bucketq.idempotency i where i.topic_id = t.topic_id) as idempotency
       from bucketq.topic t where t.name = $1`,
    [topic],
  );
  return rows[0] as { messages: number; deliveries: number; dead_letters: number; idempotency: number };
}

async function hourlyTopic(c: pg.Client, groups: { name: string; opts?: string }[]): Promise<string> {
  const topic = ctx.unique('t');
  await c.query(`select bucketq.create_topic($1, 16, retention => '1 hour', partition_interval => '1 hour')`, [topic]);
  for (const g of groups) {
    await c.query(`select bucketq.create_group($1, $2, 'earliest' ${g.opts ?? ''})`, [g.name, topic]);
    await c.query(`select * from bucketq.join($1, 'c')`, [g.name]);
  }
  return topic;
}

async function drain(c: pg.Client, group: string): Promise<number> {
  let n = 0;
  for (;;) {
    const got = await claim(c, group, 'c', 500);
    if (got.length === 0) return n;
    n += got.length;
    await ack(c, group, got);
  }
}

describe('maintain() and retention', () => {
  it('keeps an expired partition until every group is done with it, then drops it whole; creates partitions ahead', async () => {
    const s = await ctx.session();
    const m = await ctx.session();
    const [g1, g2] = [ctx.unique('g'), ctx.unique('g')];
    const topic = await hourlyTopic(s, [{ name: g1, opts: ', max_attempts => 1' }, { name: g2 }]);
    const initial = await partitions(s, topic);
    expect(initial).toHaveLength(2); // the current hour and 1 ahead (an hour of slack)
    const ids = await sendBatch(s, topic, Array.from({ length: 20 }, (_, i) => ({ i })), { keys: Array.from({ length: 20 }, (_, i) => `k${i % 4}`) });
    const { rows: home } = await s.query(`select c.relname as rel from bucketq.message x join pg_class c on c.oid = x.tableoid where x.id = $1`, [ids[0]]);
    const first = initial[0]!;
    expect(home[0].rel).toBe(first.message_rel);

    // g1 is done (19 acked, one dead-lettered with skip); g2 has not started
    const [doomed] = await claim(s, g1, 'c', 1);
    await nack(s, g1, [doomed!]);
    expect(await drain(s, g1)).toBe(19);

    const a1 = (await maintain(m, '5 hours')).filter((a) => a.topic === topic);
    expect(a1).toContainEqual({ topic, action: 'kept_partition', detail: expect.stringContaining(first.message_rel) });
    expect(a1.some((a) => a.action === 'created_partitions')).toBe(true);
    expect(a1.filter((a) => a.action === 'dropped_partition').map((a) => a.detail).sort()).toEqual(initial.slice(1).map((p) => p.message_rel).sort());
    expect(await relationExists(s, first.message_rel)).toBe(true);
    expect(await counts(s, topic)).toMatchObject({ messages: 20, deliveries: 19, dead_letters: 1 });
    for (const p of initial.slice(1)) {
      expect(await relationExists(s, p.message_rel)).toBe(false);
      expect(await relationExists(s, p.delivery_rel)).toBe(false);
    }

    // Still kept while g2 has one message in flight (and the rest of its key behind it)
    const heads = await claim(s, g2, 'c', 100); // one head per key
    expect(heads).toHaveLength(4);
    const held = heads.pop()!;
    await ack(s, g2, heads);
    expect(await drain(s, g2)).toBe(12); // the other three keys, 4 more each
    const a2 = (await maintain(m, '5 hours')).filter((a) => a.topic === topic);
    expect(a2.map((a) => a.action)).toContain('kept_partition');
    expect(await relationExists(s, first.message_rel)).toBe(true);

    await ack(s, g2, [held]);
    expect(await drain(s, g2)).toBe(4);
    const a3 = (await maintain(m, '5 hours')).filter((a) => a.topic === topic);
    expect(a3).toContainEqual({ topic, action: 'dropped_partition', detail: first.message_rel });
    expect(await relationExists(s, first.message_rel)).toBe(false);
    expect(await relationExists(s, first.delivery_rel)).toBe(false);
    expect(await counts(s, topic)).toMatchObject({ messages: 0, deliveries: 0, dead_letters: 0 });

    // Partitions now run from the shifted hour to 1 ahead, all of them real tables
    const now = await partitions(s, topic);
    const { rows: binned } = await m.query(`select date_bin('1 hour', bucketq._now(), timestamptz '2000-01-01 00:00:00+00') as lo`);
    expect(now.map((p) => p.lower_bound.getTime())).toEqual([0, 1].map((i) => (binned[0].lo as Date).getTime() + i * 3_600_000));
    expect(now.every((p) => p.message_exists && p.delivery_exists)).toBe(true);

    // Retention has dropped the topic's first hour: a rewind to before it is refused
    await expectBqError(m.query(`select bucketq.rewind($1, bucketq._now() - interval '6 hours')`, [g2]), 'BQ005', /before the oldest retained message time/);
  });

  it('a rewind to before the topic existed loses nothing and is not refused, also across a partition boundary', async () => {
    const s = await ctx.session();
    const g = ctx.unique('g');
    const topic = await hourlyTopic(s, [{ name: g }]);
    await sendBatch(s, topic, [{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(await drain(s, g)).toBe(3);
    // the topic's first partition starts at the top of the hour, after this time
    const { rows } = await s.query(`select bucketq.rewind($1, now() - interval '400 days') as n`, [g]);
    expect(rows[0].n).toBe(3);
    expect(await drain(s, g)).toBe(3);
  });

  it('keeps a partition whose message is dead and blocking its key (on_exhausted = block)', async () => {
    const s = await ctx.session();
    const m = await ctx.session();
    const g = ctx.unique('g');
    const topic = await hourlyTopic(s, [{ name: g, opts: `, max_attempts => 1, on_exhausted => 'block'` }]);
    const [p0] = await partitions(s, topic);
    await send(s, topic, { x: 1 }, { key: 'k' });
    await nack(s, g, await claim(s, g, 'c', 10));
    const actions = (await maintain(m, '3 hours')).filter((a) => a.topic === topic);
    expect(actions).toContainEqual({ topic, action: 'kept_partition', detail: expect.stringContaining(p0!.message_rel) });
    expect(await counts(s, topic)).toMatchObject({ messages: 1, dead_letters: 1 });
  });

  it('prunes idempotency keys older than the retention, not younger ones', async () => {
    const s = await ctx.session();
    const m = await ctx.session();
    const topic = await hourlyTopic(s, [{ name: ctx.unique('g') }]);
    const id = await send(s, topic, { x: 1 }, { idempotencyKey: 'order-1' });
    expect(await send(s, topic, { x: 2 }, { idempotencyKey: 'order-1' })).toBe(id);

    const early = (await maintain(m, '30 minutes')).filter((a) => a.topic === topic && a.action === 'pruned_idempotency_keys');
    expect(early).toEqual([]);
    expect(await send(s, topic, { x: 3 }, { idempotencyKey: 'order-1' })).toBe(id);

    const late = (await maintain(m, '3 hours')).filter((a) => a.topic === topic && a.action === 'pruned_idempotency_keys');
    expect(late).toEqual([{ topic, action: 'pruned_idempotency_keys', detail: '1' }]);
    expect((await counts(s, topic)).idempotency).toBe(0);
    await setClock(s, '3 hours');
    const fresh = await send(s, topic, { x: 4 }, { idempotencyKey: 'order-1' });
    expect(fresh).not.toBe(id);
  });

  it('repeated cycles of send, consume, clock +1 hour, maintain keep partitions and relation sizes bounded', async () => {
    const s = await ctx.session();
    const m = await ctx.session();
    const g = ctx.unique('g');
    const topic = await hourlyTopic(s, [{ name: g, opts: `, session_timeout => '1 hour'` }]);
    const perCycle: { partitions: number; relations: number; bytes: number; messages: number }[] = [];
    for (let hour = 0; hour < 14; hour++) {
      const offset = `${hour} hours`;
      await setClock(s, offset);
      await s.query(`select * from bucketq.heartbeat($1, 'c')`, [g]);
      await sendBatch(s, topic, Array.from({ length: 200 }, (_, i) => ({ hour, i, pad: 'p'.repeat(100) })), {
        keys: Array.from({ length: 200 }, (_, i) => `key-${i % 20}`),
        idempotencyKeys: Array.from({ length: 200 }, (_, i) => `h${hour}-${i}`),
      });
      expect(await drain(s, g)).toBe(200);
      await maintain(m, offset);
      // autovacuum would not wake up within a test: vacuum the hot tables as it would
      await m.query('vacuum bucketq.inbox, bucketq.bucket_owner, bucketq.consumer, bucketq.topic_key, bucketq.idempotency, bucketq.dead_letter, bucketq.log_partition');
      const { rows } = await m.query(
        `select (select count(*)::int from bucketq.log_partition p join bucketq.topic t using (topic_id) where t.name = $1) as partitions,
                (select count(*)::int from pg_class where relnamespace = 'bucketq'::regnamespace) as relations,
                (select sum(pg_total_relation_size(oid))::bigint from pg_class where relnamespace = 'bucketq'::regnamespace and relkind = 'r') as bytes,
                (select count(*)::int from bucketq.message x join bucketq.topic t using (topic_id) where t.name = $1) as messages`,
        [topic],
      );
      perCycle.push({ ...rows[0], bytes: Number(rows[0].bytes) });
    }
    const steady = perCycle.slice(4); // after the other tests' topics settled too
    // one hour kept by retention, the current one, one ahead
    expect(Math.max(...steady.map((c) => c.partitions))).toBeLessThanOrEqual(4);
    expect(Math.max(...steady.map((c) => c.messages))).toBeLessThanOrEqual(400);
    expect(new Set(steady.map((c) => c.relations)).size, JSON.stringify(perCycle)).toBe(1);
    const firstBytes = steady[0]!.bytes;
    const lastBytes = steady[steady.length - 1]!.bytes;
    expect(lastBytes, JSON.stringify(perCycle.map((c) => c.bytes))).toBeLessThanOrEqual(firstBytes * 1.2);
  });

  it('4 concurrent maintain() calls all succeed and each partition is dropped exactly once', async () => {
    const s = await ctx.session();
    const sessions = await Promise.all([0, 1, 2, 3].map(() => ctx.session()));
    const producer = await ctx.session();
    const g = ctx.unique('g');
    const topic = await hourlyTopic(s, [{ name: g }]);
    const before = await partitions(s, topic);
    await send(s, topic, { x: 1 });
    expect(await drain(s, g)).toBe(1);
    await setClock(producer, '7 hours');

    const [results] = await Promise.all([
      Promise.all(sessions.map((c) => maintain(c, '7 hours'))),
      // a producer at the new time while maintenance runs (its partition may be created by any caller)
      (async () => {
        for (let i = 0; i < 20; i++) {
          await send(producer, topic, { during: i }); // never fails for want of a partition
        }
      })(),
    ]);
    const dropped = results.flat().filter((a) => a.topic === topic && a.action === 'dropped_partition').map((a) => a.detail);
    expect(dropped.sort()).toEqual(before.map((p) => p.message_rel).sort());
    expect(new Set(dropped).size).toBe(dropped.length);
    // The partitions ahead are made once: by one of the maintain() calls, or by the
    // producer's first send if it got there first (a send creates a missing partition).
    expect(results.flat().filter((a) => a.topic === topic && a.action === 'created_partitions').length).toBeLessThanOrEqual(1);
    const after = await partitions(s, topic);
    expect(after).toHaveLength(2);
    expect(after.every((p) => p.message_exists && p.delivery_exists)).toBe(true);
  });

  it('a send creates its partition when maintain() has not run for longer than the partitions ahead', async () => {
    const c = await ctx.session();
    const topic = ctx.unique('t');
    await c.query(`select bucketq.create_topic($1, partition_interval => '1 hour', retention => '1 hour')`, [topic]);
    await setClock(c, '30 hours'); // far past the partition made ahead
    const id = await send(c, topic, { late: true });
    const { rows } = await c.query('select sent_at from bucketq.message where id = $1', [id]);
    expect(rows).toHaveLength(1);
    expect((await partitions(c, topic)).some((p) => p.lower_bound <= rows[0].sent_at && p.upper_bound > rows[0].sent_at)).toBe(true);
  });

  it('log partitions (made with the topic, ahead by maintain(), by a send) and progress get no insert-triggered vacuum', async () => {
    // Append-only: under a pinned xmin horizon each such vacuum would reread the whole
    // table without marking a page all-visible (migration 33).
    const c = await ctx.session();
    const topic = await hourlyTopic(c, []);
    await maintain(c, '3 hours');
    await setClock(c, '30 hours');
    await send(c, topic, { late: true });
    const { rows } = await c.query<{ message_rel: string; options: string[] | null; toast_options: string[] | null }>(
      `select p.message_rel, r.reloptions as options, t.reloptions as toast_options
         from bucketq.log_partition p join bucketq.topic x using (topic_id)
         join pg_class r on r.oid = ('bucketq.' || quote_ident(p.message_rel))::regclass
         left join pg_class t on t.oid = r.reltoastrelid
        where x.name = $1`,
      [topic],
    );
    expect(rows.length).toBeGreaterThanOrEqual(4); // at creation, 1 ahead; 3 hours on; the send's own
    for (const r of rows) {
      expect(r.options, r.message_rel).toContain('autovacuum_vacuum_insert_threshold=-1');
      expect(r.toast_options, r.message_rel).toContain('autovacuum_vacuum_insert_threshold=-1');
    }
    const { rows: progress } = await c.query(`select reloptions from pg_class where oid = 'bucketq.progress'::regclass`);
    expect(progress[0].reloptions).toContain('autovacuum_vacuum_insert_threshold=-1');
  });

  it("makes a daily topic's next partition only in the day's last hour (claims set up no empty partition before then)", async () => {
    const c = await ctx.session();
    const topic = ctx.unique('t');
    // The session's clock at a given UTC time of today.
    const at = async (time: string) => {
      const { rows } = await c.query<{ o: string }>(
        `select ((date_trunc('day', now() at time zone 'UTC') + $1::interval) at time zone 'UTC' - now())::text as o`,
        [time],
      );
      await setClock(c, rows[0]!.o);
    };
    const day = async () => {
      const { rows } = await c.query<{ d: Date }>(`select date_trunc('day', bucketq._now() at time zone 'UTC') at time zone 'UTC' as d`);
      return rows[0]!.d.getTime();
    };
    const hours = (ps: { lower_bound: Date; upper_bound: Date }[], d: number) =>
      ps.map((p) => [(p.lower_bound.getTime() - d) / 3_600_000, (p.upper_bound.getTime() - d) / 3_600_000]);

    await at('12 hours');
    await c.query(`select bucketq.create_topic($1, partition_interval => '1 day', retention => '1 day')`, [topic]);
    const d = await day();
    expect(hours(await partitions(c, topic), d)).toEqual([[0, 24]]);
    await at('22 hours 59 minutes');
    expect((await c.query('select * from bucketq.maintain()')).rows.filter((r) => r.topic === topic)).toEqual([]);
    expect(hours(await partitions(c, topic), d)).toEqual([[0, 24]]);

    await at('23 hours');
    const made = (await c.query('select * from bucketq.maintain()')).rows.filter((r) => r.topic === topic);
    expect(made.map((r) => r.action)).toEqual(['created_partitions']);
    expect(hours(await partitions(c, topic), d)).toEqual([[0, 24], [24, 48]]);

    // An hourly topic keeps one ahead at any time of the hour; a topic of 15 minutes, three.
    const hourly = ctx.unique('t');
    const quarter = ctx.unique('t');
    await at('10 hours');
    await c.query(`select bucketq.create_topic($1, partition_interval => '1 hour', retention => '1 hour')`, [hourly]);
    await c.query(`select bucketq.create_topic($1, partition_interval => '15 minutes', retention => '1 hour')`, [quarter]);
    expect(hours(await partitions(c, hourly), d)).toEqual([[10, 11], [11, 12]]);
    expect(hours(await partitions(c, quarter), d)).toEqual([[10, 10.25], [10.25, 10.5], [10.5, 10.75], [10.75, 11]]);
  });

  it('maintain(wait => false) returns at once while another maintain() runs', async () => {
    const a = await ctx.session();
    const b = await ctx.session();
    await a.query('begin');
    await a.query('select * from bucketq.maintain()');
    const { rows } = await b.query('select * from bucketq.maintain(wait => false)'); // would block with wait => true
    expect(rows).toEqual([]);
    await a.query('commit');
  });
});
