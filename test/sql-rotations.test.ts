// What the rotations maintain() runs did last (migration 40, view bucketq.rotations):
// when each last emptied its part, how many runs in a row gave up on the lock, since
// when one is due, and an overdue flag with what to do, also as metrics. A reader that
// holds a part (pg_dump, a long report) makes every run give up; before, only
// maintain()'s result said so, and the parts grew unseen.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { send, setClock, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

interface RotationRow {
  rotation: string;
  appending_to: string;
  retired: string;
  retired_rows: boolean;
  bytes: string;
  rotated_at: number;
  kept_runs: number;
  kept_since: number | null;
  due_since: number | null;
  overdue: boolean;
  detail: string;
  now: number;
}

/** bucketq.rotations' row for `name`, times as seconds since the epoch, with bucketq._now(). */
async function rotation(c: pg.Client, name: string): Promise<RotationRow> {
  const { rows } = await c.query<RotationRow>(
    `select r.rotation, r.appending_to, r.retired, r.retired_rows, r.bytes::text, r.kept_runs, r.overdue, r.detail,
            extract(epoch from r.rotated_at)::float8 as rotated_at, extract(epoch from r.kept_since)::float8 as kept_since,
            extract(epoch from r.due_since)::float8 as due_since, extract(epoch from bucketq._now())::float8 as now
       from bucketq.rotations r where r.rotation = $1`,
    [name],
  );
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

async function maintainActions(c: pg.Client, like: string): Promise<string[]> {
  const { rows } = await c.query<{ action: string }>(`select action from bucketq.maintain() where action like $1`, [like]);
  return rows.map((r) => r.action);
}

async function rotationMetrics(c: pg.Client, name: string): Promise<Record<string, number>> {
  const { rows } = await c.query<{ metric: string; value: number }>(
    `select metric, value from bucketq.metrics() where metric like 'bucketq_rotation_%' and state = $1`,
    [name],
  );
  return Object.fromEntries(rows.map((r) => [r.metric, r.value]));
}

/** The clock offset (seconds) that puts bucketq._now() at `phase` seconds into the five-minute period `periods` ahead. */
async function offsetTo(c: pg.Client, periods: number, phase: number): Promise<number> {
  const { rows } = await c.query<{ now: string }>(`select extract(epoch from now())::float8 as now`);
  const now = Number(rows[0]!.now);
  return (Math.floor(now / 300) + periods) * 300 + phase - now;
}

describe('bucketq.rotations', () => {
  it('key_counter: a rotation done, runs given up while a reader holds the retired part (counted, since when), overdue after 5 minutes with what to do, and reset by the next rotation', async () => {
    const c = await ctx.session();
    const reader = await ctx.session();
    const { topic } = await topicAndGroup(c, ctx, { buckets: 2, consumer: null });
    await send(c, topic, { n: 1 }, { key: 'a' });
    expect(await maintainActions(c, '%key_counters')).toEqual(['rotated_key_counters']);
    const done = await rotation(c, 'key_counter');
    // The part the send appended to is retired now, and holds its row: due from now on.
    expect(done.retired_rows).toBe(true);
    expect(done.appending_to).not.toBe(done.retired);
    expect(Math.abs(done.rotated_at - done.now)).toBeLessThan(5);
    expect(done.due_since).toBe(done.rotated_at);
    expect(done).toMatchObject({ kept_runs: 0, kept_since: null, overdue: false });
    expect(Number(done.bytes)).toBeGreaterThan(0);

    // A reader of the retired part (a report, pg_dump) holds it: the TRUNCATE waits 500 ms and gives up.
    await reader.query('begin');
    await reader.query(`select count(*) from bucketq.${done.retired}`);
    await setClock(c, '60 seconds');
    expect(await maintainActions(c, '%key_counters')).toEqual(['kept_key_counters']);
    const first = await rotation(c, 'key_counter');
    expect(first.kept_runs).toBe(1);
    expect(Math.abs(first.kept_since! - first.now)).toBeLessThan(5);
    expect(first.rotated_at).toBe(done.rotated_at);
    await setClock(c, '120 seconds');
    expect(await maintainActions(c, '%key_counters')).toEqual(['kept_key_counters']);
    const second = await rotation(c, 'key_counter');
    expect(second).toMatchObject({ kept_runs: 2, kept_since: first.kept_since, overdue: false });
    expect(second.detail).toMatch(/lock timeout/);

    // Six minutes after it became due: overdue, and the detail says where to look.
    await setClock(c, '360 seconds');
    const late = await rotation(c, 'key_counter');
    expect(late.overdue).toBe(true);
    expect(late.detail).toContain('maintain() gave up on the lock in its last 2 run(s)');
    expect(late.detail).toContain(`'bucketq.key_counter_0'::regclass`);
    expect(late.detail).toContain('idle in transaction');
    expect(late.detail).toContain("a producer's transaction left open");
    const m = await rotationMetrics(c, 'key_counter');
    expect(m.bucketq_rotation_due_seconds).toBeGreaterThan(300);
    expect(m.bucketq_rotation_kept_runs).toBe(2);
    expect(m.bucketq_rotation_bytes).toBe(Number(late.bytes));

    // The reader lets go: the next run empties the part and starts over.
    await reader.query('commit');
    expect(await maintainActions(c, '%key_counters')).toEqual(['rotated_key_counters']);
    const again = await rotation(c, 'key_counter');
    expect(again).toMatchObject({ kept_runs: 0, kept_since: null, overdue: false });
    expect(again.rotated_at).toBeGreaterThan(done.rotated_at + 300);
    // Nothing sent since: the part now retired is empty, and nothing is due.
    expect(again.retired_rows).toBe(false);
    expect(again.due_since).toBeNull();
    expect((await rotationMetrics(c, 'key_counter')).bucketq_rotation_due_seconds).toBe(0);

    // A send, a rotation, then nobody runs maintain() for 6 minutes: overdue, and the detail says so.
    await send(c, topic, { n: 2 }, { key: 'a' });
    expect(await maintainActions(c, '%key_counters')).toEqual(['rotated_key_counters']);
    await setClock(c, '720 seconds');
    const idle = await rotation(c, 'key_counter');
    expect(idle).toMatchObject({ overdue: true, kept_runs: 0 });
    expect(idle.detail).toContain('maintain() has not tried since');
    await setClock(c, '0 seconds');
  });

  it('consumer_beat: due once the period after the oldest beat is half gone; a period of runs given up leaves it overdue, and the next rotation of that part clears it', async () => {
    const c = await ctx.session();
    const reader = await ctx.session();
    const { group } = await topicAndGroup(c, ctx, { buckets: 2, group: { session_timeout: '10 minutes' }, consumer: null });
    // Joined and beating 10 s into the period 3 ahead (P).
    await setClock(c, `${await offsetTo(c, 3, 10)} seconds`);
    await c.query(`select * from bucketq.join($1, 'c1')`, [group]);
    await c.query(`select * from bucketq.heartbeat($1, 'c1')`, [group]);
    const { rows } = await c.query<{ p: number }>(`select floor(extract(epoch from bucketq._now()) / 300)::float8 * 300 as p`);
    const periodStart = Number(rows[0]!.p);

    // P + 1, first half: the beat's part is retired but not due yet.
    await setClock(c, `${await offsetTo(c, 4, 100)} seconds`);
    const early = await rotation(c, 'consumer_beat');
    expect(early.retired_rows).toBe(true);
    expect(early.due_since).toBeNull();
    expect(early.overdue).toBe(false);

    // P + 1, second half: due since its middle; a reader of the heartbeats holds the part.
    await reader.query('begin');
    await reader.query(`select * from bucketq.consumers where group_name = $1`, [group]);
    await setClock(c, `${await offsetTo(c, 4, 200)} seconds`);
    expect(await maintainActions(c, '%consumer_beats')).toEqual(['kept_consumer_beats']);
    const kept = await rotation(c, 'consumer_beat');
    expect(kept.due_since).toBe(periodStart + 450);
    expect(kept).toMatchObject({ kept_runs: 1, overdue: false });

    // P + 2: that part takes beats again, still holding P's; over 5 minutes past due.
    await setClock(c, `${await offsetTo(c, 5, 160)} seconds`);
    const late = await rotation(c, 'consumer_beat');
    expect(late.appending_to).toBe(early.retired);
    expect(late.overdue).toBe(true);
    expect(late.detail).toContain('maintain() gave up on the lock in its last 1 run(s)');
    expect(late.detail).not.toContain('producer');
    expect((await rotationMetrics(c, 'consumer_beat')).bucketq_rotation_due_seconds).toBeGreaterThan(300);
    await reader.query('commit');

    // P + 3, second half: the part is retired again and emptied; nothing is due.
    await c.query(`select * from bucketq.heartbeat($1, 'c1')`, [group]);
    await setClock(c, `${await offsetTo(c, 6, 200)} seconds`);
    expect(await maintainActions(c, '%consumer_beats')).toEqual(['rotated_consumer_beats']);
    const done = await rotation(c, 'consumer_beat');
    expect(done).toMatchObject({ kept_runs: 0, kept_since: null, overdue: false, due_since: null });
    expect(Math.abs(done.rotated_at - done.now)).toBeLessThan(5);
    await setClock(c, '0 seconds');
  });
});
