// Heartbeats are appended (migration 39): a heartbeat inserts a row into the part of
// bucketq.consumer_beat of its five minutes and only locks the consumer's row, so a
// pinned xmin horizon gives every claim's and settle's lookup of that row nothing to step
// over. maintain() empties the part of the five minutes before by TRUNCATE, in the second
// half of the current five, after copying the newest beat of each consumer that has no
// newer one to its row: no consumer's heartbeat moves back.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, flushStats, pidOf, send, setClock, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

async function heartbeat(c: pg.Client, group: string, consumer: string): Promise<void> {
  await c.query(`select * from bucketq.heartbeat($1, $2)`, [group, consumer]);
}

/** The clock offset (seconds) that puts bucketq._now() at `phase` seconds into a five-minute period `periods` ahead of the current one. */
async function offsetTo(c: pg.Client, periods: number, phase: number): Promise<number> {
  const { rows } = await c.query<{ now: string }>(`select extract(epoch from now())::float8 as now`);
  const now = Number(rows[0]!.now);
  return (Math.floor(now / 300) + periods) * 300 + phase - now;
}

/** A topic of `buckets` and a group with a 10-minute session timeout, which `consumers` join with c's clock at `phase` seconds into the period `periods` ahead. */
async function joinedAt(c: pg.Client, buckets: number, periods: number, phase: number, consumers: string[]): Promise<{ topic: string; group: string }> {
  const { topic, group } = await topicAndGroup(c, ctx, { buckets, group: { session_timeout: '10 minutes' }, consumer: null });
  await setClock(c, `${await offsetTo(c, periods, phase)} seconds`);
  for (const id of consumers) await c.query(`select * from bucketq.join($1, $2)`, [group, id]);
  return { topic, group };
}

async function beatRotations(c: pg.Client): Promise<{ action: string; detail: string }[]> {
  const { rows } = await c.query(`select action, detail from bucketq.maintain() where action like '%consumer_beats'`);
  return rows;
}

/** The consumer's row as stored, and its heartbeat now (bucketq._consumer_now), as seconds since the epoch. */
async function beats(c: pg.Client, group: string, consumer: string): Promise<{ row: number; now: number; parts: number }> {
  const { rows } = await c.query(
    `select extract(epoch from c.heartbeat_at)::float8 as row, extract(epoch from n.heartbeat_at)::float8 as now,
            (select count(*)::int from bucketq.consumer_beat b where b.group_id = c.group_id and b.consumer_id = c.consumer_id) as parts
       from bucketq.consumer c join bucketq._consumer_now n using (group_id, consumer_id)
       join bucketq.consumer_group g using (group_id)
      where g.name = $1 and c.consumer_id = $2`,
    [group, consumer],
  );
  return { row: Number(rows[0].row), now: Number(rows[0].now), parts: rows[0].parts };
}

describe('heartbeats under a pinned xmin horizon', () => {
  it('300 heartbeats while a REPEATABLE READ snapshot is held: the consumer row gets no new version, each beat is one inserted row, and claims and acks go on', async () => {
    const c = await ctx.session();
    const pin = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    const stats = async () => {
      await flushStats(c, [c]);
      const { rows } = await c.query<{ rel: string; ins: number; upd: number; hot: number; del: number }>(
        `select case when relname like 'consumer_beat%' then 'consumer_beat' else relname end as rel,
                sum(n_tup_ins)::int as ins, sum(n_tup_upd)::int as upd, sum(n_tup_hot_upd)::int as hot, sum(n_tup_del)::int as del
           from pg_stat_user_tables where schemaname = 'bucketq' and relname in ('consumer', 'consumer_beat_0', 'consumer_beat_1')
          group by 1`,
      );
      return Object.fromEntries(rows.map((r) => [r.rel, r]));
    };
    const before = await stats();

    await pin.query('begin isolation level repeatable read');
    await pin.query('select count(*) from bucketq.consumer');
    const { rows: pinned } = await c.query('select backend_xmin is not null as pinned from pg_stat_activity where pid = $1', [pidOf(pin)]);
    expect(pinned[0].pinned).toBe(true);

    for (let i = 0; i < 300; i++) await heartbeat(c, group, 'c1');
    const m = await send(c, topic, { n: 1 });
    const got = await claim(c, group, 'c1', 10);
    expect(got.map((x) => x.msg_id)).toEqual([m]);
    expect((await ack(c, group, got)).map((r) => r.status)).toEqual(['acked']);

    const after = await stats();
    // Before migration 39 each heartbeat was an UPDATE of the consumer row: 300 versions
    // that the pin kept, and that every lookup of the row walked.
    expect({
      consumer: { upd: after.consumer!.upd - before.consumer!.upd, hot: after.consumer!.hot - before.consumer!.hot,
                  del: after.consumer!.del - before.consumer!.del },
      beat: { upd: after.consumer_beat!.upd - (before.consumer_beat?.upd ?? 0), del: after.consumer_beat!.del - (before.consumer_beat?.del ?? 0) },
    }).toEqual({ consumer: { upd: 0, hot: 0, del: 0 }, beat: { upd: 0, del: 0 } });
    expect(after.consumer_beat!.ins - (before.consumer_beat?.ins ?? 0)).toBeGreaterThanOrEqual(300);

    // The lookup every claim and settle makes reads the row and one beat per part, newest
    // first: a handful of pages, whatever the pin.
    const { rows: plan } = await c.query(
      `explain (analyze, buffers, format json)
       select n.heartbeat_at from bucketq._consumer_now n join bucketq.consumer_group g using (group_id)
        where g.name = $1 and n.consumer_id = 'c1'`,
      [group],
    );
    const buffers = (node: Record<string, unknown>): number =>
      Number(node['Shared Hit Blocks'] ?? 0) + Number(node['Shared Read Blocks'] ?? 0);
    expect(buffers(plan[0]['QUERY PLAN'][0].Plan)).toBeLessThanOrEqual(12);
    await pin.query('rollback');
  });
});

