// Issue 13, trust boundaries and bad input: what a caller may send (sizes, infinities,
// multi-byte keys, headers), how much of its input an error echoes, producer rights per
// topic, SET ROLE narrowing a pooled login, and what monitors and consumers may read.
// Each trust case runs as real login roles (cluster-wide: unique names, dropped after).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claim, expectBqError, nack, pgError, send, useDatabase } from './helpers/sql.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const ctx = useDatabase();

const suffix = randomBytes(4).toString('hex');
const PASSWORD = `pw_${suffix}`;
const roles: string[] = []; // created here, dropped after (logins first)
const clients: pg.Client[] = [];
let owner: pg.Client;

async function createRole(name: string, opts: { login?: boolean; in?: string[] } = {}): Promise<string> {
  const role = `bqtrust_${name}_${suffix}`;
  const inRole = opts.in?.length ? ` in role ${opts.in.join(', ')}` : '';
  await owner.query(`create role ${role} ${opts.login ? `login password '${PASSWORD}'` : 'nologin'}${inRole}`);
  roles.unshift(role);
  return role;
}

async function connectAs(user: string, db: FreshDatabase = ctx.db): Promise<pg.Client> {
  const url = new URL(db.connectionString);
  url.username = user;
  url.password = PASSWORD;
  const c = new pg.Client({ connectionString: url.toString() });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** A Postgres array literal with the given lower bound: '[0:1]={"a","b"}'. */
function arrayLiteral(lower: number, elems: string[]): string {
  const quoted = elems.map((e) => `"${e.replace(/[\\"]/g, (c) => `\\${c}`)}"`);
  return `[${lower}:${lower + elems.length - 1}]={${quoted.join(',')}}`;
}

/** A login in the given roles, connected. */
async function login(name: string, ...inRoles: string[]): Promise<pg.Client> {
  return connectAs(await createRole(name, { login: true, in: inRoles }));
}

beforeAll(async () => {
  owner = await ctx.session();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  if (roles.length) await owner.query(`drop owned by ${roles.join(', ')}`).catch(() => {});
  for (const r of roles) await owner.query(`drop role if exists ${r}`).catch(() => {});
});

describe('bad input (issue 13, items 22 to 25 and 6)', () => {
  it('22: keys and idempotency keys over 2048 bytes (multi-byte, within 1024 characters) raise BQ005 naming the input and the limit, not a raw 54000', async () => {
    const t = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4)`, [t]);
    const cjk = (n: number) => '鍵'.repeat(n); // 3 bytes each in UTF-8
    const key = await expectBqError(send(owner, t, {}, { key: cjk(900) }), 'BQ005', /key 1 of 1 .*2048 bytes.*2700 bytes/);
    expect(key.hint).toMatch(/2048 bytes/);
    await expectBqError(send(owner, t, {}, { idempotencyKey: cjk(900) }), 'BQ005', /idempotency key 1 of 1 .*2048 bytes/);
    await expectBqError(
      owner.query(`select bucketq.send_batch($1, array['{}', '{}']::jsonb[], keys => array['a', $2])`, [t, cjk(1000)]),
      'BQ005',
      /key 2 of 2/,
    );
    // Within both limits: accepted, and sent again with the same idempotency key, the same id.
    const ok = cjk(682); // 2046 bytes
    const id = await send(owner, t, { n: 1 }, { key: ok, idempotencyKey: ok });
    expect(await send(owner, t, { n: 2 }, { key: ok, idempotencyKey: ok })).toBe(id);
    expect((await owner.query(`select count(*)::int as n from bucketq.message where topic_id = (select topic_id from bucketq.topic where name = $1)`, [t])).rows[0].n).toBe(1);
  });

  it("23: 'infinity' is refused for not_before, start_at, rewind's to_time and backoff_max (BQ005)", async () => {
    const t = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4)`, [t]);
    await expectBqError(send(owner, t, {}, { key: 'k', notBefore: 'infinity' }), 'BQ005', /not_before 1 of 1 is not a finite time/);
    await expectBqError(send(owner, t, {}, { notBefore: '-infinity' }), 'BQ005', /not_before/);
    await expectBqError(
      owner.query(`select bucketq.send_batch($1, array['{}', '{}']::jsonb[], not_before => array[now(), 'infinity'::timestamptz])`, [t]),
      'BQ005',
      /not_before 2 of 2/,
    );
    await expectBqError(owner.query(`select bucketq.create_group($1, $2, 'infinity')`, [ctx.unique('g'), t]), 'BQ005', /start_at .*not a finite time/);
    await expectBqError(owner.query(`select bucketq.create_group($1, $2, '-infinity')`, [ctx.unique('g'), t]), 'BQ005', /start_at/);
    // Before Postgres 17 an interval cannot be infinite: the server refuses the input (22007).
    const { rows: v } = await owner.query(`select current_setting('server_version_num')::int >= 170000 as infinite_intervals`);
    const infiniteBackoff = owner.query(`select bucketq.create_group($1, $2, backoff_max => 'infinity')`, [ctx.unique('g'), t]);
    if (v[0].infinite_intervals) await expectBqError(infiniteBackoff, 'BQ005', /backoff/);
    else expect((await pgError(infiniteBackoff)).code).toBe('22007');
    const g = ctx.unique('g');
    await owner.query(`select bucketq.create_group($1, $2, 'earliest')`, [g, t]);
    await expectBqError(owner.query(`select bucketq.rewind($1, 'infinity')`, [g]), 'BQ005', /finite/);
    // Nothing was sent or created by the refused calls.
    const { rows } = await owner.query(`select (select count(*)::int from bucketq.message m join bucketq.topic x using (topic_id) where x.name = $1) as messages,
                                               (select count(*)::int from bucketq.consumer_group g join bucketq.topic x using (topic_id) where x.name = $1) as groups`, [t]);
    expect(rows[0]).toEqual({ messages: 0, groups: 1 });
  });

  it('24: errors quote at most 100 characters of an input, plus its size (of a list of ids, 10 and the count)', async () => {
    const t = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4)`, [t]);
    const g = ctx.unique('g');
    await owner.query(`select bucketq.create_group($1, $2, 'earliest')`, [g, t]);
    const huge = 'x'.repeat(1_000_000);
    const cases: [string, string, unknown[], RegExp?][] = [
      ['create_topic name', `select bucketq.create_topic($1)`, [huge]],
      ['create_group name', `select bucketq.create_group($1, $2)`, [huge, t]],
      ['create_group start_at', `select bucketq.create_group($1, $2, $3)`, [ctx.unique('g'), t, huge]],
      ['create_group on_exhausted', `select bucketq.create_group($1, $2, on_exhausted => $3)`, [ctx.unique('g'), t, huge]],
      ['send to an unknown topic', `select bucketq.send($1, '{}')`, [huge]],
      ['join an unknown group', `select * from bucketq.join($1, 'c')`, [huge]],
      ['join with a long consumer id', `select * from bucketq.join($1, $2)`, [g, huge]],
      ['grant_group to an unknown role', `select bucketq.grant_group($1, $2)`, [g, huge]],
      ['replay_dead of 100,000 ids', `select bucketq.replay_dead($1, array(select generate_series(1, 100000))::bigint[])`, [g],
        /messages \{1,2,3,4,5,6,7,8,9,10,…\} \(100000 in all\) are not/],
      ['delete_dead of 100,000 ids', `select bucketq.delete_dead($1, array(select generate_series(1, 100000))::bigint[])`, [g],
        /messages \{1,2,3,4,5,6,7,8,9,10,…\} \(100000 in all\) are not/],
    ];
    for (const [label, sql, args, quoted = /…\(\d+ bytes\)/] of cases) {
      const err = await pgError(owner.query(sql, args));
      expect({ label, code: err.code?.startsWith('BQ') }).toEqual({ label, code: true });
      expect({ label, length: err.message.length < 400 }, err.message.slice(0, 300)).toEqual({ label, length: true });
      expect(err.message, label).toMatch(quoted);
    }
    // Short inputs are quoted whole, as before.
    await expectBqError(owner.query(`select bucketq.send('no.such.topic', '{}')`), 'BQ002', /unknown topic: 'no\.such\.topic'$/);
  });

  it('25: send_batch numbers the elements 1..n whatever the arrays start at (an oversized payload is BQ004, not "is null")', async () => {
    const t = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4, max_payload_bytes => 100)`, [t]);
    const big = JSON.stringify({ x: 'y'.repeat(200) });
    // An array whose lower bound is 0: '[0:1]={...}'.
    const zeroBased = await pgError(owner.query(`select bucketq.send_batch($1, $2::jsonb[])`, [t, arrayLiteral(0, ['{}', big])]));
    expect({ code: zeroBased.code, message: zeroBased.message }).toMatchObject({ code: 'BQ004', message: expect.stringMatching(/payload 2 of 2 is \d+ bytes, over the limit of 100 bytes/) });
    await expectBqError(owner.query(`select bucketq.send_batch($1, '[0:1]={"{}",NULL}'::jsonb[])`, [t]), 'BQ005', /payload 2 of 2 is null/);
    await expectBqError(
      owner.query(`select bucketq.send_batch($1, '[0:1]={"{}","{}"}'::jsonb[], headers => '[5:6]={NULL,"[1]"}'::jsonb[])`, [t]),
      'BQ005',
      /headers 2 of 2 is not a JSON object/,
    );
    // A well-formed batch with other lower bounds goes through, in input order.
    const { rows } = await owner.query(`select id from bucketq.send_batch($1, '[0:1]={"{\\"n\\": 1}","{\\"n\\": 2}"}'::jsonb[], keys => '[3:4]={a,b}'::text[]) id`, [t]);
    const sent = await owner.query(`select key, payload from bucketq.message where id = any($1::bigint[]) order by id`, [rows.map((r) => r.id)]);
    expect(sent.rows).toEqual([{ key: 'a', payload: { n: 1 } }, { key: 'b', payload: { n: 2 } }]);
  });

  it('6: headers count against the topic limit: oversized headers raise BQ004 and insert nothing', async () => {
    const t = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4, max_payload_bytes => 1024)`, [t]);
    const hugeHeaders = { blob: 'h'.repeat(20_000) };
    const e = await expectBqError(send(owner, t, { n: 1 }, { headers: hugeHeaders }), 'BQ004', /headers 1 of 1 are \d+ bytes: with the payload's \d+ bytes that is over the limit of 1024 bytes/);
    expect(e.hint).toMatch(/Headers count against/);
    // Each half fits, together they do not.
    await expectBqError(send(owner, t, { p: 'p'.repeat(600) }, { headers: { h: 'h'.repeat(600) } }), 'BQ004', /headers 1 of 1/);
    await expectBqError(
      owner.query(`select bucketq.send_batch($1, array['{}', '{}']::jsonb[], headers => array[null, $2]::jsonb[])`, [t, JSON.stringify(hugeHeaders)]),
      'BQ004',
      /headers 2 of 2/,
    );
    const { rows } = await owner.query(`select count(*)::int as n from bucketq.message m join bucketq.topic x using (topic_id) where x.name = $1`, [t]);
    expect(rows[0].n).toBe(0);
    await send(owner, t, { p: 'p'.repeat(300) }, { headers: { h: 'h'.repeat(300) } });
  });
});

describe('producer rights per topic (issue 13, item 5)', () => {
  it('grant_topic closes a topic to other producers (no squatting of its idempotency keys); admins always may send; revoke_topic opens it again', async () => {
    const t = ctx.unique('t');
    const other = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 4), bucketq.create_topic($2, 4)`, [t, other]);
    const team = await createRole('payroll', { in: ['bucketq_producer'] });
    const insider = await login('payroll_app', team);
    const outsider = await login('other_app', 'bucketq_producer');
    const admin = await login('admin', 'bucketq_admin');
    const consumer = await login('consumer', 'bucketq_consumer');

    // Open while nobody was granted it.
    await send(outsider, t, { open: true });
    expect((await admin.query(`select bucketq.grant_topic($1, $2) as g`, [t, team])).rows[0].g).toBe(true);
    expect((await admin.query(`select bucketq.grant_topic($1, $2) as g`, [t, team])).rows[0].g).toBe(false);

    // The outsider can neither send nor squat an idempotency key of the topic.
    for (const attempt of [
      send(outsider, t, { evil: true }, { idempotencyKey: 'payrun-2026-12' }),
      outsider.query(`select bucketq.send_batch($1, array['{}']::jsonb[])`, [t]),
    ]) {
      const err = await pgError(attempt);
      expect({ code: err.code, message: err.message }).toMatchObject({ code: '42501', message: expect.stringMatching(/permission denied for topic .* not among its producers/) });
      expect(err.hint).toMatch(/grant_topic/);
    }
    const mine = await send(insider, t, { run: 'december' }, { idempotencyKey: 'payrun-2026-12' });
    const { rows } = await owner.query(`select payload from bucketq.message where id = $1`, [mine]);
    expect(rows[0].payload).toEqual({ run: 'december' });
    await send(admin, t, { by: 'admin' });
    // Other topics stay open to the outsider.
    await send(outsider, other, { fine: true });

    // Only admins (and the owner) grant; producers and consumers may not.
    for (const c of [outsider, insider, consumer]) {
      expect((await pgError(c.query(`select bucketq.grant_topic($1, $2)`, [t, team]))).code).toBe('42501');
      expect((await pgError(c.query(`select bucketq.revoke_topic($1, $2)`, [t, team]))).code).toBe('42501');
    }
    await expectBqError(admin.query(`select bucketq.grant_topic($1, $2)`, [t, `no_such_role_${suffix}`]), 'BQ005', /does not exist/);
    await expectBqError(admin.query(`select bucketq.grant_topic('no.such.topic', $1)`, [team]), 'BQ002');

    expect((await admin.query(`select bucketq.revoke_topic($1, $2) as r`, [t, team])).rows[0].r).toBe(true);
    await send(outsider, t, { open: 'again' });
  });
});

