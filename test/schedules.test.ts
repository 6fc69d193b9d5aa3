// Scheduled messages (issue 12): bucketq.create_schedule / drop_schedule, the view
// bucketq.schedules, and the workers' firing (_due_schedules then _fire_schedules in one
// transaction). Exactly one send per slot across many sessions and consumers, checked
// with the movable database clock (bucketq.clock_offset) instead of waiting for minutes
// to pass.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseWorkerFlags } from '../src/cli/worker-command.js';
import { BucketQ } from '../src/client.js';
import { nextSlot } from '../src/queries/schedules.js';
import { fireDueSchedules } from '../src/queries/schedules.js';
import type { Consumer } from '../src/worker/consumer.js';
import { expectBqError, pgError, setClock, stateFingerprint, useDatabase } from './helpers/sql.js';
import { inProcessCli, spawnCliProcess } from './support/cli.js';
import { waitFor } from './support/wait.js';

const ctx = useDatabase();
const quiet = pino({ level: 'silent' });
let bq: BucketQ;
let owner: pg.Client;

beforeAll(async () => {
  bq = new BucketQ({ connectionString: ctx.db.connectionString, poolMax: 6 });
  owner = await ctx.session();
});
afterAll(async () => {
  await bq?.close();
});

interface Sent {
  id: string;
  payload: unknown;
  key: string | null;
  headers: Record<string, string>;
}

/** The messages of a topic, oldest first. */
async function messagesOf(topic: string): Promise<Sent[]> {
  const { rows } = await owner.query<Sent>(
    `select m.id::text as id, m.payload, m.key, m.headers
       from bucketq.message m join bucketq.topic t on t.topic_id = m.topic_id where t.name = $1 order by m.id`,
    [topic],
  );
  return rows;
}

async function topicWithGroup(buckets = 4): Promise<{ topic: string; group: string }> {
  const topic = ctx.unique('sched.t');
  const group = ctx.unique('sched.g');
  await bq.createTopic(topic, { buckets });
  await bq.createGroup(group, topic, { startAt: 'earliest' });
  return { topic, group };
}

const dbNow = async (c: pg.ClientBase = owner) => (await c.query<{ now: Date }>('select bucketq._now() as now')).rows[0]!.now;

describe('nextSlot (cron-parser)', () => {
  it('is the first occurrence strictly after the given time, on a whole minute, in the time zone', () => {
    expect(nextSlot('*/15 * * * *', 'UTC', new Date('2026-01-01T00:15:00Z')).toISOString()).toBe('2026-01-01T00:30:00.000Z');
    expect(nextSlot('*/15 * * * *', 'UTC', new Date('2026-01-01T00:14:59.999Z')).toISOString()).toBe('2026-01-01T00:15:00.000Z');
    expect(nextSlot('* * * * *', 'UTC', new Date('2026-01-01T00:00:30Z')).toISOString()).toBe('2026-01-01T00:01:00.000Z');
    // 03:00 in Paris is 01:00 UTC in winter and after the switch to summer time 01:00 UTC too (CEST = UTC+2 -> 01:00Z).
    expect(nextSlot('0 3 * * *', 'Europe/Paris', new Date('2026-01-10T12:00:00Z')).toISOString()).toBe('2026-01-11T02:00:00.000Z');
    expect(nextSlot('0 3 * * *', 'Europe/Paris', new Date('2026-07-10T12:00:00Z')).toISOString()).toBe('2026-07-11T01:00:00.000Z');
    expect(nextSlot('@daily', 'UTC', new Date('2026-01-01T10:00:00Z')).toISOString()).toBe('2026-01-02T00:00:00.000Z');
  });

  it('refuses seconds, too few fields, bad values, the random H field and unknown time zones', () => {
    for (const bad of ['* * * * * *', '* * * *', '61 * * * *', 'x y z a b', '@minutely', '@secondly', 'H * * * *']) {
      expect(() => nextSlot(bad, 'UTC', new Date()), bad).toThrow(/invalid schedule/);
    }
    expect(() => nextSlot('* * * * *', 'Mars/Olympus', new Date())).toThrow(/unknown time zone/);
  });
});