describe('maintain() empties the heartbeats of the five minutes before', () => {
  it('in the second half of a period only: a consumer that beat since keeps its row as it was, a quiet one gets its newest beat copied to its row, and both stay alive', async () => {
    const c = await ctx.session();
    // Period P (10 s in): both join and beat.
    const { topic, group } = await joinedAt(c, 4, 1, 10, ['quiet', 'busy']);
    await heartbeat(c, group, 'quiet');
    await heartbeat(c, group, 'busy');
    const quietBeat = (await beats(c, group, 'quiet')).now;

    // Period P + 1, 60 s in: the first half; nothing is emptied yet.
    await setClock(c, `${await offsetTo(c, 2, 60)} seconds`);
    await heartbeat(c, group, 'busy');
    expect(await beatRotations(c)).toEqual([]);

    // 200 s in: the part of period P is emptied. busy beat in P + 1: its row is left as
    // join wrote it. quiet did not: its newest beat moves to its row.
    await setClock(c, `${await offsetTo(c, 2, 200)} seconds`);
    const busyBefore = await beats(c, group, 'busy');
    const rotated = await beatRotations(c);
    expect(rotated.map((r) => r.action)).toEqual(['rotated_consumer_beats']);
    expect(rotated[0]!.detail).toMatch(/the newest beat of 1 quiet consumer\(s\) kept on their rows/);
    expect(await beatRotations(c)).toEqual([]); // nothing left to empty

    const quiet = await beats(c, group, 'quiet');
    expect(quiet).toEqual({ row: quietBeat, now: quietBeat, parts: 0 });
    const busy = await beats(c, group, 'busy');
    expect(busy).toEqual({ row: busyBefore.row, now: busyBefore.now, parts: 1 });

    // 490 s after its beat, within the 10-minute session: quiet still owns its buckets and claims.
    const { rows: alive } = await c.query(
      `select consumer_id, alive, owned_buckets::int from bucketq.consumers where group_name = $1 order by consumer_id`, [group]);
    expect(alive).toEqual([{ consumer_id: 'busy', alive: true, owned_buckets: 2 }, { consumer_id: 'quiet', alive: true, owned_buckets: 2 }]);
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => send(c, topic, { i })));
    const got = [...(await claim(c, group, 'quiet', 100)), ...(await claim(c, group, 'busy', 100))];
    expect(got.map((x) => x.msg_id).sort((a, b) => a - b)).toEqual(ids);

    // Past the session timeout (700 s after quiet's beat): quiet is dead, busy takes its buckets.
    await setClock(c, `${await offsetTo(c, 3, 110)} seconds`);
    await heartbeat(c, group, 'busy');
    const { rows: after } = await c.query(
      `select consumer_id, alive, owned_buckets::int from bucketq.consumers where group_name = $1 order by consumer_id`, [group]);
    expect(after).toEqual([{ consumer_id: 'busy', alive: true, owned_buckets: 4 }, { consumer_id: 'quiet', alive: false, owned_buckets: 0 }]);
  });

  it('waits at most 500 ms for a reader of the part; then changes nothing and says so, and the next run empties it', async () => {
    const c = await ctx.session();
    const reader = await ctx.session();
    const { group } = await joinedAt(c, 2, 5, 10, ['c1']);
    await setClock(c, `${await offsetTo(c, 6, 200)} seconds`);

    // A transaction that read the consumers (a claim's, a view's) holds both parts.
    await reader.query('begin');
    await reader.query(`select * from bucketq.consumers where group_name = $1`, [group]);
    const started = Date.now();
    const kept = await beatRotations(c);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(kept.map((r) => r.action)).toEqual(['kept_consumer_beats']);
    expect((await beats(c, group, 'c1')).parts).toBe(1);
    await reader.query('commit');

    expect((await beatRotations(c)).map((r) => r.action)).toEqual(['rotated_consumer_beats']);
    const b = await beats(c, group, 'c1');
    expect(b.parts).toBe(0);
    expect(b.row).toBe(b.now);
  });

  it('a heartbeat that comes while maintain() holds the part waits, and lands after the copy: its beat is the newest', async () => {
    const c = await ctx.session();
    const m = await ctx.session();
    const { group } = await joinedAt(c, 2, 8, 10, ['c1']);
    // maintain() at period + 1, 200 s in, inside a transaction kept open after it ran.
    await setClock(m, `${await offsetTo(m, 9, 200)} seconds`);
    await m.query('begin');
    expect((await m.query(`select action from bucketq.maintain() where action like '%consumer_beats'`)).rows).toEqual([{ action: 'rotated_consumer_beats' }]);
    // A heartbeat stamped in period + 0 (its own clock): it writes the part being emptied.
    await setClock(c, `${await offsetTo(c, 8, 20)} seconds`);
    let done = false;
    const beat = heartbeat(c, group, 'c1').finally(() => (done = true));
    await waitUntilBlocked(m, pidOf(c), () => done);
    expect(done).toBe(false);
    await m.query('commit');
    await beat;
    const b = await beats(c, group, 'c1');
    // Copied (the join's beat, 10 s in), then the late beat at 20 s in, in the emptied part.
    expect(b.now - b.row).toBeCloseTo(10, 0);
    expect(b.parts).toBe(1);
  });
});