describe('SET ROLE narrows access for a pooled login (issue 13, item 14)', () => {
  it('a login in several roles, switched with SET ROLE to one without access, is refused groups and topics of the others', async () => {
    const t = ctx.unique('t');
    const g = ctx.unique('g');
    await owner.query(`select bucketq.create_topic($1, 4)`, [t]);
    await owner.query(`select bucketq.create_group($1, $2, 'earliest')`, [g, t]);
    const billing = await createRole('billing', { in: ['bucketq_consumer', 'bucketq_producer'] });
    const reports = await createRole('reports', { in: ['bucketq_consumer', 'bucketq_producer'] });
    await owner.query(`select bucketq.grant_group($1, $2)`, [g, billing]);
    const pooled = await login('pool', billing, reports);

    // As itself (a member of billing) it may consume the group.
    await pooled.query(`select * from bucketq.join($1, 'p1')`, [g]);
    expect((await pooled.query(`select group_name from bucketq.groups where group_name = $1`, [g])).rows).toHaveLength(1);

    await pooled.query(`set role ${reports}`);
    try {
      const joined = await pgError(pooled.query(`select * from bucketq.join($1, 'p2')`, [g]));
      expect({ code: joined.code, message: joined.message }).toMatchObject({ code: '42501', message: expect.stringContaining(`role ${reports} is not among its consumers`) });
      expect((await pgError(pooled.query(`select * from bucketq.heartbeat($1, 'p1')`, [g]))).code).toBe('42501');
      expect((await pooled.query(`select group_name from bucketq.groups where group_name = $1`, [g])).rows).toHaveLength(0);
    } finally {
      await pooled.query(`reset role`);
    }
    // The same for a topic restricted with grant_topic.
    await owner.query(`select bucketq.grant_topic($1, $2)`, [t, billing]);
    await send(pooled, t, { as: 'login' });
    await pooled.query(`set role ${reports}`);
    try {
      expect((await pgError(send(pooled, t, { as: 'reports' }))).code).toBe('42501');
    } finally {
      await pooled.query(`reset role`);
    }
    // SET LOCAL ROLE inside a transaction narrows it for that transaction only.
    await pooled.query('begin');
    await pooled.query(`set local role ${reports}`);
    expect((await pgError(pooled.query(`select * from bucketq.heartbeat($1, 'p1')`, [g]))).code).toBe('42501');
    await pooled.query('rollback');
    expect((await pooled.query(`select * from bucketq.heartbeat($1, 'p1')`, [g])).rows.length).toBeGreaterThan(0);
    // SET ROLE to the granted role keeps access.
    await pooled.query(`set role ${billing}`);
    await send(pooled, t, { as: 'billing' });
    await pooled.query(`reset role`);
  });
});