describe('create_schedule, drop_schedule, the view', () => {
  it('creates, is idempotent, replaces a changed definition, drops; the view shows it', async () => {
    const { topic } = await topicWithGroup();
    const name = ctx.unique('sched.s');
    expect(await bq.schedule(name, { topic, cron: '0 * * * *', payload: { report: 'hourly' }, key: 'reports', headers: { source: 'cron' } })).toBe(true);
    expect(await bq.schedule(name, { topic, cron: '0 * * * *', payload: { report: 'hourly' }, key: 'reports', headers: { source: 'cron' } })).toBe(false);
    const [row] = await bq.schedules(topic);
    expect(row).toMatchObject({ name, topic, cron: '0 * * * *', timezone: 'UTC', payload: { report: 'hourly' }, key: 'reports', headers: { source: 'cron' }, paused: false, lastAt: null, lastError: null });
    const now = await dbNow();
    expect(row!.nextAt!.getTime()).toBeGreaterThan(now.getTime());
    expect(row!.nextAt!.getTime() - now.getTime()).toBeLessThanOrEqual(3_600_000);
    expect(row!.nextAt!.getUTCMinutes()).toBe(0);

    // Same cron, new payload: replaced, the slot kept.
    expect(await bq.schedule(name, { topic, cron: '0 * * * *', payload: { report: 'v2' }, key: 'reports', headers: { source: 'cron' } })).toBe(true);
    const [v2] = await bq.schedules(topic);
    expect(v2).toMatchObject({ payload: { report: 'v2' }, nextAt: row!.nextAt });
    // New cron and time zone: the slots start over.
    expect(await bq.schedule(name, { topic, cron: '30 9 * * MON', timezone: 'America/New_York', payload: { report: 'weekly' } })).toBe(true);
    const [v3] = await bq.schedules(topic);
    expect(v3).toMatchObject({ cron: '30 9 * * MON', timezone: 'America/New_York', key: null, headers: null });
    expect(v3!.nextAt!.getUTCMinutes()).toBe(30);
    expect([13, 14]).toContain(v3!.nextAt!.getUTCHours()); // 09:30 in New York (EDT or EST)

    expect(await bq.unschedule(name)).toBe(true);
    expect(await bq.unschedule(name)).toBe(false);
    expect(await bq.schedules(topic)).toEqual([]);
  });

  it('from psql: next_at may be left to the first worker; deleting the topic deletes its schedules', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.psql');
    await owner.query(`select bucketq.create_schedule($1, $2, '*/10 * * * *', '{"n": 1}')`, [name, topic]);
    expect((await owner.query('select next_at from bucketq.schedules where name = $1', [name])).rows[0].next_at).toBeNull();
    // The first firing only computes the first slot: nothing is sent.
    const fired = await bq.fireSchedules(group);
    expect(fired).toEqual([expect.objectContaining({ schedule: name, slot: null, msgId: null })]);
    expect(fired[0]!.nextAt!.getUTCMinutes() % 10).toBe(0);
    expect(await messagesOf(topic)).toEqual([]);
    await owner.query('select bucketq.delete_topic($1, force => true)', [topic]);
    expect((await owner.query('select count(*)::int as n from bucketq.schedule where name = $1', [name])).rows[0].n).toBe(0);
  });

  it('bad input: a clear error with a hint, and nothing changes', async () => {
    const { topic } = await topicWithGroup();
    const before = await stateFingerprint(owner);
    const call = (args: string, params: unknown[]) => owner.query(`select bucketq.create_schedule(${args})`, params);
    await expectBqError(call(`'bad name!', $1, '* * * * *', '{}'`, [topic]), 'BQ001', /invalid schedule name/);
    await expectBqError(call(`'s.x', 'no.such.topic', '* * * * *', '{}'`, []), 'BQ002');
    await expectBqError(call(`'s.x', $1, '* * * *', '{}'`, [topic]), 'BQ005', /invalid cron expression/);
    await expectBqError(call(`'s.x', $1, '@every_minute', '{}'`, [topic]), 'BQ005', /invalid cron expression/);
    await expectBqError(call(`'s.x', $1, null, '{}'`, [topic]), 'BQ005', /invalid cron expression/);
    await expectBqError(call(`'s.x', $1, '* * * * *', '{}', timezone => 'Mars/Olympus'`, [topic]), 'BQ005', /invalid timezone/);
    await expectBqError(call(`'s.x', $1, '* * * * *', 'null'`, [topic]), 'BQ005', /payload of schedule s\.x is null/);
    await expectBqError(call(`'s.x', $1, '* * * * *', '{}', headers => '[1]'`, [topic]), 'BQ005', /headers/);
    await expectBqError(call(`'s.x', $1, '* * * * *', '{}', key => ''`, [topic]), 'BQ005', /key/);
    await expectBqError(call(`'s.x', $1, '* * * * *', '{}', next_at => now() + interval '1 minute 1 second'`, [topic]), 'BQ005', /whole minute/);
    // The client checks the cron expression's meaning before it reaches SQL.
    await expect(bq.schedule('s.x', { topic, cron: '61 * * * *', payload: {} })).rejects.toThrow(/not a valid cron expression/);
    await expect(bq.schedule('s.x', { topic, cron: '* * * * * *', payload: {} })).rejects.toThrow(/6 fields; schedules fire on whole minutes/);
    await expect(bq.schedule('s.x', { topic, cron: '* * * * *', payload: null })).rejects.toThrow(/payload is required/);
    await expect(bq.schedule('s.x', { topic, cron: '* * * * *', payload: {}, extra: 1 } as never)).rejects.toThrow(/unknown option 'extra'/);
    expect(await stateFingerprint(owner)).toEqual(before);
    expect((await owner.query("select count(*)::int as n from bucketq.schedule where name = 's.x'")).rows[0].n).toBe(0);
  });
});

