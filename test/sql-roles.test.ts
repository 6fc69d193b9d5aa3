// Least privilege (migration 000009): bucketq_producer, bucketq_consumer, bucketq_monitor
// and bucketq_admin can each do their job and nothing else; a login user with none of
// them can do nothing at all. Each role is exercised through a real login user that is
// a member of it (roles are cluster-wide: the users get unique names and are dropped
// afterwards).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { ack, claim, nack, pgError, send, sendBatch, useDatabase, type Claimed } from './helpers/sql.js';

const ctx = useDatabase();

const suffix = randomBytes(4).toString('hex');
const PASSWORD = `pw_${suffix}`;
type Who = 'producer' | 'consumer' | 'monitor' | 'admin' | 'nobody';
const WHO: Who[] = ['producer', 'consumer', 'monitor', 'admin', 'nobody'];
const userName = (who: Who) => `bqtest_${who}_${suffix}`;

let owner: pg.Client;
const as = {} as Record<Who, pg.Client>;
const extraClients: pg.Client[] = [];

interface Fn {
  name: string;
  sig: string;
  call: string;
}
let functions: Fn[];
let views: string[];
let tables: string[];
let sequences: string[];

const PUBLIC_FUNCTIONS = ['ack', 'claim', 'claim_locked', 'create_group', 'create_schedule', 'create_topic', 'delete_dead', 'delete_group', 'delete_topic', 'drop_schedule', 'grant_group', 'grant_topic', 'heartbeat', 'join', 'leave', 'maintain', 'metrics', 'nack', 'pause_group', 'record_attempt', 'reject', 'replay_dead', 'resume_group', 'revoke_group', 'revoke_topic', 'rewind', 'send', 'send_batch', 'skip_to_latest'];
// Internal functions the views call (checked against the view's reader). _schema_owner:
// _now is inlined into the views, and its body calls it.
const VIEW_HELPERS = ['_log_backlog_any', '_log_backlog_buckets', '_log_backlog_total', '_may_read_payloads', '_may_see_group', '_now', '_schema_owner'];
const VIEWS = ['buckets', 'consumers', 'dead_letters', 'groups', 'lag', 'rotations', 'schedules', 'table_sizes', 'throughput', 'topics', 'vacuum_horizon'];
// Workers fire the schedules of their group's topic (only what an admin scheduled).
const SCHEDULE_FIRING = ['_due_schedules', '_fire_schedules'];

/** What each user may do: functions by name, views by name. Everything else is denied. */
const allowed: Record<Who, { functions: string[]; views: string[] | 'all' }> = {
  producer: { functions: ['send', 'send_batch'], views: [] },
  consumer: { functions: ['ack', 'claim', 'claim_locked', 'heartbeat', 'join', 'leave', 'maintain', 'nack', 'record_attempt', 'reject', '_log_backlog_any', '_log_backlog_buckets', '_log_backlog_total', '_may_see_group', ...SCHEDULE_FIRING], views: ['groups'] },
  monitor: { functions: [...VIEW_HELPERS, 'metrics'], views: 'all' },
  admin: { functions: [...PUBLIC_FUNCTIONS, ...VIEW_HELPERS, ...SCHEDULE_FIRING], views: 'all' },
  nobody: { functions: [], views: [] },
};
const allowedViews = (who: Who) => (allowed[who].views === 'all' ? views : (allowed[who].views as string[]));

function connectAs(user: string): Promise<pg.Client> {
  const url = new URL(ctx.db.connectionString);
  url.username = user;
  url.password = PASSWORD;
  const c = new pg.Client({ connectionString: url.toString() });
  c.on('error', () => {});
  extraClients.push(c);
  return c.connect().then(() => c);
}

function urlOf(who: Who): string {
  const url = new URL(ctx.db.connectionString);
  url.username = userName(who);
  url.password = PASSWORD;
  return url.toString();
}

async function expectDenied(p: Promise<unknown>, label: string): Promise<void> {
  const err = await pgError(p).catch((e: Error) => {
    throw new Error(`${label}: ${e.message}`);
  });
  expect({ label, code: err.code, message: err.message }).toMatchObject({ label, code: '42501', message: expect.stringMatching(/permission denied/) });
}

