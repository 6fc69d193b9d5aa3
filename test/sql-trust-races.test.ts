// Issue 13, races and trust in the consumer path: an ack racing a leave, record_attempt's
// inputs, consumers bound to the role that joined, overlapping replays, maintain() and
// the partition lock, ack's cost, and the rest of the bad-input items (23, 25).
// Interleavings are forced with real concurrent sessions (waitUntilBlocked), trust
// cases run as real login roles (cluster-wide: unique names, dropped after).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, pgError, pidOf, send, toInbox, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

const suffix = randomBytes(4).toString('hex');
const PASSWORD = `pw_${suffix}`;
const roles: string[] = []; // created here, dropped after (logins first)
const clients: pg.Client[] = [];
let owner: pg.Client;

async function createRole(name: string, opts: { login?: boolean; in?: string[] } = {}): Promise<string> {
  const role = `bqrace_${name}_${suffix}`;
  const inRole = opts.in?.length ? ` in role ${opts.in.join(', ')}` : '';
  await owner.query(`create role ${role} ${opts.login ? `login password '${PASSWORD}'` : 'nologin'}${inRole}`);
  roles.unshift(role);
  return role;
}

async function connectAs(user: string): Promise<pg.Client> {
  const url = new URL(ctx.db.connectionString);
  url.username = user;
  url.password = PASSWORD;
  const c = new pg.Client({ connectionString: url.toString() });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** A login in the given roles, connected. */
async function login(name: string, ...inRoles: string[]): Promise<pg.Client> {
  return connectAs(await createRole(name, { login: true, in: inRoles }));
}

/** How many delivery records the group has (bucketq.deliveries). */
async function deliveries(group: string): Promise<number> {
  return Number((await owner.query(`select count(*) from bucketq.deliveries d where d.group_name = $1`, [group])).rows[0].count);
}

async function states(c: pg.Client, group: string, ids: number[]): Promise<Record<number, number | null>> {
  const { rows } = await c.query(
    `select u.id, i.state from unnest($2::bigint[]) u(id)
       left join bucketq.inbox i on i.msg_id = u.id and i.group_id = (select group_id from bucketq.consumer_group where name = $1)`,
    [group, ids],
  );
  return Object.fromEntries(rows.map((r) => [Number(r.id), r.state]));
}

beforeAll(async () => {
  owner = await ctx.session();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  if (roles.length) await owner.query(`drop owned by ${roles.join(', ')}`).catch(() => {});
  for (const r of roles) await owner.query(`drop role if exists ${r}`).catch(() => {});
});

describe('an ack racing a leave (issue 13, item 0)', () => {
  it("the first message of a run acked while leave hands the run back: the rest of the run is promoted, not stranded", async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1 });
    const ids = [];
    for (let i = 1; i <= 3; i++) ids.push(await send(owner, topic, { i }, { key: 'k' }));
    await toInbox(owner, group); // the inbox's runs: a rewind puts the messages there
    const run = await claim(owner, group, 'c1', 10, { maxPerKey: 3 });
    expect(run.map((m) => m.msg_id)).toEqual(ids);
    const a = await ctx.session();
    const b = await ctx.session();
    // A: an ack under way holds the head's row; B: leave hands the run back meanwhile.
    await a.query('begin');
    await a.query(`select 1 from bucketq.inbox where msg_id = $1 for update`, [ids[0]]);
    await b.query('begin');
    await b.query(`select bucketq.leave($1, 'c1')`, [group]);
    let acked = false;
    const ackA = ack(a, group, [run[0]!]).finally(() => (acked = true));
    await waitUntilBlocked(owner, pidOf(a), () => acked);
    await b.query('commit');
    expect(await ackA).toEqual([{ msg_id: ids[0], status: 'acked' }]);
    await a.query('commit');
    // m2 is ready again (m3 waits behind it), and a new consumer gets it.
    expect(await states(owner, group, ids)).toEqual({ [ids[0]!]: null, [ids[1]!]: 0, [ids[2]!]: 3 });
    await owner.query(`select * from bucketq.join($1, 'c2')`, [group]);
    expect((await claim(owner, group, 'c2', 10, { maxPerKey: 3 })).map((m) => m.msg_id)).toEqual(ids.slice(1));
  });
});