describe('firing: exactly one send per slot', () => {
  it('many sessions firing at once, round after round of the moving clock: one message per slot, the stored payload, key and headers', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.race');
    await bq.schedule(name, { topic, cron: '*/5 * * * *', payload: { job: 'cleanup' }, key: 'cleanup', headers: { team: 'ops' } });
    const sessions = await Promise.all(Array.from({ length: 8 }, () => ctx.session()));
    const ROUNDS = 12;
    const slots: string[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      // Every session's clock 5 minutes further: exactly one slot (*/5) has passed since the last round.
      await Promise.all(sessions.map((s) => setClock(s, `${r * 5} minutes`)));
      await setClock(owner, `${r * 5} minutes`);
      const { rows } = await owner.query<{ next_at: Date }>('select next_at from bucketq.schedule where name = $1', [name]);
      slots.push(rows[0]!.next_at.toISOString());
      // Every session fires at once, each twice in a row.
      const results = (await Promise.all(sessions.map(async (s) => [...(await fireDueSchedules(s, group)), ...(await fireDueSchedules(s, group))]))).flat();
      expect(results.filter((f) => f.msgId !== null), `round ${r}`).toHaveLength(1);
      const after = (await owner.query<{ next_at: Date; last_at: Date }>('select next_at, last_at from bucketq.schedule where name = $1', [name])).rows[0]!;
      expect(after.last_at.toISOString()).toBe(slots[slots.length - 1]);
      expect(after.next_at.getTime()).toBeGreaterThan((await dbNow()).getTime());
    }
    await Promise.all([owner, ...sessions].map((s) => setClock(s, '0')));
    const sent = await messagesOf(topic);
    expect(sent).toHaveLength(ROUNDS);
    expect(sent.map((m) => m.headers['bucketq-slot'])).toEqual(slots.map((s) => s.replace('.000Z', 'Z')));
    for (const m of sent) expect(m).toMatchObject({ payload: { job: 'cleanup' }, key: 'cleanup', headers: { team: 'ops', 'bucketq-schedule': name } });
    expect(new Set(slots).size).toBe(ROUNDS);
  });

  it('after downtime only the oldest missed slot is sent, then it goes on from now (no burst)', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.missed');
    await bq.schedule(name, { topic, cron: '* * * * *', payload: { tick: true } });
    const s = await ctx.session();
    await setClock(s, '1 day'); // 1,440 slots missed
    const fired = await fireDueSchedules(s, group);
    expect(fired.filter((f) => f.msgId)).toHaveLength(1);
    expect(await fireDueSchedules(s, group)).toEqual([]); // the next slot lies ahead
    const { rows } = await s.query<{ ahead: boolean }>(
      `select next_at > bucketq._now() and next_at <= bucketq._now() + interval '1 minute' as ahead from bucketq.schedule where name = $1`,
      [name],
    );
    expect(rows[0]!.ahead).toBe(true);
    expect(await messagesOf(topic)).toHaveLength(1);
  });

  it('a racing _fire_schedules without the lock, or a repeated slot, sends nothing more; the idempotency key would catch a second send', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.replay');
    await bq.schedule(name, { topic, cron: '* * * * *', payload: { n: 1 } });
    const a = await ctx.session();
    await setClock(a, '2 minutes');
    const slot = (await a.query<{ next_at: Date }>('select next_at from bucketq.schedule where name = $1', [name])).rows[0]!.next_at;
    // One transaction, as a worker fires: its clock (now()) stands still, so a minute
    // turning between reading it and firing cannot make the next slot a past one.
    await a.query('begin');
    const next = nextSlot('* * * * *', 'UTC', await dbNow(a));
    const fire = (c: pg.Client) =>
      c.query('select * from bucketq._fire_schedules($1, array[$2], array[$3::timestamptz], array[$4::timestamptz])', [group, name, slot, next]);
    expect((await fire(a)).rows).toEqual([expect.objectContaining({ schedule_name: name, error: null })]);
    expect((await fire(a)).rows).toEqual([]); // that slot is gone
    await a.query('commit');
    expect(await messagesOf(topic)).toHaveLength(1);
    // Even a send for the same slot by hand finds the slot's idempotency key.
    const [first] = await messagesOf(topic);
    const key = `bucketq.schedule:${name}@${slot.toISOString().replace('.000Z', 'Z')}`;
    const again = await owner.query(`select bucketq.send($1, '{"other": true}', idempotency_key => $2) as id`, [topic, key]);
    expect(String(again.rows[0].id)).toBe(first!.id);
  });

  it('the next slot a worker passes must lie ahead on a whole minute; a schedule not due is not sent', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.guard');
    await bq.schedule(name, { topic, cron: '* * * * *', payload: { n: 1 } });
    const slot = (await owner.query<{ next_at: Date }>('select next_at from bucketq.schedule where name = $1', [name])).rows[0]!.next_at;
    const fire = (c: pg.Client, nextAt: string) =>
      c.query('select * from bucketq._fire_schedules($1, array[$2], array[$3::timestamptz], array[$4::timestamptz])', [group, name, slot, nextAt]);
    // Not due yet: nothing happens whatever is passed. (On a clock 50 s behind: the slot
    // is the next whole minute when the schedule was made, and a run that crossed that
    // minute found it due.)
    const early = await ctx.session();
    await setClock(early, '-50 seconds');
    expect((await fire(early, new Date(slot.getTime() + 60_000).toISOString())).rows).toEqual([]);
    const s = await ctx.session();
    await setClock(s, '2 minutes');
    await expectBqError(fire(s, new Date(Date.now() - 3_600_000).toISOString()), 'BQ005', /invalid next slot/);
    await expectBqError(fire(s, new Date(Date.now() + 3_600_000 + 1000).toISOString()), 'BQ005', /invalid next slot/);
    expect(await messagesOf(topic)).toEqual([]);
  });

  it('a cron expression only SQL accepted: the worker records last_error and stops firing it until it is replaced', async () => {
    const { topic, group } = await topicWithGroup();
    const name = ctx.unique('sched.bad');
    await owner.query(`select bucketq.create_schedule($1, $2, '99 * * * *', '{"n": 1}')`, [name, topic]);
    const fired = await bq.fireSchedules(group);
    expect(fired).toEqual([expect.objectContaining({ schedule: name, msgId: null, error: expect.stringMatching(/not a valid cron expression/) })]);
    expect(await bq.fireSchedules(group)).toEqual([]);
    const [row] = await bq.schedules(topic);
    expect(row).toMatchObject({ nextAt: null, lastError: expect.stringMatching(/99/) });
    await bq.schedule(name, { topic, cron: '*/2 * * * *', payload: { n: 1 } });
    const [fixed] = await bq.schedules(topic);
    expect(fixed).toMatchObject({ lastError: null, nextAt: expect.any(Date) });
  });

  it('paused schedules are not fired; a send that fails is recorded and the slot skipped', async () => {
    const { topic, group } = await topicWithGroup();
    const paused = ctx.unique('sched.paused');
    await bq.schedule(paused, { topic, cron: '* * * * *', payload: { n: 1 }, paused: true });
    const big = ctx.unique('sched.big');
    await bq.schedule(big, { topic, cron: '* * * * *', payload: { n: 1 }, headers: { pad: 'x'.repeat(200) } });
    // The topic's payload limit shrinks under the schedule (payload plus headers over 16 bytes).
    await owner.query('update bucketq.topic set max_payload_bytes = 16 where name = $1', [topic]);
    const s = await ctx.session();
    await setClock(s, '5 minutes');
    const fired = await fireDueSchedules(s, group);
    expect(fired).toEqual([expect.objectContaining({ schedule: big, msgId: null, error: expect.stringMatching(/sending slot .* failed/) })]);
    const rows = await bq.schedules(topic);
    expect(rows.find((r) => r.name === paused)).toMatchObject({ lastAt: null, lastError: null });
    expect(rows.find((r) => r.name === big)).toMatchObject({ lastError: expect.stringMatching(/BQ004/) });
    expect(await messagesOf(topic)).toEqual([]);
  });
});