describe('what monitors and consumers may read (issue 13, item 7)', () => {
  it('the migration does not give the cluster-wide pg_monitor to bucketq_monitor (the test server migrates as a superuser)', async () => {
    const { rows } = await owner.query(`select pg_has_role('bucketq_monitor', 'pg_monitor', 'member') as m, pg_has_role('bucketq_monitor', 'pg_read_all_stats', 'member') as s`);
    expect(rows[0]).toEqual({ m: false, s: false });
    // ... and running the grants again takes it back if something gave it.
    await owner.query(`grant pg_monitor to bucketq_monitor`);
    await owner.query(`select bucketq._grant_roles()`);
    expect((await owner.query(`select pg_has_role('bucketq_monitor', 'pg_monitor', 'member') as m`)).rows[0].m).toBe(false);
  });

  it("a monitor sees a restricted group's dead letters and messages without payloads or headers; consumers see only the groups they may consume", async () => {
    const t = ctx.unique('t');
    const secret = ctx.unique('g');
    const open = ctx.unique('g');
    const openTopic = ctx.unique('t');
    await owner.query(`select bucketq.create_topic($1, 1), bucketq.create_topic($2, 1)`, [t, openTopic]);
    await owner.query(`select bucketq.create_group($1, $2, 'earliest', max_attempts => 1)`, [secret, t]);
    await owner.query(`select bucketq.create_group($1, $2, 'earliest', max_attempts => 1)`, [open, openTopic]);
    const team = await createRole('hr', { in: ['bucketq_consumer'] });
    await owner.query(`select bucketq.grant_group($1, $2)`, [secret, team]);
    const monitor = await login('monitor', 'bucketq_monitor');
    const admin = await login('admin2', 'bucketq_admin');
    const outsider = await login('outsider', 'bucketq_consumer');
    const insider = await login('insider', team);

    const id = await send(owner, t, { salary: 123456 }, { key: 'alice', headers: { who: 'alice' } });
    const openId = await send(owner, openTopic, { public: true }, { headers: { h: 1 } });
    for (const [c, group] of [[insider, secret], [outsider, open]] as const) {
      await c.query(`select * from bucketq.join($1, 'w')`, [group]);
      expect((await nack(c, group, await claim(c, group, 'w'), { error: 'poison' })).map((r) => r.status)).toEqual(['dead']);
    }

    const dead = await monitor.query(`select group_name, msg_id::int, last_error, payload, headers from bucketq.dead_letters where group_name in ($1, $2) order by msg_id`, [secret, open]);
    expect(dead.rows).toEqual([
      { group_name: secret, msg_id: id, last_error: 'poison', payload: null, headers: null },
      { group_name: open, msg_id: openId, last_error: 'poison', payload: { public: true }, headers: { h: 1 } },
    ]);
    const msgs = await monitor.query(`select msg_id::int, payload, headers from bucketq.messages where msg_id = any($1::bigint[]) order by msg_id`, [[id, openId]]);
    expect(msgs.rows).toEqual([
      { msg_id: id, payload: null, headers: null },
      { msg_id: openId, payload: { public: true }, headers: { h: 1 } },
    ]);
    // The admin reads them.
    const adminDead = await admin.query(`select payload from bucketq.dead_letters where group_name = $1`, [secret]);
    expect(adminDead.rows).toEqual([{ payload: { salary: 123456 } }]);
    expect((await admin.query(`select payload from bucketq.messages where msg_id = $1`, [id])).rows).toEqual([{ payload: { salary: 123456 } }]);

    // bucketq.groups: a consumer sees the groups it may consume; monitors see all.
    const seen = async (c: pg.Client) =>
      (await c.query(`select group_name from bucketq.groups where group_name in ($1, $2)`, [secret, open])).rows.map((r) => r.group_name as string).sort();
    expect(await seen(outsider)).toEqual([open]);
    expect(await seen(insider)).toEqual([secret, open].sort());
    expect(await seen(monitor)).toEqual([secret, open].sort());
  });
});