describe('an ack racing a leave, on the log path', () => {
  it('an ack under way while leave hands its batch back is fenced (BQ008), and the next owner gets the whole batch', async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1 });
    const ids = [];
    for (let i = 1; i <= 3; i++) ids.push(await send(owner, topic, { i }, { key: 'k' }));
    const run = await claim(owner, group, 'c1', 10, { maxPerKey: 3 });
    expect(run.map((m) => m.msg_id)).toEqual(ids);
    const a = await ctx.session();
    const b = await ctx.session();
    // A: an ack under way holds the bucket's cursor row; B: leave commits meanwhile.
    await a.query('begin');
    await a.query(`select 1 from bucketq.cursor k join bucketq.consumer_group g using (group_id) where g.name = $1 for update of k`, [group]);
    await b.query(`select bucketq.leave($1, 'c1')`, [group]);
    await expectBqError(ack(a, group, [run[0]!]), 'BQ008', /no longer owns/);
    await a.query('rollback');
    await owner.query(`select * from bucketq.join($1, 'c2')`, [group]);
    const again = await claim(owner, group, 'c2', 10, { maxPerKey: 3 });
    expect(again.map((m) => m.msg_id)).toEqual(ids);
    expect(await ack(owner, group, again)).toHaveLength(3);
  });
});

async function claimLocked(c: pg.Client, group: string, consumer: string, max = 100): Promise<{ msg_id: number; attempt: number; xact: string }[]> {
  const { rows } = await c.query(
    `select msg_id, attempt, xact::text from bucketq.claim_locked(group_name => $1, consumer_id => $2, max_messages => $3)`,
    [group, consumer, max],
  );
  return rows.map((r) => ({ msg_id: Number(r.msg_id), attempt: r.attempt, xact: r.xact }));
}

const recordAttempt = (c: pg.Client, group: string, consumer: string, xact: string, ids: number[]) =>
  c.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, xact, ids]);

describe('record_attempt believes no xact or msg_ids (issue 13, item 2)', () => {
  it("records only a running transaction of the caller's login and messages it holds for the consumer; a future xid in attempt_log does not break claims", async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1, consumer: null });
    const role = await createRole('rec', { login: true, in: ['bucketq_consumer'] });
    const claimer = await connectAs(role);
    const recorder = await connectAs(role);
    const other = await login('rec_other', 'bucketq_consumer');
    await claimer.query(`select * from bucketq.join($1, 'c1')`, [group]);
    // m0 is finished before: a transaction can hold no finished message.
    const m0 = await send(owner, topic, {}, { key: 'z' });
    await claimer.query('begin');
    expect((await claimLocked(claimer, group, 'c1', 1)).map((m) => m.msg_id)).toEqual([m0]);
    await claimer.query(`select * from bucketq.ack($1, array[$2::bigint], null, 'c1')`, [group, m0]);
    await claimer.query('commit');
    const [m1, m2, m3] = [await send(owner, topic, {}, { key: 'a' }), await send(owner, topic, {}, { key: 'b' }), await send(owner, topic, {}, { key: 'c' })];

    await claimer.query('begin');
    const got = await claimLocked(claimer, group, 'c1', 1);
    expect(got.map((m) => m.msg_id)).toEqual([m1]);
    const xact = got[0]!.xact;
    // Messages the transaction does not hold: refused. (A batch read from a bucket's log
    // is not visible to this session before the claim commits: what is checked is that
    // the transaction reads the message's bucket and the message is not finished.)
    await expectBqError(recordAttempt(recorder, group, 'c1', xact, [m0!]), 'BQ005', /does not hold messages/);
    await expectBqError(recordAttempt(recorder, group, 'c1', xact, [m1!, 999999]), 'BQ005', /does not hold messages/);
    // A rolled-back transaction of the caller's own, a future one, another login's: refused.
    await recorder.query('begin');
    const { rows: [own] } = await recorder.query('select pg_current_xact_id()::text as x');
    await recorder.query('rollback');
    await expectBqError(recordAttempt(recorder, group, 'c1', own.x, [m1!]), 'BQ005', /not running/);
    await expectBqError(recordAttempt(recorder, group, 'c1', '999999999', [m1!]), 'BQ005', /not running/);
    const foreign = await pgError(recordAttempt(other, group, 'c1', xact, [m1!]));
    expect(['BQ005', 'BQ008', '42501']).toContain(foreign.code);
    // The honest record: accepted.
    await recordAttempt(recorder, group, 'c1', xact, [m1!]);
    // (for a message read from the log: an 'attempt' note in the bucket's progress)
    const { rows: log } = await owner.query(
      `select msg_ids::int[] from bucketq.progress p join bucketq.consumer_group g using (group_id) where g.name = $1 and p.kind = 3`,
      [group],
    );
    expect(log).toEqual([{ msg_ids: [m1] }]);
    await claimer.query('rollback');

    // A row naming a future transaction (written before the check existed): the next
    // claim_locked works, drops it and counts only the real attempt.
    await owner.query(
      `insert into bucketq.attempt_log (group_id, xact, consumer_id, msg_ids, started_at)
       select group_id, '999999999'::xid8, 'c1', array[$2, $3]::bigint[], now() from bucketq.consumer_group where name = $1`,
      [group, m2, m3],
    );
    await claimer.query('begin');
    const next = await claimLocked(claimer, group, 'c1', 10);
    expect(next.map((m) => [m.msg_id, m.attempt])).toEqual([[m1, 2], [m2, 1], [m3, 1]]);
    await claimer.query('commit'); // the settling commits; the messages are ready again
    const { rows: left } = await owner.query(
      `select count(*)::int as n from bucketq.attempt_log a join bucketq.consumer_group g using (group_id) where g.name = $1`,
      [group],
    );
    expect(left).toEqual([{ n: 0 }]);
  });
});