describe('firing: a lost connection', () => {
  it('fails the call, not the process (the server ending the connection of a firing worker)', async () => {
    const { group } = await topicWithGroup();
    const pool = new pg.Pool({ connectionString: ctx.db.connectionString, max: 1 });
    pool.on('error', () => {});
    const locker = await ctx.session();
    await locker.query('begin');
    await locker.query('lock table bucketq.schedule in access exclusive mode');
    const firing = fireDueSchedules(pool, group).then(
      () => 'fired',
      (err: Error) => err.message,
    );
    const blocked = `select pid from pg_stat_activity where wait_event_type = 'Lock' and query like '%bucketq._due_schedules%'`;
    await waitFor('the firing query waits for the lock', async () => (await owner.query(blocked)).rows.length === 1);
    await owner.query(`select pg_terminate_backend(pid) from (${blocked}) b`);
    expect(await firing).toMatch(/terminat/);
    await locker.query('rollback');
    expect(await fireDueSchedules(pool, group)).toEqual([]); // the pool replaced the connection
    await pool.end();
  });
});

describe('roles', () => {
  const suffix = randomBytes(4).toString('hex');
  const users: string[] = [];
  const connect = async (role: string) => {
    const user = `bqsched_${role}_${suffix}`;
    await owner.query(`create role ${user} login password 'pw' in role bucketq_${role}`);
    users.push(user);
    const url = new URL(ctx.db.connectionString);
    url.username = user;
    url.password = 'pw';
    const c = new pg.Client({ connectionString: url.toString() });
    c.on('error', () => {});
    await c.connect();
    return c;
  };
  afterAll(async () => {
    for (const u of users) {
      await owner.query(`drop owned by ${u}`).catch(() => {});
      await owner.query(`drop role if exists ${u}`).catch(() => {});
    }
  });

  it('admin creates and drops, monitor reads the view, a consumer fires due schedules but cannot create one or choose what is sent', async () => {
    const { topic, group } = await topicWithGroup();
    const admin = await connect('admin');
    const monitor = await connect('monitor');
    const consumer = await connect('consumer');
    const producer = await connect('producer');
    const name = ctx.unique('sched.roles');
    const next = nextSlot('* * * * *', 'UTC', new Date());
    await admin.query(`select bucketq.create_schedule($1, $2, '* * * * *', '{"by": "admin"}', next_at => $3)`, [name, topic, next]);
    for (const c of [consumer, producer, monitor]) {
      expect((await pgError(c.query(`select bucketq.create_schedule('s.evil', $1, '* * * * *', '{"evil": true}')`, [topic]))).code).toBe('42501');
      expect((await pgError(c.query(`select bucketq.drop_schedule($1)`, [name]))).code).toBe('42501');
    }
    expect((await monitor.query('select name, payload from bucketq.schedules where name = $1', [name])).rows).toEqual([{ name, payload: { by: 'admin' } }]);
    expect((await pgError(consumer.query('select * from bucketq.schedules'))).code).toBe('42501');
    expect((await pgError(consumer.query('select * from bucketq.schedule'))).code).toBe('42501');
    expect((await pgError(producer.query('select * from bucketq._due_schedules($1)', [group]))).code).toBe('42501');
    // The consumer fires: the admin's payload is sent (its clock cannot move: make the slot due as the owner).
    await owner.query(`update bucketq.schedule set next_at = date_trunc('minute', now()) - interval '1 minute' where name = $1`, [name]);
    const fired = await fireDueSchedules(consumer, group);
    expect(fired).toEqual([expect.objectContaining({ schedule: name, msgId: expect.any(String) })]);
    expect((await messagesOf(topic)).map((m) => m.payload)).toEqual([{ by: 'admin' }]);
    // A consumer may not fire the schedules of a group it may not consume.
    await owner.query(`select bucketq.grant_group($1, 'bucketq_admin')`, [group]);
    expect((await pgError(fireDueSchedules(consumer, group))).code).toBe('42501');
    expect(await admin.query('select bucketq.drop_schedule($1) as d', [name])).toMatchObject({ rows: [{ d: true }] });
  });
});

