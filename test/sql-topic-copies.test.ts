// Each topic's own copy of the claim and ack paths (schema bucketq_t<topic_id>,
// functions/_topic_copies.sql): the public functions dispatch to it, so a claim and an
// ack lock only their own topic's log partitions, never another topic's. Made by
// create_topic, dropped by delete_topic, made again by every upgrade of the definitions
// and by migrate when a restore lost them; no role but the owner can call a copy.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/migrate.js';
import { ack, claim, pgError, send, sendBatch, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();
const opened: pg.Client[] = [];
async function session(): Promise<pg.Client> {
  const c = await ctx.session();
  opened.push(c);
  return c;
}
// A test that failed inside a transaction must not leave its locks to the next one.
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.query('rollback').catch(() => {})));
});

async function topicId(c: pg.Client, topic: string): Promise<number> {
  const { rows } = await c.query('select topic_id from bucketq.topic where name = $1', [topic]);
  return rows[0].topic_id as number;
}

/** The log partitions (bucketq.message_t<id>_*) this session holds a lock on, by topic id. */
async function lockedLogTopics(c: pg.Client): Promise<number[]> {
  const { rows } = await c.query(`
    select distinct substring(r.relname from '^message_t([0-9]+)_')::int as topic_id
      from pg_locks l join pg_class r on r.oid = l.relation
     where l.pid = pg_backend_pid() and r.relname ~ '^message_t[0-9]+_' order by 1`);
  return rows.map((r) => r.topic_id as number);
}

/** The functions of schema bucketq_t<id>, by name. */
async function copiesOf(c: pg.Client, id: number): Promise<string[]> {
  const { rows } = await c.query(
    `select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1 order by 1`,
    [`bucketq_t${id}`],
  );
  return rows.map((r) => r.proname as string);
}

/** The topic ids bucketq.claim branches to. */
async function branchesOf(c: pg.Client, fn: string): Promise<number[]> {
  const { rows } = await c.query(`select pg_get_functiondef($1::regproc) as d`, [`bucketq.${fn}`]);
  return [...(rows[0].d as string).matchAll(/if g\.topic_id = (\d+) then .* bucketq_t(\d+)\._/g)].map((m) => {
    expect(m[1]).toBe(m[2]);
    return Number(m[1]);
  });
}