describe('consumers bound to the role that joined (issue 13, item 1)', () => {
  it("another login may not heartbeat, claim, ack, nack, record attempts, leave or join as a consumer it did not join, and learns nothing of the ids it names; admins may", async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 4, consumer: null });
    const a = await login('worker_a', 'bucketq_consumer');
    const b = await login('intruder', 'bucketq_consumer');
    const admin = await login('ops', 'bucketq_admin');
    await a.query(`select * from bucketq.join($1, 'worker-A')`, [group]);
    const ids: number[] = [];
    for (let i = 0; i < 10; i++) ids.push(await send(owner, topic, { i }, { key: `k${i}` }));
    const leased = await claim(a, group, 'worker-A', 3);
    expect(leased).toHaveLength(3);
    expect(await ack(a, group, [leased[0]!])).toEqual([{ msg_id: leased[0]!.msg_id, status: 'acked' }]);
    const rest = leased.slice(1);
    expect(await deliveries(group)).toBe(1);

    // As worker-A: refused (42501) everywhere, nothing changes.
    const asA: [string, string, unknown[]][] = [
      ['heartbeat', `select * from bucketq.heartbeat($1, 'worker-A')`, [group]],
      ['claim', `select * from bucketq.claim($1, 'worker-A')`, [group]],
      // one named bucket (a wake-up's claim: its own lookup of consumer, owner and cursor)
      ['claim', `select * from bucketq.claim($1, 'worker-A', buckets => array[0])`, [group]],
      ['claim_locked', `select * from bucketq.claim_locked($1, 'worker-A')`, [group]],
      ['claim_locked', `select * from bucketq.claim_locked($1, 'worker-A', buckets => array[0])`, [group]],
      ['ack', `select * from bucketq.ack($1, $2::bigint[], null, 'worker-A', strict => false)`, [group, ids]],
      ['nack', `select * from bucketq.nack($1, $2::bigint[], null, consumer_id => 'worker-A', strict => false)`, [group, ids]],
      ['record_attempt', `select bucketq.record_attempt($1, 'worker-A', pg_current_xact_id(), $2::bigint[])`, [group, ids]],
      ['leave', `select bucketq.leave($1, 'worker-A')`, [group]],
      ['join', `select * from bucketq.join($1, 'worker-A')`, [group]],
    ];
    for (const [label, sql, args] of asA) {
      const err = await expectBqError(b.query(sql, args), '42501', /another role joined it/);
      expect(err.message, label).toMatch(new RegExp(`^${label}: permission denied for consumer worker-A`));
    }
    // Its own consumer (no buckets: worker-A holds them all, live): acking every id,
    // held or not, acked or not, existing or not, says only 'stale' and acks nothing.
    await b.query(`select * from bucketq.join($1, 'worker-B')`, [group]);
    const probe = [...ids, 999999];
    await b.query('begin');
    const { rows: lockedAcks } = await b.query(`select msg_id::int, status from bucketq.ack($1, $2::bigint[], null, 'worker-B', strict => false)`, [group, probe]);
    expect(new Set(lockedAcks.map((r) => r.status))).toEqual(new Set(['stale']));
    await expectBqError(b.query(`select * from bucketq.ack($1, $2::bigint[], null, 'worker-B')`, [group, probe]), 'BQ006');
    await b.query('rollback');
    // Leases with worker-A's tokens (sequence numbers can be guessed): stale, not acked,
    // not nacked.
    const tokens = (ms: typeof leased) => ms.map((m) => m.lease_token);
    const { rows: leaseAcks } = await b.query(`select msg_id::int, status from bucketq.ack($1, $2::bigint[], $3::bigint[], strict => false)`, [
      group, leased.map((m) => m.msg_id), tokens(leased),
    ]);
    expect(leaseAcks.map((r) => r.status)).toEqual(['stale', 'stale', 'stale']);
    const { rows: leaseNacks } = await b.query(`select status from bucketq.nack($1, $2::bigint[], $3::bigint[], strict => false)`, [
      group, rest.map((m) => m.msg_id), tokens(rest),
    ]);
    expect(leaseNacks.map((r) => r.status)).toEqual(['stale', 'stale']);
    expect(await deliveries(group)).toBe(1);

    // worker-A, in a transaction that did not claim them, cannot ack ready messages of
    // its own buckets by naming them (lease_tokens => NULL needs rows this transaction holds).
    const ready = ids.filter((id) => !leased.some((m) => m.msg_id === id));
    await a.query('begin');
    const { rows: unheld } = await a.query(`select status from bucketq.ack($1, $2::bigint[], null, 'worker-A', strict => false)`, [group, ready]);
    expect(new Set(unheld.map((r) => r.status))).toEqual(new Set(['stale']));
    await a.query('rollback');
    expect(await deliveries(group)).toBe(1);
    // worker-A's own leases and its buckets are intact: it acks the rest.
    expect((await ack(a, group, rest)).map((r) => r.status)).toEqual(['acked', 'acked']);
    expect((await owner.query(`select count(*)::int as n from bucketq.buckets where group_name = $1 and owner = 'worker-A'`, [group])).rows[0].n).toBe(4);

    // An admin acts on behalf: claims in one of worker-A's buckets, heartbeats worker-A
    // (which hands worker-B its share, 2 of 4 buckets) and removes it.
    const { rows: byAdmin } = await admin.query(`select bucket from bucketq.claim($1, 'worker-A', buckets => array[0])`, [group]);
    expect(byAdmin.length).toBeGreaterThan(0);
    expect(new Set(byAdmin.map((r) => r.bucket))).toEqual(new Set([0]));
    await admin.query(`select * from bucketq.heartbeat($1, 'worker-A')`, [group]);
    expect((await admin.query(`select bucketq.leave($1, 'worker-A') as n`, [group])).rows[0].n).toBe(2);
  });

  it('a batch still in the log (acked as a whole, no inbox row): another login holding its lease tokens gets stale and acks nothing; an admin acks it', async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1, consumer: null });
    const a = await login('worker_c', 'bucketq_consumer');
    const b = await login('intruder_c', 'bucketq_consumer');
    const admin = await login('ops_c', 'bucketq_admin');
    await a.query(`select * from bucketq.join($1, 'worker-C')`, [group]);
    for (let i = 0; i < 3; i++) await send(owner, topic, { i }, { key: `k${i}` });
    const leased = await claim(a, group, 'worker-C', 10);
    expect(leased).toHaveLength(3);
    // No inbox row: the ack goes by the batch's progress row (_log_settle), not the inbox.
    expect(Object.values(await states(owner, group, leased.map((m) => m.msg_id)))).toEqual([null, null, null]);
    const ackByTokens = async (c: pg.Client) =>
      (await c.query(`select status from bucketq.ack($1, $2::bigint[], $3::bigint[], strict => false)`, [
        group, leased.map((m) => m.msg_id), leased.map((m) => m.lease_token),
      ])).rows.map((r) => r.status);
    expect(await ackByTokens(b)).toEqual(['stale', 'stale', 'stale']);
    expect(await deliveries(group)).toBe(0);
    expect(await ackByTokens(admin)).toEqual(['acked', 'acked', 'acked']);
    expect(await deliveries(group)).toBe(3);
  });
});