const T = 'roles.topic';
const G = 'roles.group';

beforeAll(async () => {
  owner = await ctx.session();
  for (const who of WHO) {
    const inRole = who === 'nobody' ? '' : ` in role bucketq_${who}`;
    await owner.query(`create role ${userName(who)} login password '${PASSWORD}'${inRole}`);
  }
  for (const who of WHO) as[who] = await connectAs(userName(who));

  await owner.query(`select bucketq.create_topic($1, 4)`, [T]);
  await owner.query(`select bucketq.create_group($1, $2, 'earliest', max_attempts => 2, backoff_base => '0', backoff_max => '0')`, [G, T]);

  // Every function in the schema, with a call of it on NULL arguments (a privilege
  // check happens before any argument is looked at).
  ({ rows: functions } = await owner.query(`
    select p.proname as name, p.oid::regprocedure::text as sig,
           format('select bucketq.%I(%s)', p.proname,
                  (select coalesce(string_agg(format('null::%s', format_type(t, null)), ', '), '') from unnest(p.proargtypes) t)) as call
      from pg_proc p where p.pronamespace = 'bucketq'::regnamespace order by 2`));
  const rels = (kinds: string) =>
    owner
      .query(`select format('%I', relname) as name from pg_class where relnamespace = 'bucketq'::regnamespace and relkind = any($1) order by 1`, [kinds.split('')])
      .then((r) => r.rows.map((x) => x.name as string));
  views = await rels('v');
  tables = await rels('rp');
  sequences = await rels('S');
});

afterAll(async () => {
  await Promise.all(extraClients.map((c) => c.end().catch(() => {})));
  const names = WHO.map(userName).join(', ');
  // Roles outlive the database: revoke what they hold here, then drop them.
  await owner.query(`drop owned by ${names}`).catch(() => {});
  for (const who of WHO) await owner.query(`drop role if exists ${userName(who)}`);
});

describe('the migration', () => {
  it('creates the four NOLOGIN group roles, and makes the admin a member of the other three', async () => {
    const { rows } = await owner.query(`
      select rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb
        from pg_roles where rolname in ('bucketq_producer', 'bucketq_consumer', 'bucketq_monitor', 'bucketq_admin') order by 1`);
    expect(rows).toEqual(
      ['bucketq_admin', 'bucketq_consumer', 'bucketq_monitor', 'bucketq_producer'].map((rolname) => ({
        rolname, rolcanlogin: false, rolsuper: false, rolcreaterole: false, rolcreatedb: false,
      })),
    );
    const { rows: m } = await owner.query(`
      select r as role, pg_has_role('bucketq_admin', r, 'member') as member
        from unnest(array['bucketq_producer', 'bucketq_consumer', 'bucketq_monitor']) r`);
    expect(m.filter((x) => !x.member)).toEqual([]);
    // bucketq_monitor no longer gets the cluster-wide pg_monitor: test/sql-trust.test.ts.
  });

  it('makes every public function SECURITY DEFINER with a fixed search_path (and the backlog counts the views use)', async () => {
    const { rows } = await owner.query(`
      select p.proname as name, p.prosecdef as definer, p.proconfig as config
        from pg_proc p
       where p.pronamespace = 'bucketq'::regnamespace and (p.proname !~ '^_' or p.proname in ('_log_backlog_any', '_log_backlog_buckets', '_log_backlog_total'))
       order by 1`);
    expect(rows.map((r) => r.name)).toEqual(expect.arrayContaining([...PUBLIC_FUNCTIONS, '_log_backlog_any', '_log_backlog_buckets', '_log_backlog_total']));
    expect(rows.filter((r) => !r.definer || !(r.config ?? []).includes('search_path=pg_catalog, bucketq, pg_temp'))).toEqual([]);
  });

  it('running its grants again changes nothing (idempotent)', async () => {
    // Effective rights (a NULL ACL means the owner-only default, which REVOKE spells out).
    const acl = () => owner.query(`
      select c.relname, coalesce(c.relacl, acldefault((case c.relkind when 'S' then 's' else 'r' end)::"char", c.relowner))::text as acl
        from pg_class c where c.relnamespace = 'bucketq'::regnamespace
      union all
      select p.oid::regprocedure::text, coalesce(p.proacl, acldefault('f', p.proowner))::text from pg_proc p where p.pronamespace = 'bucketq'::regnamespace
      union all
      select 'schema', coalesce(nspacl, acldefault('n', nspowner))::text from pg_namespace where nspname = 'bucketq'
      order by 1`);
    const before = (await acl()).rows;
    await owner.query(`select bucketq._grant_roles()`);
    expect((await acl()).rows).toEqual(before);
  });
});

