// The lobby at the SQL level: fair, sticky, incremental bucket ownership; epochs; zombie
// fencing with exactly-once effects (DESIGN guarantees 3 and 6); leave.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, nack, pgError, pidOf, send, sendBatch, setClock, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

interface Owner {
  bucket: number;
  owner: string | null;
  epoch: number;
}

async function owners(c: pg.Client, group: string): Promise<Owner[]> {
  const { rows } = await c.query(`select bucket, owner, epoch::int from bucketq.buckets where group_name = $1 order by bucket`, [group]);
  return rows;
}

async function heartbeat(c: pg.Client, group: string, consumer: string): Promise<{ bucket: number; epoch: number }[]> {
  const { rows } = await c.query(`select bucket, epoch::int from bucketq.heartbeat($1, $2)`, [group, consumer]);
  return rows;
}

/** Heartbeat every live consumer (each on its own session, all at once) until ownership stops changing. */
async function settle(sessions: Map<string, pg.Client>, observer: pg.Client, group: string): Promise<Owner[]> {
  let last = JSON.stringify(await owners(observer, group));
  for (let round = 0; round < 10; round++) {
    await Promise.all([...sessions].map(([id, c]) => heartbeat(c, group, id)));
    const now = await owners(observer, group);
    if (JSON.stringify(now) === last) return now;
    last = JSON.stringify(now);
  }
  throw new Error(`ownership did not settle within 10 rounds: ${last}`);
}

function shares(o: Owner[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const b of o) if (b.owner) m.set(b.owner, (m.get(b.owner) ?? 0) + 1);
  return m;
}

function checkFair(o: Owner[], live: string[]) {
  expect(o.every((b) => b.owner !== null && live.includes(b.owner)), JSON.stringify(o)).toBe(true);
  const s = shares(o);
  expect([...s.keys()].sort()).toEqual([...live].sort());
  const counts = [...s.values()];
  expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
}

/** Buckets whose owner changed must have a higher epoch; the others must keep theirs. */
function moves(before: Owner[], after: Owner[]): number {
  let moved = 0;
  for (const b of after) {
    const prev = before[b.bucket]!;
    if (prev.owner !== b.owner) {
      moved++;
      expect(b.epoch, `bucket ${b.bucket} moved ${prev.owner} -> ${b.owner}`).toBeGreaterThan(prev.epoch);
    } else {
      expect(b.epoch, `bucket ${b.bucket} stayed with ${b.owner} but its epoch changed`).toBe(prev.epoch);
    }
  }
  return moved;
}