describe('overlapping replay_dead calls (issue 13, item 12)', () => {
  it('a second replay that read the dead letter before the first committed does not put the message back once it is acked', async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1, group: { max_attempts: 1 } });
    const m = await send(owner, topic, { poison: true }, { key: 'k' });
    const [got] = await claim(owner, group, 'c1', 1);
    expect((await owner.query(`select status from bucketq.nack($1, array[$2]::bigint[], array[$3]::bigint[])`, [group, m, got!.lease_token])).rows).toEqual([{ status: 'dead' }]);
    const r1 = await ctx.session();
    const q = await ctx.session();
    const r2 = await ctx.session();
    // R1 replays in a transaction (holding the key's topic_key row). Q queues first on
    // that row, R2 (which has read the dead letter) behind Q: when R1 commits, R2 still
    // waits while the replayed message is claimed and acked.
    await r1.query('begin');
    expect((await r1.query(`select bucketq.replay_dead($1, array[$2]::bigint[]) as n`, [group, m])).rows[0].n).toBe(1);
    await q.query('begin');
    let qLocked = false;
    const qLock = q
      .query(`select 1 from bucketq.topic_key where key_id = (select key_id from bucketq.message where id = $1) for update`, [m])
      .finally(() => (qLocked = true));
    await waitUntilBlocked(owner, pidOf(q), () => qLocked);
    let r2Done = false;
    const second = r2.query(`select bucketq.replay_dead($1, array[$2]::bigint[]) as n`, [group, m]).finally(() => (r2Done = true));
    second.catch(() => {});
    await waitUntilBlocked(owner, pidOf(r2), () => r2Done);
    await r1.query('commit');
    await qLock;
    const again = await claim(owner, group, 'c1', 1);
    expect(again.map((x) => x.msg_id)).toEqual([m]);
    expect(await ack(owner, group, again)).toEqual([{ msg_id: m, status: 'acked' }]);
    await q.query('commit');
    // The second replay finds the message replayed already (BQ005), not dead.
    await expectBqError(second, 'BQ005', /replayed already/);
    expect(await claim(owner, group, 'c1', 10)).toEqual([]);
    const { rows } = await owner.query(`select count(*)::int as n from bucketq.delivery where msg_id = $1`, [m]);
    expect(rows).toEqual([{ n: 1 }]);
  });
});