describe('privileges in the catalog are exactly the intended ones', () => {
  it.each(WHO)('%s', async (who) => {
    const user = userName(who);
    const fns = await owner.query(`
      select distinct p.proname as name from pg_proc p
       where p.pronamespace = 'bucketq'::regnamespace and has_function_privilege($1, p.oid, 'execute') order by 1`, [user]);
    expect(fns.rows.map((r) => r.name)).toEqual([...allowed[who].functions].sort());
    const rels = await owner.query(`
      select c.relname, c.relkind,
             array(select x from unnest(array['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger']) x
                    where has_table_privilege($1, c.oid, x)) as privs
        from pg_class c
       where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('r', 'p', 'v')
         and has_table_privilege($1, c.oid, 'select, insert, update, delete, truncate, references, trigger')
       order by 1`, [user]);
    expect(rels.rows).toEqual([...allowedViews(who)].sort().map((v) => ({ relname: v, relkind: 'v', privs: ['select'] })));
    const seqs = await owner.query(`
      select c.relname from pg_class c
       where c.relnamespace = 'bucketq'::regnamespace and case when c.relkind = 'S' then has_sequence_privilege($1, c.oid, 'usage, select, update') end`, [user]);
    expect(seqs.rows).toEqual([]);
    const schema = await owner.query(`select has_schema_privilege($1, 'bucketq', 'usage') as usage, has_schema_privilege($1, 'bucketq', 'create') as create`, [user]);
    expect(schema.rows[0]).toEqual({ usage: who !== 'nobody', create: false });
  });

  it('PUBLIC has nothing: no function, table, view, sequence or schema right', async () => {
    const { rows } = await owner.query(`
      select 'function ' || p.oid::regprocedure::text as what from pg_proc p
       where p.pronamespace = 'bucketq'::regnamespace and has_function_privilege('public', p.oid, 'execute')
      union all
      select 'relation ' || c.relname from pg_class c
       where c.relnamespace = 'bucketq'::regnamespace and c.relkind in ('r', 'p', 'v')
         and has_table_privilege('public', c.oid, 'select, insert, update, delete, truncate, references, trigger')
      union all
      select 'sequence ' || c.relname from pg_class c
       where c.relnamespace = 'bucketq'::regnamespace and case when c.relkind = 'S' then has_sequence_privilege('public', c.oid, 'usage, select, update') end
      union all
      select 'schema' where has_schema_privilege('public', 'bucketq', 'usage, create')`);
    expect(rows).toEqual([]);
  });
});

describe('what each role may not do fails with insufficient_privilege (42501)', () => {
  it.each(WHO)('%s: every function it was not granted', async (who) => {
    const denied = functions.filter((f) => !allowed[who].functions.includes(f.name));
    expect(denied.length).toBeGreaterThan(0);
    for (const f of denied) await expectDenied(as[who].query(f.call), `${who} calling ${f.sig}`);
  });

  it.each(WHO)('%s: every view it was not granted, every table and every sequence, read or write', async (who) => {
    for (const v of views.filter((v) => !allowedViews(who).includes(v))) {
      await expectDenied(as[who].query(`select * from bucketq.${v} limit 1`), `${who} reading view ${v}`);
    }
    expect(tables).toEqual(expect.arrayContaining(['inbox', 'message', 'topic', 'delivery', 'dead_letter', 'bucket_owner', 'migration']));
    for (const t of tables) {
      await expectDenied(as[who].query(`select * from bucketq.${t} limit 1`), `${who} reading table ${t}`);
      await expectDenied(as[who].query(`delete from bucketq.${t}`), `${who} deleting from table ${t}`);
    }
    for (const s of sequences) {
      await expectDenied(as[who].query(`select nextval('bucketq.${s}')`), `${who} taking nextval of ${s}`);
    }
  });
});