describe('workers fire schedules', () => {
  it('several consumers in two groups of the topic send each slot once', async () => {
    const { topic, group } = await topicWithGroup(2);
    const group2 = ctx.unique('sched.g2');
    await bq.createGroup(group2, topic, { startAt: 'earliest' });
    const name = ctx.unique('sched.workers');
    await bq.schedule(name, { topic, cron: '0 0 1 1 *', payload: { happy: 'new year' } }); // next slot months away
    const handled: string[] = [];
    const consumers: Consumer[] = [];
    for (const [i, g] of [group, group, group2, group2].entries()) {
      consumers.push(
        await bq.consume({ group: g, consumerId: `w${i}`, heartbeatIntervalMs: 50, pollIntervalMs: 50, listen: i % 2 === 0, handler: (m) => void handled.push(`${g}:${m.msgId}`) }, quiet),
      );
    }
    const idle = await bq.consume({ group, consumerId: 'no-schedules', schedules: false, heartbeatIntervalMs: 50, handler: () => {} }, quiet);
    consumers.push(idle);
    try {
      // The movable clock is a session setting the workers' pools do not share: make slots
      // due by moving next_at back instead, one past minute per round.
      const ROUNDS = 5;
      for (let r = 1; r <= ROUNDS; r++) {
        await owner.query(`update bucketq.schedule set next_at = date_trunc('minute', now()) - make_interval(mins => $2) where name = $1`, [name, 100 - r]);
        await waitFor(`slot ${r} fired`, async () => (await messagesOf(topic)).length === r && (await bq.schedules(topic))[0]!.nextAt!.getTime() > Date.now());
      }
      // Distinct messages: consumers join one after another here, and a bucket that moves
      // while a batch is in flight fences that batch's ack, so its messages are handled
      // again by the new owner (at least once; exactly-once effects are the ack
      // transaction's, tested in worker-processes). What this test counts is sending.
      const distinct = () => new Set(handled);
      await waitFor('both groups handled every scheduled message', () => distinct().size === 2 * ROUNDS).catch(async (err: Error) => {
        // (it stalled once in CI: say which message waited where, and behind what)
        const { rows } = await owner.query(
          `select s.group_name, s.msg_id, s.bucket, s.state, s.waiting_behind, s.attempts from bucketq.message_states s
            where s.group_name = any($1::text[]) and s.state <> 'done' order by s.group_name, s.msg_id`,
          [[group, group2]],
        );
        const { rows: owners } = await owner.query(
          `select g.name, o.bucket, o.owner, o.epoch from bucketq.bucket_owner o join bucketq.consumer_group g using (group_id)
            where g.name = any($1::text[]) order by g.name, o.bucket`,
          [[group, group2]],
        );
        throw new Error(`${err.message}; handled ${JSON.stringify([...distinct()])}; not done ${JSON.stringify(rows)}; owners ${JSON.stringify(owners)}`);
      });
      const sent = await messagesOf(topic);
      expect(sent).toHaveLength(ROUNDS);
      expect(new Set(sent.map((m) => m.headers['bucketq-slot'])).size).toBe(ROUNDS);
      expect([...distinct()].filter((h) => h.startsWith(`${group}:`))).toHaveLength(ROUNDS);
      expect([...distinct()].sort()).toEqual([group, group2].flatMap((g) => sent.map((m) => `${g}:${m.id}`)).sort());
    } finally {
      await Promise.all(consumers.map((c) => c.stop({ timeoutMs: 2000 })));
    }
  });
});