describe('maintain() (issue 13, items 11 and 19)', () => {
  async function expiredTopic(): Promise<{ topic: string; ids: number[] }> {
    const topic = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4, retention => '1 hour', partition_interval => '1 hour')`, [topic]);
    const ids = [await send(owner, topic, { n: 1 }, { key: 'k' }), await send(owner, topic, { n: 2 }, { key: 'k' })];
    return { topic, ids };
  }

  it('11: a group created (earliest) while maintain() waits for the partition lock keeps the partition it still needs', async () => {
    const { topic, ids } = await expiredTopic();
    const creator = await ctx.session();
    const m = await ctx.session();
    await m.query(`select set_config('bucketq.clock_offset', '3 hours', false)`);
    const group = ctx.unique('g');
    await creator.query('begin');
    await creator.query(`select bucketq.create_group($1, $2, 'earliest')`, [group, topic]);
    let done = false;
    const maintained = m.query(`select topic, action, detail from bucketq.maintain()`).finally(() => (done = true));
    await waitUntilBlocked(owner, pidOf(m), () => done);
    await creator.query('commit');
    const actions = (await maintained).rows.filter((a) => a.topic === topic).map((a) => a.action);
    expect(actions).toContain('kept_partition'); // (later, empty partitions expired too: dropped)
    // The group gets both messages, in order.
    await owner.query(`select * from bucketq.join($1, 'c1')`, [group]);
    const got = await claim(owner, group, 'c1', 10, { maxPerKey: 2 });
    expect(got.map((x) => [x.msg_id, x.payload])).toEqual([[ids[0], { n: 1 }], [ids[1], { n: 2 }]]);
  });

  it("19: maintain() leaves the caller's lock_timeout as it was", async () => {
    const { topic } = await expiredTopic();
    const m = await ctx.session();
    await m.query(`select set_config('bucketq.clock_offset', '3 hours', false)`);
    await m.query('begin');
    await m.query(`set local lock_timeout = '7s'`);
    const { rows } = await m.query(`select topic, action from bucketq.maintain()`);
    expect(rows.filter((a) => a.topic === topic).map((a) => a.action)).toContain('dropped_partition');
    expect((await m.query(`select current_setting('lock_timeout') as t`)).rows[0].t).toBe('7s');
    await m.query('commit');
    expect((await m.query(`select current_setting('lock_timeout') as t`)).rows[0].t).toBe('0');
  });
});

describe("ack's lease path scales with the number of ids (issue 13, item 18)", () => {
  it('acks 10,000 leased messages in one call, and reports each id once (timings logged, not asserted)', async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 4 });
    const n = 10_000;
    await owner.query(
      `select bucketq.send_batch($1, array(select jsonb_build_object('i', g) from generate_series(1, $2) g), array(select 'k' || (g % 500) from generate_series(1, $2) g))`,
      [topic, n],
    );
    const leased = await claim(owner, group, 'c1', n, { maxPerKey: 100 });
    expect(leased).toHaveLength(n);
    const ack10k = async (ms: typeof leased, strict = true) => {
      const t0 = performance.now();
      const { rows } = await owner.query(`select msg_id::int, status from bucketq.ack($1, $2::bigint[], $3::bigint[], strict => $4)`, [
        group, ms.map((m) => m.msg_id), ms.map((m) => m.lease_token), strict,
      ]);
      return { rows, ms: Math.round(performance.now() - t0) };
    };
    const half = leased.slice(0, n / 2);
    // Acked in key order per key: claim returns each key's run in order.
    const first = await ack10k(half);
    expect(first.rows).toHaveLength(n / 2);
    expect(new Set(first.rows.map((r) => r.status))).toEqual(new Set(['acked']));
    // The whole array again, not strict: 5,000 already acked, 5,000 acked now.
    const second = await ack10k(leased, false);
    expect(second.rows.filter((r) => r.status === 'already_acked')).toHaveLength(n / 2);
    expect(second.rows.filter((r) => r.status === 'acked')).toHaveLength(n / 2);
    console.log(`ack of ${n / 2} leased ids: ${first.ms} ms; of ${n} ids (half acked already): ${second.ms} ms`);
  }, 60_000);
});

describe('bad input, the rest (issue 13, items 23 and 25)', () => {
  it("23: nack's retry_delay 'infinity' is refused (BQ005) and nacks nothing", async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1 });
    await send(owner, topic, {}, { key: 'k' });
    const got = await claim(owner, group, 'c1', 1);
    // Before Postgres 17 an interval cannot be infinite: the server refuses the input (22007).
    const { rows: v } = await owner.query(`select current_setting('server_version_num')::int >= 170000 as infinite_intervals`);
    for (const delay of ['infinity', '-infinity']) {
      const call = owner.query(`select * from bucketq.nack($1, $2::bigint[], $3::bigint[], retry_delay => $4::interval)`, [group, [got[0]!.msg_id], [got[0]!.lease_token], delay]);
      if (v[0].infinite_intervals) await expectBqError(call, 'BQ005', /retry_delay/);
      else expect((await pgError(call)).code).toBe('22007');
    }
    expect(await ack(owner, group, got)).toEqual([{ msg_id: got[0]!.msg_id, status: 'acked' }]);
  });

  it('25: an id acked twice in one call is acked once and reported per element; with a stale id the count is right', async () => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1 });
    await send(owner, topic, {}, { key: 'a' });
    await send(owner, topic, {}, { key: 'b' });
    const [m, n] = await claim(owner, group, 'c1', 2);
    expect(await ack(owner, group, [m!, m!])).toEqual([{ msg_id: m!.msg_id, status: 'acked' }, { msg_id: m!.msg_id, status: 'acked' }]);
    await expectBqError(ack(owner, group, [n!, n!, m!]), 'BQ006', /^ack: 1 of 3 messages are not leased with these tokens .*\{\d+\}\)$/);
    expect(await ack(owner, group, [n!, n!])).toEqual([{ msg_id: n!.msg_id, status: 'acked' }, { msg_id: n!.msg_id, status: 'acked' }]);
  });
});

describe('create_group and rewind beside a long producer transaction (issue 13, item 20)', () => {
  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

  it.each(['create_group', 'rewind'] as const)('%s waits for an open producer transaction without holding up other sends', async (fn) => {
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 4 });
    const producer = await ctx.session();
    const admin = await ctx.session();
    const other = await ctx.session();
    await producer.query('begin');
    const [{ id: pending }] = (await producer.query(`select bucketq.send($1, '{"p": 1}') as id`, [topic])).rows;
    const newGroup = ctx.unique('g');
    let finished = false;
    const waiting = (fn === 'create_group'
      ? admin.query(`select bucketq.create_group($1, $2, 'earliest')`, [newGroup, topic])
      : admin.query(`select bucketq.rewind($1, now() - interval '1 hour')`, [group])
    ).finally(() => (finished = true));
    await waitUntilBlocked(owner, pidOf(admin), () => finished);
    // Another producer's send goes through while the admin call waits.
    const sent = other.query(`select bucketq.send($1, '{"s": 1}') as id`, [topic]);
    const went = await within(sent, 3000);
    await producer.query('commit');
    await waiting;
    expect(went, 'a send beside the waiting call finished within 3 s').toBe(true);
    const [{ id: beside }] = (await sent).rows;
    // Nothing missed: the (new or rewound) group gets both messages.
    const g = fn === 'create_group' ? newGroup : group;
    const consumer = fn === 'create_group' ? 'c9' : 'c1';
    await owner.query(`select * from bucketq.join($1, $2)`, [g, consumer]);
    const ids = (await claim(owner, g, consumer, 100)).map((m) => m.msg_id).sort((a, b) => a - b);
    expect(ids).toEqual(expect.arrayContaining([Number(pending), Number(beside)]));
  });
});

describe('bucketq.pending_heads is not the caller\'s to forge (issue 13, item 4)', () => {
  it("a producer's own entries naming another group's key lock nothing: that group's ack does not wait for the producer", async () => {
    // The victim: group g, its message m1 of key 'k' leased by c1.
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 1 });
    await send(owner, topic, {}, { key: 'k' });
    const [m1] = await claim(owner, group, 'c1', 1);
    const { rows: [victim] } = await owner.query(
      `select g.group_id, m.key_id from bucketq.message m join bucketq.consumer_group g using (topic_id) where g.name = $1 and m.id = $2`,
      [group, m1!.msg_id],
    );
    // The producer's topic: a key with a message already waiting, so its send gets a
    // commit-time check.
    const own = await topicAndGroup(owner, ctx, { buckets: 1, consumer: null });
    await send(owner, own.topic, {}, { key: 'q' });
    const producer = await login('forger', 'bucketq_producer');
    await producer.query('begin');
    await producer.query(`select bucketq.send($1, '{}', 'q')`, [own.topic]);
    await producer.query(
      `select set_config('bucketq.pending_heads', current_setting('bucketq.pending_heads', true) || ';' || $1, true)`,
      [`${victim.group_id}:${victim.key_id}:999999`],
    );
    await producer.query('set constraints all immediate');
    const acked = ack(owner, group, [m1!]);
    const went = await Promise.race([acked.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    await producer.query('commit');
    expect(went, "the victim's ack finished while the producer's transaction was open").toBe(true);
    expect(await acked).toEqual([{ msg_id: m1!.msg_id, status: 'acked' }]);
  });
});

describe('consumers that joined before consumers were bound to roles (issue 13, item 1)', () => {
  it('a consumer row without joined_by (migration 22) must join again: BQ008 until it does, then it is bound to the role that joined', async () => {
    const { group } = await topicAndGroup(owner, ctx, { buckets: 2, consumer: null });
    const w = await login('legacy', 'bucketq_consumer');
    const other = await login('legacy_other', 'bucketq_consumer');
    await w.query(`select * from bucketq.join($1, 'old')`, [group]);
    await owner.query(`update bucketq.consumer set joined_by = null where consumer_id = 'old'`);
    await expectBqError(w.query(`select * from bucketq.heartbeat($1, 'old')`, [group]), 'BQ008', /must join again/);
    await w.query(`select * from bucketq.join($1, 'old')`, [group]);
    await w.query(`select * from bucketq.heartbeat($1, 'old')`, [group]);
    await expectBqError(other.query(`select * from bucketq.heartbeat($1, 'old')`, [group]), '42501');
  });
});