describe('fair share and stickiness', () => {
  it('1 to 5 consumers joining then leaving one by one: one owner per bucket, shares within one, minimal moves', async () => {
    const observer = await ctx.session();
    const { group } = await topicAndGroup(observer, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
    const sessions = new Map<string, pg.Client>();
    const ids = ['c1', 'c2', 'c3', 'c4', 'c5'];
    const log: string[] = [];

    for (const id of ids) {
      const before = await owners(observer, group);
      const c = await ctx.session();
      await c.query('select * from bucketq.join($1, $2)', [group, id]);
      sessions.set(id, c);
      const after = await settle(sessions, observer, group);
      checkFair(after, [...sessions.keys()]);
      const moved = moves(before, after);
      const share = shares(after).get(id)!;
      log.push(`join ${id}: share ${share}, moved ${moved}`);
      expect(moved, log.join('; ')).toBe(share);
    }
    if (process.env.BQ_DEBUG) console.log(log.join('\n'));

    for (const id of ids.slice(0, 4)) {
      const before = await owners(observer, group);
      const share = shares(before).get(id)!;
      const c = sessions.get(id)!;
      const { rows } = await c.query('select bucketq.leave($1, $2) as n', [group, id]);
      expect(rows[0].n).toBe(share);
      sessions.delete(id);
      const after = await settle(sessions, observer, group);
      checkFair(after, [...sessions.keys()]);
      const moved = moves(before, after);
      log.push(`leave ${id}: share ${share}, moved ${moved}`);
      expect(moved, log.join('; ')).toBe(share);
    }
    if (process.env.BQ_DEBUG) console.log(log.join('\n'));
    expect(shares(await owners(observer, group))).toEqual(new Map([['c5', 16]]));
  });

  it('5 consumers joining at once end with a fair split and distinct (bucket, epoch) grants', async () => {
    const observer = await ctx.session();
    const { group } = await topicAndGroup(observer, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
    const sessions = new Map<string, pg.Client>();
    for (const id of ['a', 'b', 'c', 'd', 'e']) sessions.set(id, await ctx.session());
    const grants = await Promise.all([...sessions].map(([id, c]) => c.query('select bucket, epoch::int from bucketq.join($1, $2)', [group, id]).then((r) => r.rows)));
    const granted = grants.flat().map((g) => `${g.bucket}@${g.epoch}`);
    expect(new Set(granted).size).toBe(granted.length);
    const after = await settle(sessions, observer, group);
    checkFair(after, [...sessions.keys()]);
    expect([...shares(after).values()].sort()).toEqual([3, 3, 3, 3, 4]);
  });

  it('claim only hands out messages of the buckets the consumer owns (and of the ones it asks for)', async () => {
    const observer = await ctx.session();
    const { topic, group } = await topicAndGroup(observer, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
    const sessions = new Map([
      ['a', await ctx.session()],
      ['b', await ctx.session()],
    ]);
    for (const [id, c] of sessions) await c.query('select * from bucketq.join($1, $2)', [group, id]);
    const after = await settle(sessions, observer, group);
    const mine = (id: string) => new Set(after.filter((b) => b.owner === id).map((b) => b.bucket));
    await sendBatch(observer, topic, Array.from({ length: 64 }, (_, i) => ({ i })));
    const a = await claim(sessions.get('a')!, group, 'a', 1000);
    expect(a.length).toBeGreaterThan(0);
    expect(a.every((m) => mine('a').has(m.bucket))).toBe(true);
    const bBucket = [...mine('b')][0]!;
    const { rows } = await sessions.get('b')!.query(`select bucket from bucketq.claim($1, 'b', 1000, buckets => array[$2::int])`, [group, bBucket]);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.bucket === bBucket)).toBe(true);
    // asking for a bucket it does not own yields nothing
    const { rows: none } = await sessions.get('b')!.query(`select * from bucketq.claim($1, 'b', 1000, buckets => array[$2::int])`, [group, [...mine('a')][0]]);
    expect(none).toEqual([]);
  });

  it('a heartbeat that moves nothing writes one row (a beat appended), updates none, not one per bucket it owns; its buckets stay live with it', async () => {
    const c = await ctx.session();
    const observer = await ctx.session();
    const { group } = await topicAndGroup(c, ctx, { buckets: 16, group: { session_timeout: '10 seconds' } });
    // The session's counts not yet reported (they include the join's): before and after.
    const writes = async () => Object.fromEntries((await c.query(
      `select case when relname like 'consumer_beat%' then 'consumer_beat' else relname end as rel,
              sum(n_tup_ins)::int as ins, sum(n_tup_upd + n_tup_del)::int as changed from pg_stat_xact_user_tables
        where schemaname = 'bucketq' and relname in ('consumer', 'bucket_owner', 'consumer_beat_0', 'consumer_beat_1')
        group by 1`)).rows.map((r) => [r.rel, { ins: r.ins, changed: r.changed }]));
    await c.query('begin');
    const before = await writes();
    await heartbeat(c, group, 'c1');
    const after = await writes();
    await c.query('commit');
    const delta = (rel: string) => ({ ins: after[rel]!.ins - before[rel]!.ins, changed: after[rel]!.changed - before[rel]!.changed });
    expect({ bucket_owner: delta('bucket_owner'), consumer: delta('consumer'), consumer_beat: delta('consumer_beat') })
      .toEqual({ bucket_owner: { ins: 0, changed: 0 }, consumer: { ins: 0, changed: 0 }, consumer_beat: { ins: 1, changed: 0 } });
    const live = async () => (await observer.query(`select count(*) filter (where owned)::int as owned, count(*) filter (where heartbeat_age is not null)::int as aged from bucketq.buckets where group_name = $1`, [group])).rows[0];
    expect(await live()).toEqual({ owned: 16, aged: 16 });
    // Past the session timeout without a heartbeat, the consumer's buckets are up for grabs
    // (another member takes them all), and the late one claims nothing.
    await setClock(observer, '11 seconds');
    await setClock(c, '11 seconds');
    expect(await live()).toEqual({ owned: 0, aged: 16 });
    await observer.query('select * from bucketq.join($1, $2)', [group, 'c2']);
    expect((await owners(observer, group)).every((o) => o.owner === 'c2')).toBe(true);
    await expectBqError(c.query(`select * from bucketq.claim($1, 'c1', 10)`, [group]), 'BQ008', /not a live member/);
  });
});

describe('zombie fencing', () => {
  async function setupFencing() {
    const admin = await ctx.session();
    const a = await ctx.session();
    const b = await ctx.session();
    const { topic, group } = await topicAndGroup(admin, ctx, { consumer: null, buckets: 4 });
    const effects = ctx.unique('effects').replace('.', '_');
    await admin.query(`create table ${effects} (msg_id bigint not null, by_consumer text not null)`);
    await a.query('select * from bucketq.join($1, $2)', [group, 'A']);
    return { admin, a, b, topic, group, effects };
  }

  it('an expired consumer that acks an old lease fails, its effects roll back, the new owner\'s delivery stands', async () => {
    const { admin, a, b, topic, group, effects } = await setupFencing();
    const [m1, m2] = await sendBatch(admin, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    const [leaseA] = await claim(a, group, 'A', 10);
    expect(leaseA?.msg_id).toBe(m1);

    // A pauses; its session expires from B's point of view (session_timeout 10 s)
    await setClock(b, '20 seconds');
    const taken = await b.query('select bucket, epoch::int from bucketq.join($1, $2)', [group, 'B']).then((r) => r.rows);
    expect(taken).toHaveLength(4);
    expect((await owners(admin, group)).every((o) => o.owner === 'B')).toBe(true);
    const [leaseB] = await claim(b, group, 'B', 10); // A's lease was voided when B took the bucket
    expect([leaseB?.msg_id, leaseB?.attempt]).toEqual([m1, 2]);
    expect(leaseB!.epoch).toBeGreaterThan(leaseA!.epoch);
    await b.query('begin');
    await b.query(`insert into ${effects} values ($1, 'B')`, [m1]);
    await ack(b, group, [leaseB!]);
    await b.query('commit');

    // A wakes up and acks in a transaction with its own effect
    await a.query('begin');
    await a.query(`insert into ${effects} values ($1, 'A')`, [m1]);
    const err = await pgError(ack(a, group, [leaseA!]));
    expect(['BQ006', 'BQ008']).toContain(err.code);
    expect(err.hint).toBeTruthy();
    await a.query('rollback');

    const { rows: eff } = await admin.query(`select msg_id::int, by_consumer from ${effects}`);
    expect(eff).toEqual([{ msg_id: m1, by_consumer: 'B' }]);
    const { rows: del } = await admin.query(
      `select d.msg_id::int, d.consumer_id, d.attempt from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1`,
      [group],
    );
    expect(del).toEqual([{ msg_id: m1, consumer_id: 'B', attempt: 2 }]);
    expect((await claim(b, group, 'B', 10)).map((m) => m.msg_id)).toEqual([m2]);
    // A (still a member by its own clock) owns nothing now: its claims come back empty
    expect(await claim(a, group, 'A', 10)).toEqual([]);
  });

  it('a lease A still holds (not voided) after its bucket moved: ack and nack raise BQ008, effects roll back', async () => {
    const { admin, a, b, topic, group, effects } = await setupFencing();
    const m1 = await send(admin, topic, { n: 1 }, { key: 'k' });
    // A claims inside a transaction that is still open when B takes the bucket, so B's
    // heartbeat cannot void the lease (it does not see it yet and would skip the locked row)
    await a.query('begin');
    const [leaseA] = await claim(a, group, 'A', 10);
    expect(leaseA?.msg_id).toBe(m1);
    await setClock(b, '20 seconds');
    await b.query('select * from bucketq.join($1, $2)', [group, 'B']);
    await a.query('commit');
    const { rows: held } = await admin.query(`select sum(leased)::int as n from bucketq.lag where group_name = $1`, [group]);
    expect(held).toEqual([{ n: 1 }]); // still A's lease: B's join could not void it

    await a.query('begin');
    await a.query(`insert into ${effects} values ($1, 'A')`, [m1]);
    const err = await expectBqError(ack(a, group, [leaseA!]), 'BQ008', /no longer owns/);
    expect(err.detail).toMatch(/Nothing was acked/);
    await a.query('rollback');
    await expectBqError(nack(a, group, [leaseA!]), 'BQ008');
    await expectBqError(ack(a, group, [leaseA!], false), 'BQ008'); // strict => false does not bypass fencing
    expect((await admin.query(`select count(*)::int as n from ${effects}`)).rows[0].n).toBe(0);

    // B's next heartbeat voids the old lease; B delivers the message
    await heartbeat(b, group, 'B');
    const [leaseB] = await claim(b, group, 'B', 10);
    expect([leaseB?.msg_id, leaseB?.attempt]).toEqual([m1, 2]);
    await ack(b, group, [leaseB!]);
    const { rows } = await admin.query(`select count(*)::int as n from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1`, [group]);
    expect(rows[0].n).toBe(1);
  });

  it('an ack already executed when the bucket moves commits exactly once; the new owner never gets the message', async () => {
    const { admin, a, b, topic, group, effects } = await setupFencing();
    const [m1, m2] = await sendBatch(admin, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    const [leaseA] = await claim(a, group, 'A', 10);
    await a.query('begin');
    await a.query(`insert into ${effects} values ($1, 'A')`, [m1]);
    await ack(a, group, [leaseA!]);
    // while A's transaction is open, B takes over with A's lease long expired
    await setClock(b, '2 minutes');
    await b.query('select * from bucketq.join($1, $2)', [group, 'B']);
    expect(await claim(b, group, 'B', 10)).toEqual([]); // m1 is A's to commit; m2 waits behind it
    await a.query('commit');
    const [next] = await claim(b, group, 'B', 10);
    expect(next?.msg_id).toBe(m2);
    await ack(b, group, [next!]);
    const { rows } = await admin.query(
      `select d.msg_id::int, d.consumer_id from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1 order by d.msg_id`,
      [group],
    );
    expect(rows).toEqual([
      { msg_id: m1, consumer_id: 'A' },
      { msg_id: m2, consumer_id: 'B' },
    ]);
    expect((await admin.query(`select count(*)::int as n from ${effects}`)).rows[0].n).toBe(1);
  });

  it('the same ack rolled back instead: the new owner delivers the message after its next heartbeat', async () => {
    const { admin, a, b, topic, group } = await setupFencing();
    const m1 = await send(admin, topic, { n: 1 }, { key: 'k' });
    const [leaseA] = await claim(a, group, 'A', 10);
    await a.query('begin');
    await ack(a, group, [leaseA!]);
    await setClock(b, '20 seconds');
    await b.query('select * from bucketq.join($1, $2)', [group, 'B']);
    await a.query('rollback');
    await heartbeat(b, group, 'B');
    const [again] = await claim(b, group, 'B', 10);
    expect(again?.msg_id).toBe(m1);
    await ack(b, group, [again!]);
  });

  it("a heartbeat moving the bucket waits for nothing: B's takeover proceeds while A's ack transaction is open", async () => {
    const { admin, a, b, topic, group } = await setupFencing();
    await send(admin, topic, { n: 1 });
    const [leaseA] = await claim(a, group, 'A', 10);
    await a.query('begin');
    await ack(a, group, [leaseA!]);
    await setClock(b, '20 seconds');
    let done = false;
    const joined = b.query('select * from bucketq.join($1, $2)', [group, 'B']).then(() => (done = true));
    // poll until the join finished or is seen waiting on a lock (then it would wait for A)
    let blocked = false;
    while (!done && !blocked) {
      const { rows } = await admin.query(`select wait_event_type from pg_stat_activity where pid = $1`, [pidOf(b)]);
      blocked = rows[0]?.wait_event_type === 'Lock';
    }
    await a.query(blocked ? 'rollback' : 'commit');
    await joined;
    expect(blocked).toBe(false);
    expect((await owners(admin, group)).every((o) => o.owner === 'B')).toBe(true);
  });
});

describe('leave', () => {
  it('releases the buckets (epochs bump) and hands its unacked leases to the others at once', async () => {
    const observer = await ctx.session();
    const { topic, group } = await topicAndGroup(observer, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
    const sessions = new Map([
      ['a', await ctx.session()],
      ['b', await ctx.session()],
    ]);
    for (const [id, c] of sessions) await c.query('select * from bucketq.join($1, $2)', [group, id]);
    const settled = await settle(sessions, observer, group);
    const aBuckets = settled.filter((o) => o.owner === 'a').map((o) => o.bucket);
    expect(aBuckets).toHaveLength(8);

    await sendBatch(observer, topic, Array.from({ length: 32 }, (_, i) => ({ i })));
    const leasedByA = await claim(sessions.get('a')!, group, 'a', 1000);
    expect(leasedByA.length).toBeGreaterThan(0);

    const { rows } = await sessions.get('a')!.query('select bucketq.leave($1, $2) as n', [group, 'a']);
    expect(rows[0].n).toBe(8);
    const afterLeave = await owners(observer, group);
    for (const bucket of aBuckets) {
      expect(afterLeave[bucket]!.owner).toBeNull();
      expect(afterLeave[bucket]!.epoch).toBeGreaterThan(settled[bucket]!.epoch);
    }
    const { rows: consumers } = await observer.query(`select consumer_id from bucketq.consumers where group_name = $1`, [group]);
    expect(consumers).toEqual([{ consumer_id: 'b' }]);

    // b takes them with its next heartbeat and gets A's messages now, no lease expiry needed
    const bSession = sessions.get('b')!;
    expect(await heartbeat(bSession, group, 'b')).toHaveLength(16);
    const got = await claim(bSession, group, 'b', 1000);
    const gotIds = new Set(got.map((m) => m.msg_id));
    expect(leasedByA.every((m) => gotIds.has(m.msg_id))).toBe(true);
    expect(got.filter((m) => leasedByA.some((x) => x.msg_id === m.msg_id)).every((m) => m.attempt === 1)).toBe(true); // the interrupted try is not counted

    // a's acks fail after leave
    const err = await pgError(ack(sessions.get('a')!, group, leasedByA));
    expect(['BQ006', 'BQ008']).toContain(err.code);
    await expectBqError(heartbeat(sessions.get('a')!, group, 'a'), 'BQ008');
  });

  it('joining again with the same id starts a new session: old leases are void and handed out again', async () => {
    const observer = await ctx.session();
    const old = await ctx.session();
    const fresh = await ctx.session();
    const { topic, group } = await topicAndGroup(observer, ctx, { consumer: null, buckets: 4 });
    await old.query(`select * from bucketq.join($1, 'w')`, [group]);
    const before = await owners(observer, group);
    const id = await send(observer, topic, { n: 1 }, { key: 'k' });
    const stale = await claim(old, group, 'w', 10);
    expect(stale.map((m) => m.msg_id)).toEqual([id]);

    await fresh.query(`select * from bucketq.join($1, 'w')`, [group]); // the process restarted with the same id
    const after = await owners(observer, group);
    expect(after.every((o, i) => o.owner === 'w' && o.epoch > before[i]!.epoch)).toBe(true);
    const again = await claim(fresh, group, 'w', 10);
    expect(again.map((m) => [m.msg_id, m.attempt])).toEqual([[id, 1]]);
    const err = await pgError(ack(old, group, stale));
    expect(['BQ006', 'BQ008']).toContain(err.code);
    expect(await ack(fresh, group, again)).toEqual([{ msg_id: id, status: 'acked' }]);
  });
});

describe('lock order', () => {
  // The consumer row, then its buckets: leave, join and heartbeat all take them in that
  // order. The interleaving is forced with a third session holding the consumer row.
  it('a leave racing the same consumer\'s heartbeat: both finish, no deadlock, the leave wins last', async () => {
    const admin = await ctx.session();
    const { group } = await topicAndGroup(admin, ctx, { consumer: 'C', buckets: 4 });
    const holder = await ctx.session();
    const beating = await ctx.session();
    const leaving = await ctx.session();
    await holder.query('begin');
    await holder.query(
      `select 1 from bucketq.consumer c join bucketq.consumer_group g using (group_id) where g.name = $1 and c.consumer_id = 'C' for update of c`,
      [group],
    );
    const beat = heartbeat(beating, group, 'C'); // waits for the consumer row
    await waitUntilBlocked(admin, pidOf(beating));
    const left = leaving.query(`select bucketq.leave($1, 'C') as n`, [group]); // waits behind it
    await waitUntilBlocked(admin, pidOf(leaving));
    await holder.query('commit');
    const [b, l] = await Promise.allSettled([beat, left]);
    // Before 000017 the heartbeat held the consumer row and waited for a bucket the
    // leave held, and the leave waited for the consumer row: 40P01 for one of them.
    expect(b.status === 'rejected' ? (b.reason as Error).message : 'ok').toBe('ok');
    expect(l.status === 'rejected' ? (l.reason as Error).message : 'ok').toBe('ok');
    expect((await left).rows[0].n).toBe(4);
    expect((await owners(admin, group)).map((o) => o.owner)).toEqual([null, null, null, null]);
    const { rows } = await admin.query(`select consumer_id from bucketq.consumers where group_name = $1`, [group]);
    expect(rows).toEqual([]);
  });

  it("a heartbeat's cleanup of long-gone consumers skips a row someone holds instead of waiting for it", async () => {
    const admin = await ctx.session();
    const { group } = await topicAndGroup(admin, ctx, { consumer: 'gone', buckets: 2, group: { session_timeout: '10 seconds' } });
    const holder = await ctx.session();
    await holder.query('begin');
    await holder.query(
      `select 1 from bucketq.consumer c join bucketq.consumer_group g using (group_id) where g.name = $1 and c.consumer_id = 'gone' for update of c`,
      [group],
    );
    const later = await ctx.session();
    await setClock(later, '1 hour'); // 'gone' is past 10 session timeouts: to be forgotten
    await later.query(`set lock_timeout = '5s'`);
    // join takes over gone's buckets, so gone owns nothing and is due for deletion; its row
    // is held, so it stays (before 000017 this join waited and failed with 55P03).
    const taken = await later.query(`select * from bucketq.join($1, 'later')`, [group]);
    expect(taken.rows.map((r) => r.bucket)).toEqual([0, 1]);
    const members = async () =>
      (await admin.query(`select consumer_id from bucketq.consumers where group_name = $1 order by 1`, [group])).rows.map((r) => r.consumer_id);
    expect(await members()).toEqual(['gone', 'later']);
    await holder.query('commit');
    await heartbeat(later, group, 'later');
    expect(await members()).toEqual(['later']);
  });
});

describe('rebalancing under load', () => {
  it('consumers leaving and rejoining while producers send: effects exactly once and in key order', async () => {
    const admin = await ctx.session();
    const { topic, group } = await topicAndGroup(admin, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
    const effects = ctx.unique('fx').replace('.', '_');
    // The handler's effect: one row per (key, seq), written in the ack's transaction, only if
    // the key's previous message already took effect (FIFO) - else nothing is inserted.
    await admin.query(`create table ${effects} (key text not null, seq int not null, msg_id bigint not null, primary key (key, seq))`);
    const ids = ['A', 'B', 'C'];
    const sessions = new Map<string, pg.Client>();
    for (const id of ids) {
      const c = await ctx.session();
      await c.query('select * from bucketq.join($1, $2)', [group, id]);
      sessions.set(id, c);
    }
    const producers = await Promise.all([0, 1, 2, 3].map(() => ctx.session()));
    const chaos = await ctx.session();

    const keys = Array.from({ length: 40 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    let sent = 0;
    let producing = true;
    const violations: string[] = [];
    let fenced = 0;
    let effectsDone = 0;

    const producing$ = Promise.all(
      producers.map(async (c, p) => {
        for (let i = 0; i < 25; i++) {
          const batch = keys.filter((_, k) => (k + i + p) % 4 === 0); // sorted: no producer-side deadlocks
          await sendBatch(c, topic, batch.map((k) => ({ k, p, i })), { keys: batch });
          sent += batch.length;
        }
      }),
    ).then(() => (producing = false));

    // A consumer that left (chaos) while handling a batch is a zombie: its leases went
    // back at once, the bucket's new owner took the same message and may commit its
    // effect first. The zombie's insert of that effect then waits for the new owner's
    // and fails on the primary key, before its ack would have failed with BQ008: the
    // same end, its transaction rolls back. Only if the row it collided with is that
    // very message (CI caught it, 2026-12-04: message 4 acked by B at epoch 5 while
    // C, which had left, still held it from epoch 3). Another message with the same
    // (key, seq) would be a key_seq handed out twice. With two such messages each may
    // wait for the other's effect row: a deadlock in the effect inserts, whose victim
    // rolls back (one in the ack would be bucketq's own and stays a violation).
    const tookOverFrom = async (err: unknown, msgs: { msg_id: number; key: string | null; key_seq: number | null; epoch: number }[]) => {
      const m = /\(key, seq\)=\((.+), (\d+)\)/.exec((err as { detail?: string }).detail ?? '');
      if (!m) return false;
      const mine = msgs.find((x) => x.key === m[1] && x.key_seq === Number(m[2]));
      if (mine === undefined) return false;
      const { rows } = await admin.query(`select msg_id from ${effects} where key = $1 and seq = $2`, [m[1], Number(m[2])]);
      if (rows.length !== 1 || Number(rows[0].msg_id) !== mine.msg_id) return false;
      // ... and the one that committed had the bucket at a later epoch than ours.
      const { rows: acked } = await admin.query(`select epoch from bucketq.deliveries where group_name = $1 and msg_id = $2`, [group, mine.msg_id]);
      return acked.length === 1 && Number(acked[0].epoch) > mine.epoch;
    };
    const consuming$ = Promise.all(
      ids.map(async (id) => {
        const c = sessions.get(id)!;
        let idle = 0;
        while (producing || effectsDone < sent) {
          if (violations.length) return;
          try {
            await heartbeat(c, group, id);
          } catch (err) {
            if ((err as { code?: string }).code !== 'BQ008') throw err; // between leave and rejoin
            await new Promise((r) => setTimeout(r, 1));
            continue;
          }
          const msgs = await claim(c, group, id, 10).catch((err: { code?: string }) => {
            if (err.code === 'BQ008') return [];
            throw err;
          });
          if (msgs.length === 0) {
            if (++idle > 20_000) {
              violations.push(`${id} starved: ${effectsDone} of ${sent}`);
              return;
            }
            await new Promise((r) => setTimeout(r, 1));
            continue;
          }
          idle = 0;
          await c.query('begin');
          let acking = false;
          try {
            for (const m of msgs) {
              const r = await c.query(
                `insert into ${effects} (key, seq, msg_id)
                 select $1, $2, $3 where coalesce((select max(seq) from ${effects} where key = $1), 0) = $2 - 1`,
                [m.key, m.key_seq, m.msg_id],
              );
              if (r.rowCount !== 1) violations.push(`${id}: key ${m.key} seq ${m.key_seq} handed out before seq ${m.key_seq! - 1} took effect`);
            }
            acking = true;
            await ack(c, group, msgs);
            await c.query('commit');
            effectsDone += msgs.length;
          } catch (err) {
            await c.query('rollback');
            const code = (err as { code?: string }).code;
            if (code === 'BQ006' || code === 'BQ008') fenced++;
            else if (code === '23505' && (await tookOverFrom(err, msgs))) fenced++;
            else if (code === '40P01' && !acking) fenced++; // the same race, each waiting for the other's effect row
            else violations.push(`${id}: ${(err as Error).message}`);
          }
        }
      }),
    );

    // C leaves and rejoins, again and again, while all this runs
    let rebalances = 0;
    const chaos$ = (async () => {
      while (producing) {
        await chaos.query(`select bucketq.leave($1, 'C')`, [group]);
        await new Promise((r) => setTimeout(r, 5));
        await chaos.query(`select * from bucketq.join($1, 'C')`, [group]);
        await new Promise((r) => setTimeout(r, 15));
        rebalances++;
      }
    })();

    await Promise.all([producing$, consuming$, chaos$]);
    expect(violations).toEqual([]);
    expect(rebalances).toBeGreaterThan(3);
    const { rows } = await admin.query(
      `select key, array_agg(seq order by seq) as seqs from ${effects} group by key order by key`,
    );
    const { rows: counts } = await admin.query(
      `select m.key, count(*)::int as n from bucketq.message m join bucketq.topic t using (topic_id) where t.name = $1 group by m.key order by m.key`,
      [topic],
    );
    expect(rows.map((r) => [r.key, r.seqs.length])).toEqual(counts.map((r) => [r.key, r.n]));
    for (const r of rows) expect(r.seqs).toEqual(Array.from({ length: r.seqs.length }, (_, i) => i + 1));
    const { rows: delivered } = await admin.query(
      `select count(*)::int as n, count(distinct msg_id)::int as d from bucketq.deliveries x join bucketq.consumer_group g using (group_id) where g.name = $1`,
      [group],
    );
    expect(delivered[0]).toEqual({ n: sent, d: sent });
    if (process.env.BQ_DEBUG) console.log({ sent, fenced, rebalances });
  });
});