describe('worker processes fire schedules', () => {
  it('two `bucketq worker` processes and an in-process consumer send each slot once', async () => {
    const { topic, group } = await topicWithGroup(2);
    await owner.query('create table if not exists effects (id bigserial primary key, group_name text, msg_id bigint, key text, key_seq bigint, consumer text)');
    const name = ctx.unique('sched.procs');
    await bq.schedule(name, { topic, cron: '0 0 1 1 *', payload: { n: 1 } });
    const env = { ...process.env, DATABASE_URL: ctx.db.connectionString, LOG_LEVEL: 'warn' };
    const procs = [0, 1].map((i) =>
      spawnCliProcess(['worker', '--group', group, '--handler', 'test/fixtures/effect-handler.ts', '--heartbeat-ms', '50', '--poll-ms', '50', '--consumer-id', `proc${i}`], env),
    );
    const local = await bq.consume({ group, consumerId: 'local', heartbeatIntervalMs: 50, pollIntervalMs: 50, handler: () => {} }, quiet);
    try {
      await waitFor('both worker processes joined', async () => {
        const { rows } = await owner.query<{ n: number }>(`select count(*)::int as n from bucketq.consumers where group_name = $1 and consumer_id like 'proc%' and alive`, [group]);
        return rows[0]!.n === 2;
      }, 60_000);
      const ROUNDS = 6;
      for (let r = 1; r <= ROUNDS; r++) {
        await owner.query(`update bucketq.schedule set next_at = date_trunc('minute', now()) - make_interval(mins => $2) where name = $1`, [name, 100 - r]);
        await waitFor(`slot ${r} fired`, async () => (await messagesOf(topic)).length >= r && (await bq.schedules(topic))[0]!.nextAt!.getTime() > Date.now());
      }
      const sent = await messagesOf(topic);
      expect(sent).toHaveLength(ROUNDS);
      expect(new Set(sent.map((m) => m.headers['bucketq-slot'])).size).toBe(ROUNDS);
    } finally {
      await local.stop({ timeoutMs: 2000 });
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
    }
  }, 120_000);
});

