// Issue 13, races and trust in the consumer path: an ack racing a leave, record_attempt's
// inputs, consumers bound to the role that joined, overlapping replays, maintain() and
// the partition lock, ack's cost, and the rest of the bad-input items (23, 25).
// Interleavings are forced with real concurrent sessions (waitUntilBlocked), trust
// cases run as real login roles (cluster-wide: unique names, dropped after).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, pgError, pidOf, send, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

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
    const [m1, m2, m3] = [await send(owner, topic, {}, { key: 'a' }), await send(owner, topic, {}, { key: 'b' }), await send(owner, topic, {}, { key: 'c' })];

    await claimer.query('begin');
    const got = await claimLocked(claimer, group, 'c1', 1);
    expect(got.map((m) => m.msg_id)).toEqual([m1]);
    const xact = got[0]!.xact;
    // Messages the transaction does not hold: refused.
    await expectBqError(recordAttempt(recorder, group, 'c1', xact, [m2!]), 'BQ005', /does not hold messages/);
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
    const { rows: log } = await owner.query(
      `select msg_ids::int[] from bucketq.attempt_log a join bucketq.consumer_group g using (group_id) where g.name = $1`,
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