describe('each role can do its job', () => {
  let ids: number[];

  it('producer: send and send_batch, also inside its own transaction, keyed or not', async () => {
    const p = as.producer;
    const one = await send(p, T, { n: 1 }, { key: 'k1' });
    const two = await send(p, T, { n: 2 }, { key: 'k1' });
    await p.query('begin');
    const batch = await sendBatch(p, T, [{ n: 3 }, { n: 4 }], { keys: ['k1', null] });
    await p.query('commit');
    ids = [one, two, ...batch];
    const { rows } = await owner.query(`select id, key_seq from bucketq.message where id = any($1::bigint[]) order by id`, [ids]);
    expect(rows.map((r) => Number(r.key_seq ?? 0))).toEqual([1, 2, 3, 0]);
    // Each group reads them from the log (sending writes nothing per group): 2 keys'
    // heads ready, the rest of k1 behind its head.
    const { rows: lag } = await owner.query(`select sum(ready + waiting)::int as n from bucketq.lag where topic = $1`, [T]);
    expect(lag[0].n).toBeGreaterThanOrEqual(4);
    const inbox = await owner.query(`select count(*)::int as n from bucketq.inbox where msg_id = any($1::bigint[])`, [ids]);
    expect(inbox.rows[0].n).toBe(0);
  });

  it('producer: cannot move the bucketq clock (the offset is honoured for the schema owner only)', async () => {
    const p = as.producer;
    await p.query(`set bucketq.clock_offset = '10 years'`);
    try {
      const id = await send(p, T, { n: 'clock' });
      const { rows } = await owner.query(`select sent_at > now() + interval '1 day' as future from bucketq.message where id = $1`, [id]);
      expect(rows[0].future).toBe(false);
      ids.push(id);
    } finally {
      await p.query(`reset bucketq.clock_offset`);
    }
    // ... while the owner's offset still works (the tests' movable clock).
    await owner.query(`set bucketq.clock_offset = '10 years'`);
    try {
      const { rows } = await owner.query(`select bucketq._now() > now() + interval '9 years' as moved`);
      expect(rows[0].moved).toBe(true);
    } finally {
      await owner.query(`reset bucketq.clock_offset`);
    }
  });

  it('consumer: reads its group settings, joins, claims in key order, acks, nacks, heartbeats, maintains, leaves', async () => {
    const c = as.consumer;
    const { rows: settings } = await c.query(`select topic, max_attempts from bucketq.groups where group_name = $1`, [G]);
    expect(settings).toEqual([{ topic: T, max_attempts: 2 }]);
    const joined = await c.query(`select * from bucketq.join($1, 'w1')`, [G]);
    expect(joined.rows).toHaveLength(4);

    const first = await claim(c, G, 'w1');
    const byId = (ms: Claimed[]) => ms.map((m) => m.msg_id).sort((a, b) => a - b);
    expect(byId(first)).toEqual([ids[0], ids[3], ids[4]].sort((a, b) => a! - b!)); // k1's head and the unkeyed ones
    expect(await ack(c, G, first)).toEqual(first.map((m) => ({ msg_id: m.msg_id, status: 'acked' })));

    const second = await claim(c, G, 'w1');
    expect(byId(second)).toEqual([ids[1]]); // k1's second message, promoted by the ack
    expect((await nack(c, G, second, { retryDelay: '0' })).map((r) => r.status)).toEqual(['retry']);
    const again = await claim(c, G, 'w1');
    expect(byId(again)).toEqual([ids[1]]);
    expect(again[0]!.attempt).toBe(2);
    expect((await nack(c, G, again, { error: 'poison' })).map((r) => r.status)).toEqual(['dead']); // max_attempts 2

    const hb = await c.query(`select * from bucketq.heartbeat($1, 'w1')`, [G]);
    expect(hb.rows).toHaveLength(4);
    await c.query(`select * from bucketq.maintain(wait => false)`);
    const left = await c.query(`select bucketq.leave($1, 'w1') as n`, [G]);
    expect(left.rows[0].n).toBe(4);

    const { rows: done } = await owner.query(`select msg_id from bucketq.deliveries where group_id = (select group_id from bucketq.consumer_group where name = $1) order by msg_id`, [G]);
    expect(done.map((r) => Number(r.msg_id))).toEqual(byId(first));
  });

  it('consumer: a group granted to certain roles is closed to other consumers; revoking the last role opens it again', async () => {
    const team = `bqtest_team_${suffix}`;
    const member = `bqtest_member_${suffix}`;
    const group = 'roles.group.private';
    try {
      await owner.query(`create role ${team} nologin in role bucketq_consumer`);
      await owner.query(`create role ${member} login password '${PASSWORD}' in role ${team}`);
      await owner.query(`select bucketq.create_group($1, $2, 'earliest')`, [group, T]);
      const insider = await connectAs(member);
      // Open while nobody was granted it.
      await as.consumer.query(`select * from bucketq.join($1, 'outsider-0')`, [group]);
      await as.consumer.query(`select bucketq.leave($1, 'outsider-0')`, [group]);

      expect((await owner.query(`select bucketq.grant_group($1, $2) as g`, [group, team])).rows[0].g).toBe(true);
      for (const call of [
        `select * from bucketq.join($1, 'outsider')`,
        `select * from bucketq.heartbeat($1, 'outsider')`,
        `select * from bucketq.claim($1, 'outsider')`,
        `select * from bucketq.claim($1, 'outsider', buckets => array[0])`,
        `select * from bucketq.claim_locked($1, 'outsider', buckets => array[0])`,
        `select * from bucketq.ack($1, '{1}', '{1}')`,
        `select * from bucketq.nack($1, '{1}', '{1}')`,
        `select bucketq.leave($1, 'outsider')`,
      ]) {
        const err = await pgError(as.consumer.query(call, [group]));
        expect({ call, code: err.code, message: err.message }).toMatchObject({ call, code: '42501', message: expect.stringMatching(/not among its consumers/) });
        expect(err.hint).toMatch(/grant_group/);
      }
      // A member of the granted role consumes it; the admin always may.
      expect((await insider.query(`select * from bucketq.join($1, 'insider')`, [group])).rows).toHaveLength(4);
      expect(await claim(insider, group, 'insider')).not.toHaveLength(0);
      // and claims in one named bucket, as wake-ups do (the group's lookup goes through _group)
      await insider.query(`select * from bucketq.claim($1, 'insider', buckets => array[0])`, [group]);
      await as.admin.query(`select * from bucketq.join($1, 'admin-w')`, [group]);
      // Other groups stay open to the outsider.
      await as.consumer.query(`select * from bucketq.join($1, 'outsider-1')`, [G]);
      await as.consumer.query(`select bucketq.leave($1, 'outsider-1')`, [G]);

      expect((await owner.query(`select bucketq.revoke_group($1, $2) as r`, [group, team])).rows[0].r).toBe(true);
      await as.consumer.query(`select * from bucketq.join($1, 'outsider-2')`, [group]);
      const bad = await pgError(owner.query(`select bucketq.grant_group($1, 'no_such_role_${suffix}')`, [group]));
      expect(bad.code).toBe('BQ005');
      // Only admins (and the owner) may grant.
      expect((await pgError(as.consumer.query(`select bucketq.grant_group($1, $2)`, [group, team]))).code).toBe('42501');
    } finally {
      await owner.query(`drop owned by ${member}, ${team}`).catch(() => {});
      await owner.query(`drop role if exists ${member}`);
      await owner.query(`drop role if exists ${team}`);
    }
  });

  it('consumer: the worker runtime runs under it (group settings, heartbeats, maintenance) without a single failure', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    await owner.query(`create table role_effects (msg_id bigint primary key)`);
    await owner.query(`grant insert on role_effects to ${userName('consumer')}`);
    const topic = 'roles.worker';
    const group = 'roles.worker.g';
    await owner.query(`select bucketq.create_topic($1, 4)`, [topic]);
    await owner.query(`select bucketq.create_group($1, $2, 'earliest')`, [group, topic]);
    const sent = await sendBatch(as.producer, topic, [1, 2, 3, 4, 5].map((n) => ({ n })), { keys: ['a', 'b', 'a', 'c', 'a'] });

    const bq = new BucketQ({ connectionString: urlOf('consumer') });
    try {
      const worker = await bq.consume(
        {
          group,
          heartbeatIntervalMs: 50,
          maintenanceIntervalMs: 1, // every heartbeat tick
          handler: async (m, hctx) => {
            await hctx.client.query('insert into role_effects (msg_id) values ($1)', [m.msgId]);
          },
        },
        logger,
      );
      const deadline = Date.now() + 20_000;
      while (Number((await owner.query(`select count(*) from role_effects`)).rows[0].count) < sent.length) {
        if (Date.now() > deadline) throw new Error('the consumer-role worker did not process the messages');
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 300)); // a few more heartbeat and maintenance ticks
      await worker.stop();
    } finally {
      await bq.close();
    }
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual([]);
    const { rows } = await owner.query(`select pending from bucketq.groups where group_name = $1`, [group]);
    expect(Number(rows[0].pending)).toBe(0);
  });

  it('consumer: the backlog counts the views call answer for its group\'s own topic only', async () => {
    // _log_backlog_total and _log_backlog_buckets run as the owner and take the group's
    // topic and bucket count from the view. Called directly with another topic, they
    // counted that topic's messages past this group's positions.
    const other = 'roles.other';
    await owner.query(`select bucketq.create_topic($1, 4)`, [other]);
    await owner.query(`select count(*) from bucketq.send_batch($1, array(select jsonb_build_object('n', x) from generate_series(1, 5) x))`, [other]);
    const { rows } = await owner.query<{ group_id: number; topic_id: number; other_id: number }>(
      `select g.group_id, g.topic_id, (select topic_id from bucketq.topic where name = $2) as other_id
         from bucketq.consumer_group g where g.name = $1`, [G, other]);
    const { group_id: gid, topic_id: tid, other_id: oid } = rows[0]!;
    const total = (topic: number, buckets: number) => as.consumer.query<{ n: string }>(
      'select bucketq._log_backlog_total($1, $2, $3, null) as n', [gid, topic, buckets]).then((r) => Number(r.rows[0]!.n));
    const perBucket = (topic: number, buckets: number) => as.consumer.query<{ n: string }>(
      'select coalesce(sum(ready + in_flight + waiting), 0) as n, count(*) as rows from bucketq._log_backlog_buckets($1, $2, $3, null)',
      [gid, topic, buckets]).then((r) => r.rows[0]!);
    expect(await total(oid, 4)).toBe(0);
    expect(await perBucket(oid, 4)).toEqual({ n: '0', rows: '0' });
    expect(await total(tid, 1000)).toBe(0);
    const { rows: any } = await as.consumer.query<{ any: boolean }>(
      'select bool_or(bucketq._log_backlog_any($1, $2, b, null)) as any from generate_series(0, 3) b', [gid, oid]);
    expect(any[0]!.any).toBe(false);
    // Its own topic, as the view asks: the same as the view says (the inbox aside).
    const { rows: view } = await as.consumer.query<{ pending: string; inbox: string }>(
      `select pending from bucketq.groups where group_name = $1`, [G]);
    const { rows: inbox } = await owner.query<{ n: string }>(
      'select count(*) as n from bucketq.inbox where group_id = $1', [gid]);
    expect(await total(tid, 4)).toBe(Number(view[0]!.pending) - Number(inbox[0]!.n));
  });

  it('monitor: reads every view, which show what the tables hold', async () => {
    const m = as.monitor;
    expect(views).toEqual(expect.arrayContaining(VIEWS));
    for (const v of views) await m.query(`select * from bucketq.${v}`);
    const topics = await m.query(`select name, buckets from bucketq.topics where name = $1`, [T]);
    expect(topics.rows).toEqual([{ name: T, buckets: 4 }]);
    const dead = await m.query(`select msg_id, last_error, status from bucketq.dead_letters where group_name = $1`, [G]);
    expect(dead.rows).toEqual([{ msg_id: String(ids[1]), last_error: 'poison', status: 'skipped' }]);
    const lag = await m.query(`select sum(ready + waiting)::int as n from bucketq.lag where group_name = $1`, [G]);
    expect(lag.rows[0].n).toBeGreaterThan(0); // k1's third message and the clock test's one
    const sizes = await m.query(`select count(*)::int as n from bucketq.table_sizes where relation = 'inbox'`);
    expect(sizes.rows[0].n).toBe(1);
  });

  it('monitor: bucketq.metrics() works with the monitor role alone', async () => {
    const { rows } = await as.monitor.query(`select metric, value from bucketq.metrics() where group_name = $1 and metric in ('bucketq_group_dead_letters', 'bucketq_group_paused')`, [G]);
    expect(Object.fromEntries(rows.map((r) => [r.metric, r.value]))).toEqual({ bucketq_group_dead_letters: 1, bucketq_group_paused: 0 });
  });

  it("monitor: vacuum_horizon shows other users' sessions with their query once a DBA grants the monitoring login pg_read_all_stats (bucketq grants nothing cluster-wide)", async () => {
    const holder = await ctx.session();
    await holder.query(`begin isolation level repeatable read`);
    await holder.query(`select 'holding the horizon' as marker, count(*) from bucketq.topic`);
    const pid = (holder as unknown as { processID: number }).processID;
    const seen = () => as.monitor.query(`select holder, role, query from bucketq.vacuum_horizon where kind = 'session' and holder = $1`, [String(pid)]);
    try {
      // Another user's session: listed, but its query is hidden.
      const before = await seen();
      expect(before.rows).toHaveLength(1);
      expect(before.rows[0].query ?? '').not.toMatch(/holding the horizon/);
      await owner.query(`grant pg_read_all_stats to ${userName('monitor')}`);
      const { rows } = await seen();
      expect(rows).toHaveLength(1);
      expect(rows[0].query).toMatch(/holding the horizon/);
    } finally {
      await owner.query(`revoke pg_read_all_stats from ${userName('monitor')}`);
      await holder.query('rollback');
    }
  });

  it('admin: creates topics and groups, sends, consumes, replays dead letters, rewinds, maintains, reads the views', async () => {
    const a = as.admin;
    const topic = 'roles.admin';
    const group = 'roles.admin.g';
    expect((await a.query(`select bucketq.create_topic($1, 2) as created`, [topic])).rows[0].created).toBe(true);
    expect((await a.query(`select bucketq.create_group($1, $2, 'earliest', max_attempts => 1) as created`, [group, topic])).rows[0].created).toBe(true);
    const id = await send(a, topic, { n: 1 }, { key: 'x' });
    await a.query(`select * from bucketq.join($1, 'adm')`, [group]);
    const got = await claim(a, group, 'adm');
    expect(got.map((m) => m.msg_id)).toEqual([id]);
    expect((await nack(a, group, got)).map((r) => r.status)).toEqual(['dead']);
    expect((await a.query(`select count(*)::int as n from bucketq.dead_letters where group_name = $1`, [group])).rows[0].n).toBe(1);
    expect((await a.query(`select bucketq.replay_dead($1) as n`, [group])).rows[0].n).toBe(1);
    const again = await claim(a, group, 'adm');
    expect(again.map((m) => m.msg_id)).toEqual([id]);
    expect((await ack(a, group, again)).map((r) => r.status)).toEqual(['acked']);
    expect((await a.query(`select bucketq.rewind($1, now() - interval '1 hour') as n`, [group])).rows[0].n).toBe(1);
    await a.query(`select * from bucketq.maintain()`);
    await a.query(`select bucketq.leave($1, 'adm')`, [group]);
    for (const v of views) await a.query(`select * from bucketq.${v} limit 1`);
    expect((await a.query(`select pending::int from bucketq.groups where group_name = $1`, [group])).rows[0].pending).toBe(1);
  });

  it('nobody: a login user without a bucketq role cannot even resolve the schema', async () => {
    await expectDenied(as.nobody.query(`select bucketq.send($1, '{}')`, [T]), 'nobody sending');
    await expectDenied(as.nobody.query(`select * from bucketq.topics`), 'nobody reading topics');
  });
});