describe('CLI: bucketq schedule', () => {
  const { ok, fails } = inProcessCli(() => ctx.db.connectionString);

  it('bucketq worker --no-schedules opts a worker out', () => {
    expect(parseWorkerFlags([]).schedules).toBe(true);
    expect(parseWorkerFlags(['--no-schedules']).schedules).toBe(false);
  });

  it('create, list, delete; usage errors exit 2, unknown topic 1', async () => {
    const { topic } = await topicWithGroup();
    expect(await ok('schedule', 'create', 'cli.nightly', '--topic', topic, '--cron', '0 3 * * *', '--timezone', 'Europe/Paris', '--key', 'n', '{"job": "nightly"}')).toMatch(
      /created schedule cli\.nightly: 0 3 \* \* \* \(Europe\/Paris\) to .*, next at \d{4}-/,
    );
    expect(await ok('schedule', 'create', 'cli.nightly', '--topic', topic, '--cron', '0 3 * * *', '--timezone', 'Europe/Paris', '--key', 'n', '{"job": "nightly"}')).toMatch(/already exists with this definition/);
    const list = JSON.parse(await ok('schedule', 'list', '--json')) as { name: string; cron: string; payload: unknown }[];
    expect(list).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'cli.nightly', cron: '0 3 * * *', payload: { job: 'nightly' } })]));
    expect(await ok('schedule', 'list', '--topic', topic)).toMatch(/^\s*cli\.nightly\s+\S+\s+0 3 \* \* \*\s+Europe\/Paris\s+\d{4}-/m);
    expect(await fails(2, 'schedule', 'create', 'cli.x', '--topic', topic, '--cron', '61 * * * *', '{}')).toMatch(/--cron: .*not a valid cron expression/);
    expect(await fails(2, 'schedule', 'create', 'cli.x', '--topic', topic, '{}')).toMatch(/required option '--cron <expr>'/);
    expect(await fails(2, 'schedule', 'create', 'cli.x', '--topic', topic, '--cron', '* * * * *', '{"a":')).toMatch(/not valid JSON/);
    expect(await fails(1, 'schedule', 'create', 'cli.x', '--topic', 'no.such.topic', '--cron', '* * * * *', '{}')).toMatch(/unknown topic/);
    expect(await ok('schedule', 'delete', 'cli.nightly')).toMatch(/deleted schedule cli\.nightly/);
    expect(await fails(1, 'schedule', 'delete', 'cli.nightly')).toMatch(/no schedule named 'cli\.nightly'/);
    expect(await ok('schedule', 'list', '--topic', topic)).toMatch(/no schedules/);
  });
});