describe('roles bound to one database (issue 13, item 3)', () => {
  const dbs: FreshDatabase[] = [];
  const dbRoles: string[] = [];
  afterAll(async () => {
    // The per-database roles hold rights only in their databases: drop those first.
    for (const db of dbs) await db.drop();
    for (const r of dbRoles) await owner.query(`drop role if exists ${r}`).catch(() => {});
  });

  it("with per-database roles (bucketq._create_database_roles), a grant in one database gives nothing in another, and the cluster-wide roles nothing in either", async () => {
    const [a, b] = [await freshDatabase(), await freshDatabase()];
    dbs.push(a, b);
    const roleNames: Record<string, Record<string, string>> = {};
    for (const [name, db] of [['a', a], ['b', b]] as const) {
      const c = new pg.Client({ connectionString: db.connectionString });
      await c.connect();
      try {
        const { rows } = await c.query(`select r from bucketq._create_database_roles() r`);
        dbRoles.push(...rows.map((r) => r.r as string));
        const kinds = await c.query(`select k, bucketq._role(k) as r from unnest(array['producer', 'consumer', 'monitor', 'admin']) k`);
        roleNames[name] = Object.fromEntries(kinds.rows.map((r) => [r.k, r.r]));
        // The same topic and group names in both databases.
        await c.query(`select bucketq.create_topic('shared.topic', 2)`);
        await c.query(`select bucketq.create_group('shared.group', 'shared.topic', 'earliest')`);
        await send(c, 'shared.topic', { db: name }, { key: 'k' });
      } finally {
        await c.end();
      }
    }
    expect(roleNames.a!.consumer).toMatch(/^bucketq_consumer_bq_/);
    expect(roleNames.a!.consumer).not.toBe(roleNames.b!.consumer);
    // This file's own database keeps the cluster-wide roles.
    expect((await owner.query(`select bucketq._role('consumer') as r`)).rows[0].r).toBe('bucketq_consumer');

    const tenantRole = await createRole('tenant_a', { login: true, in: [roleNames.a!.producer!, roleNames.a!.consumer!] });
    const monitorRole = await createRole('monitor_a', { login: true, in: [roleNames.a!.monitor!] });
    const adminRole = await createRole('admin_a', { login: true, in: [roleNames.a!.admin!] });
    const legacyRole = await createRole('legacy', { login: true, in: ['bucketq_producer', 'bucketq_consumer', 'bucketq_monitor', 'bucketq_admin'] });

    // In its own database the tenant produces and consumes.
    const inA = await connectAs(tenantRole, a);
    await send(inA, 'shared.topic', { from: 'tenant' });
    await inA.query(`select * from bucketq.join('shared.group', 'w')`);
    expect((await claim(inA, 'shared.group', 'w')).map((m) => m.payload)).toEqual(expect.arrayContaining([{ db: 'a' }]));
    expect((await connectAs(monitorRole, a).then((c) => c.query(`select count(*)::int as n from bucketq.topics`))).rows[0].n).toBe(1);
    await connectAs(adminRole, a).then((c) => c.query(`select bucketq.create_topic('admin.topic')`));

    // In the other database the same logins may do nothing.
    const denied = async (user: string, sql: string) => {
      const c = await connectAs(user, b);
      const err = await pgError(c.query(sql));
      expect({ user, sql, code: err.code }).toEqual({ user, sql, code: '42501' });
    };
    await denied(tenantRole, `select bucketq.send('shared.topic', '{}')`);
    await denied(tenantRole, `select * from bucketq.join('shared.group', 'w')`);
    await denied(tenantRole, `select * from bucketq.claim('shared.group', 'w')`);
    await denied(monitorRole, `select * from bucketq.dead_letters`);
    await denied(adminRole, `select bucketq.create_topic('admin.topic')`);
    await denied(adminRole, `select bucketq.replay_dead('shared.group')`);

    // The cluster-wide roles have no rights in a database that has its own roles.
    for (const db of [a, b]) {
      const c = await connectAs(legacyRole, db);
      for (const sql of [`select bucketq.send('shared.topic', '{}')`, `select * from bucketq.join('shared.group', 'x')`, `select * from bucketq.groups`, `select bucketq.create_topic('x')`]) {
        expect((await pgError(c.query(sql))).code).toBe('42501');
      }
    }
  });
});