describe('each topic has its own copy of the claim and ack paths', () => {
  it('create_topic makes it: every function of the list, reading the topic’s own log table, and a branch in each public function', async () => {
    const c = await session();
    const { topic } = await topicAndGroup(c, ctx, { buckets: 4 });
    const id = await topicId(c, topic);
    const { rows: list } = await c.query('select unnest(bucketq._topic_copy_list()) as name order by 1');
    expect(await copiesOf(c, id)).toEqual(list.map((r) => r.name));

    const { rows } = await c.query(`select p.proname, pg_get_functiondef(p.oid) as d from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1`, [`bucketq_t${id}`]);
    for (const r of rows) {
      // No table read through bucketq.message is left (in any form: only the row type is
      // named, outside comments), and calls of listed functions go to the copies.
      const code = (r.d as string)
        .replace(/--[^\n]*/g, '')
        .replace(/bucketq\.message\[\]|::bucketq\.message(?![_a-z0-9])|setof bucketq\.message(?![_a-z0-9])/gi, '');
      expect({ fn: r.proname, generic: /bucketq\.message(?![_a-z0-9])/i.test(code) }).toEqual({ fn: r.proname, generic: false });
      for (const l of list) expect({ fn: r.proname, call: (r.d as string).includes(`bucketq.${l.name}(`) }).toEqual({ fn: r.proname, call: false });
    }
    const busy = rows.find((r) => r.proname === '_log_busy')!.d as string;
    expect(busy).toContain(`bucketq.message_t${id} m`);
    for (const fn of ['claim', 'claim_locked', 'ack', 'nack', 'record_attempt']) expect(await branchesOf(c, fn)).toContain(id);
  });

  it('a claim and an ack lock their own topic’s log partitions only (the generic body locks every topic’s)', async () => {
    const c = await session();
    const a = await topicAndGroup(c, ctx, { buckets: 4 });
    const b = await topicAndGroup(c, ctx, { buckets: 4 });
    const [idA, idB] = [await topicId(c, a.topic), await topicId(c, b.topic)];
    await sendBatch(c, a.topic, [1, 2, 3], { keys: ['x', 'y', null] });
    await send(c, b.topic, { b: 1 });

    await c.query('begin');
    const claimed = await claim(c, a.group, a.consumer, 10);
    expect(claimed).toHaveLength(3);
    expect(await lockedLogTopics(c)).toEqual([idA]);
    await c.query('commit');

    await c.query('begin');
    expect((await ack(c, a.group, claimed)).map((r) => r.status)).toEqual(['acked', 'acked', 'acked']);
    expect((await lockedLogTopics(c)).filter((t) => t === idB)).toEqual([]);
    await c.query('commit');

    // claim_locked, in the transaction that handles the batch.
    await sendBatch(c, a.topic, [4, 5], { keys: ['x', 'z'] });
    await c.query('begin');
    const { rows: locked } = await c.query('select msg_id from bucketq.claim_locked($1, $2, 10)', [a.group, a.consumer]);
    expect(locked).toHaveLength(2);
    expect(await lockedLogTopics(c)).toEqual([idA]);
    await c.query('rollback');

    // The same claim through the generic body (as the owner, under claim's settings)
    // holds topic B's partitions too: what the copies spare.
    await c.query('begin');
    await c.query(`set local plan_cache_mode = force_generic_plan; set local enable_seqscan = off; set local enable_bitmapscan = off`);
    const { rows: generic } = await c.query('select msg_id from bucketq._claim_locked(bucketq._group($1), $2, 10)', [a.group, a.consumer]);
    expect(generic).toHaveLength(2);
    expect(await lockedLogTopics(c)).toEqual(expect.arrayContaining([idA, idB]));
    await c.query('rollback');
  });

  it('delete_topic drops the copies and the branches; topics created at once from two sessions both get theirs', async () => {
    const c = await session();
    const { topic } = await topicAndGroup(c, ctx, { buckets: 2, consumer: null });
    const id = await topicId(c, topic);
    expect(await copiesOf(c, id)).not.toEqual([]);
    await c.query('select bucketq.delete_topic($1, force => true)', [topic]);
    expect(await copiesOf(c, id)).toEqual([]);
    for (const fn of ['claim', 'ack']) expect(await branchesOf(c, fn)).not.toContain(id);

    const [s1, s2] = [await session(), await session()];
    const [t1, t2] = [ctx.unique('t'), ctx.unique('t')];
    await Promise.all([s1.query('begin'), s2.query('begin')]);
    await s1.query('select bucketq.create_topic($1, 2)', [t1]);
    const second = s2.query('select bucketq.create_topic($1, 2)', [t2]); // waits for s1's maintenance lock
    await s1.query('commit');
    await second;
    await s2.query('commit');
    const ids = [await topicId(c, t1), await topicId(c, t2)];
    for (const fn of ['claim', 'claim_locked', 'ack', 'nack', 'record_attempt']) expect(await branchesOf(c, fn)).toEqual(expect.arrayContaining(ids));
    for (const i of ids) expect((await copiesOf(c, i)).length).toBeGreaterThan(10);
  });

  it('migrate makes them again when it applies the definitions, and when a topic lost its schema (a restore of schema bucketq alone)', async () => {
    const c = await session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { buckets: 2 });
    const id = await topicId(c, topic);
    const before = await copiesOf(c, id);

    // The definitions applied again (as by an upgrade): they write the public functions
    // back without branches, then the copies and branches are made again.
    await c.query(`update bucketq.definitions set hash = 'an older release'`);
    await expect(migrate(ctx.db.pool)).resolves.toMatchObject({ definitions: 'applied' });
    expect(await copiesOf(c, id)).toEqual(before);
    expect(await branchesOf(c, 'claim')).toContain(id);

    // A schema lost: claims through its branch fail until migrate makes it again.
    await c.query(`drop schema bucketq_t${id} cascade`);
    await send(c, topic, { n: 1 }, { key: 'k' });
    expect((await pgError(claim(c, group, consumer))).message).toMatch(/bucketq_t\d+/);
    await expect(migrate(ctx.db.pool)).resolves.toMatchObject({ definitions: 'current' });
    expect(await copiesOf(c, id)).toEqual(before);
    const got = await claim(c, group, consumer);
    expect(got.map((m) => m.key)).toEqual(['k']);
    await ack(c, group, got);
  });
});

describe('no role but the owner reaches the copies', () => {
  const suffix = randomBytes(4).toString('hex');
  const user = `bqtest_copies_${suffix}`;
  const password = `pw_${suffix}`;
  let asConsumer: pg.Client | undefined;
  afterAll(async () => {
    await asConsumer?.end().catch(() => {});
    const owner = await session();
    await owner.query(`drop owned by ${user}`).catch(() => {});
    await owner.query(`drop role if exists ${user}`);
  });

  it('a consumer claims and acks through the public functions, and gets permission denied calling a copy', async () => {
    const owner = await session();
    const { topic, group } = await topicAndGroup(owner, ctx, { buckets: 2, consumer: null });
    const id = await topicId(owner, topic);
    await owner.query(`create role ${user} login password '${password}' in role bucketq_consumer`);
    const url = new URL(ctx.db.connectionString);
    url.username = user;
    url.password = password;
    asConsumer = new pg.Client({ connectionString: url.toString() });
    asConsumer.on('error', () => {});
    await asConsumer.connect();

    await asConsumer.query('select * from bucketq.join($1, $2)', [group, 'c1']);
    await send(owner, topic, { n: 1 }, { key: 'k' });
    const got = await claim(asConsumer, group, 'c1');
    expect(got).toHaveLength(1);
    expect((await ack(asConsumer, group, got)).map((r) => r.status)).toEqual(['acked']);

    for (const call of [
      `select * from bucketq_t${id}._claim(null::bucketq.consumer_group, 'c1')`,
      `select * from bucketq_t${id}._log_busy(null, null, null, null, null)`,
      `select * from bucketq._claim(null::bucketq.consumer_group, 'c1')`,
    ]) {
      const err = await pgError(asConsumer.query(call));
      expect({ call, code: err.code }).toEqual({ call, code: '42501' });
    }
  });
});
