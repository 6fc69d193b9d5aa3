// A claim of several buckets (sql/functions/_log_claim_next.sql, for claim and
// claim_locked): buckets whose window is used up and that had something committed since
// go through one statement that locks each bucket's cursor as it reaches it, reads the
// next window and writes its hand row; any it finds in another state go the long way
// (_log_claim). Real concurrent sessions.
import { describe, expect, it } from 'vitest';
import { ack, claim, claimCounted, send, topicAndGroup, useDatabase, waitUntilBlocked, pidOf, type Claimed, type Queryable } from './helpers/sql.js';

const ctx = useDatabase();

const ids = (got: Claimed[]) => got.map((m) => m.msg_id).sort((a, b) => a - b);

/** A message of a fresh key sent to the bucket asked for (keys that land elsewhere are skipped, never sent). */
async function sendTo(c: Queryable, topic: string, buckets: number, bucket: number, tag: string): Promise<number> {
  const { rows } = await c.query<{ key: string }>(
    `select k as key from (select $1 || '-' || i as k from generate_series(1, 10000) i) x
      where bucketq._bucket_of(k, 0, $2) = $3 limit 1`,
    [tag, buckets, bucket],
  );
  return send(c, topic, { tag }, { key: rows[0]!.key });
}

/** Each of the topic's buckets had a batch, acked: the usual state. */
async function settled(c: Queryable, topic: string, group: string, buckets: number): Promise<void> {
  for (let k = 0; k < buckets; k++) await sendTo(c, topic, buckets, k, `old${k}`);
  await ack(c, group, await claim(c, group, 'c1', 100));
}

describe('a claim of several buckets', () => {
  it('hands out every bucket\'s new window in one statement, and a window that must wait goes the long way, delivering alike', async () => {
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    await c.query(`set track_functions = 'all'`);
    await settled(c, topic, group, 4);

    const fresh = [];
    for (let b = 0; b < 4; b++) fresh.push(await sendTo(c, topic, 4, b, `new${b}`));
    const usual = await claimCounted(c, group, 100);
    expect(usual.longWay).toBe(false);
    expect(ids(usual.got)).toEqual(fresh.sort((a, b) => a - b));
    await ack(c, group, usual.got);

    // Two messages of one key in bucket 1: with max_per_key 1 the second waits behind the
    // first (the long way, through the inbox); the other buckets' windows go as they are.
    const { rows } = await c.query<{ key: string }>(
      `select k as key from (select 'twice-' || i as k from generate_series(1, 10000) i) x where bucketq._bucket_of(k, 0, 4) = 1 limit 1`);
    const k1 = await send(c, topic, { n: 1 }, { key: rows[0]!.key });
    const k2 = await send(c, topic, { n: 2 }, { key: rows[0]!.key });
    const others = [await sendTo(c, topic, 4, 0, 'o0'), await sendTo(c, topic, 4, 2, 'o2')];
    const mixed = await claimCounted(c, group, 100);
    expect(mixed.longWay).toBe(true);
    expect(ids(mixed.got)).toEqual([k1, ...others].sort((a, b) => a - b));
    await ack(c, group, mixed.got);
    const rest = await claim(c, group, 'c1', 100);
    expect(ids(rest)).toEqual([k2]);
    await ack(c, group, rest);
    expect(await claim(c, group, 'c1', 100)).toEqual([]);
  });

  it('a claim cut inside a bucket\'s window leaves the rest of it for the next claims: nothing passed over, nothing twice, each key in order', async () => {
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    await settled(c, topic, group, 4);
    const sent: number[] = [];
    for (let i = 0; i < 5; i++) for (let b = 0; b < 4; b++) sent.push(await sendTo(c, topic, 4, b, `m${i}.${b}`));
    const seen: number[] = [];
    for (let round = 0; round < 20 && seen.length < sent.length; round++) {
      const got = await claim(c, group, 'c1', 3);
      expect(got.length).toBeLessThanOrEqual(3);
      seen.push(...got.map((m) => m.msg_id));
      await ack(c, group, got);
    }
    expect(seen.sort((a, b) => a - b)).toEqual([...sent].sort((a, b) => a - b));
  });

  it('a bucket whose batch another claim wrote and committed after this claim\'s snapshot, before it reached the bucket, is not handed out again', async () => {
    // The claim's statement has its snapshot before it locks a bucket's cursor row. It
    // is held between two buckets here (a stand-in for _progress_newer that waits on an
    // advisory lock after the first bucket), while another session of the same consumer
    // claims the second bucket and commits. Without the look after the lock, with a
    // snapshot of its own, the first claim would hand that bucket's window out again.
    const admin = await ctx.session();
    const held = await ctx.session();
    const other = await ctx.session();
    const { topic, group } = await topicAndGroup(admin, ctx, { buckets: 2 });
    await settled(admin, topic, group, 2);
    const fresh = [await sendTo(admin, topic, 2, 0, 'new0'), await sendTo(admin, topic, 2, 1, 'new1')];

    const { rows: [orig] } = await admin.query<{ def: string }>(
      `select pg_get_functiondef('bucketq._progress_newer(int, int, bigint)'::regprocedure) as def`);
    await admin.query(`
      create or replace function bucketq._progress_newer(p_group_id int, p_bucket int, p_seq bigint) returns boolean
      language plpgsql volatile as $$
      begin
        if current_setting('bqtest.held', true) is distinct from 'yes' then
          perform set_config('bqtest.held', 'yes', false);
          perform set_config('application_name', 'held at ' || p_bucket, false);
          perform pg_advisory_xact_lock_shared(777001);
        end if;
        return exists (select 1 from bucketq.progress p
                        where p.group_id = p_group_id and p.bucket = p_bucket and p.seq > p_seq);
      end $$`);
    try {
      await admin.query('select pg_advisory_lock(777001)');
      const heldClaim = claim(held, group, 'c1', 100);
      await waitUntilBlocked(admin, pidOf(held));
      const { rows: [at] } = await admin.query<{ name: string }>(
        'select application_name as name from pg_stat_activity where pid = $1', [pidOf(held)]);
      const first = Number(at!.name.replace('held at ', ''));
      const second = 1 - first;
      // The other session takes the second bucket's window and commits.
      const taken = await claim(other, group, 'c1', 100, { buckets: [second] });
      expect(ids(taken)).toEqual([fresh[second]]);
      await admin.query('select pg_advisory_unlock(777001)');
      const got = await heldClaim;
      expect(ids(got)).toEqual([fresh[first]]);
      await ack(admin, group, [...got, ...taken]);
      expect(await claim(admin, group, 'c1', 100)).toEqual([]);
      const { rows: [d] } = await admin.query<{ n: number }>(
        `select count(*)::int as n from bucketq.deliveries where group_name = $1`, [group]);
      expect(d!.n).toBe(4);
    } finally {
      await admin.query('select pg_advisory_unlock_all()');
      await admin.query(orig!.def);
    }
  });

  it('a locked claim holds only the buckets it read: another session of the consumer takes the rest meanwhile', async () => {
    // The statement stops locking where it stops reading (its LIMIT): a locked batch
    // keeps its buckets' cursor rows until it ends, so locking every bucket it might
    // read would leave the consumer's other batches nothing.
    const c = await ctx.session();
    const a = await ctx.session();
    const b = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    await settled(c, topic, group, 4);
    const sent: number[] = [];
    for (let i = 0; i < 3; i++) for (let k = 0; k < 4; k++) sent.push(await sendTo(c, topic, 4, k, `m${i}.${k}`));
    const locked = async (s: Queryable, max: number) => (await s.query<{ msg_id: string; bucket: number }>(
      `select msg_id, bucket from bucketq.claim_locked(group_name => $1, consumer_id => 'c1', max_messages => $2, max_per_key => 1)`,
      [group, max])).rows.map((r) => ({ id: Number(r.msg_id), bucket: r.bucket }));
    await a.query('begin');
    await b.query('begin');
    try {
      const first = await locked(a, 3);
      expect(first).toHaveLength(3);
      expect(new Set(first.map((m) => m.bucket)).size).toBe(1);
      const second = await locked(b, 100);
      expect(second).toHaveLength(9);
      expect(second.some((m) => m.bucket === first[0]!.bucket)).toBe(false);
      expect([...first, ...second].map((m) => m.id).sort((x, y) => x - y)).toEqual([...sent].sort((x, y) => x - y));
    } finally {
      await a.query('rollback');
      await b.query('rollback');
    }
  });

  it('a bucket whose window was read in part is not starved by buckets that always have a new window', async () => {
    // Under a backlog the claim leaves every bucket to _log_claim in the proportion of
    // the buckets read in part; were the one statement always first, three buckets with
    // a new message before every claim of three would fill every claim.
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    await settled(c, topic, group, 4);
    const behind: number[] = [];
    for (let i = 0; i < 6; i++) behind.push(await sendTo(c, topic, 4, 0, `behind${i}`));
    const first = await claim(c, group, 'c1', 2, { buckets: [0] }); // bucket 0's window, read in part
    expect(ids(first)).toEqual(behind.slice(0, 2));
    await ack(c, group, first);
    const seen = new Set<number>();
    for (let round = 0; round < 80 && seen.size < 4; round++) {
      for (let k = 1; k < 4; k++) await sendTo(c, topic, 4, k, `r${round}.${k}`);
      const got = await claim(c, group, 'c1', 3);
      for (const m of got) if (m.bucket === 0) seen.add(m.msg_id);
      await ack(c, group, got);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual(behind.slice(2));
  });

  it('buckets the reading did not reach, because windows that do not go as they are filled the room, are still claimed the long way', async () => {
    // Four buckets of two keys with four messages each: with max_per_key 2, no window
    // goes as it is (a key more than twice), and whichever bucket is read first fills a
    // room of six. The long way takes runs of two from it (four) and then from the
    // others: six in all, as before the one statement.
    const c = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 4 });
    await settled(c, topic, group, 4);
    for (let k = 0; k < 4; k++) {
      const { rows } = await c.query<{ key: string }>(
        `select x as key from (select 'two' || $1::int || '-' || i as x from generate_series(1, 10000) i) y
          where bucketq._bucket_of(x, 0, 4) = $1::int limit 2`, [k]);
      for (let i = 0; i < 4; i++) for (const r of rows) await send(c, topic, { k, i }, { key: r.key });
    }
    const got = await claim(c, group, 'c1', 6, { maxPerKey: 2 });
    expect(got).toHaveLength(6);
    await ack(c, group, got);
  });
});

describe('claims outside READ COMMITTED', () => {
  it('refuse: a REPEATABLE READ snapshot older than another claim\'s commit handed the same message out again', async () => {
    const c = await ctx.session();
    const a = await ctx.session();
    const rr = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx, { buckets: 1 });
    await send(c, topic, { n: 1 }, { key: 'a' });
    await ack(c, group, await claim(c, group, 'c1', 10));
    const m2 = await send(c, topic, { n: 2 }, { key: 'b' });
    for (const level of ['repeatable read', 'serializable']) {
      await rr.query(`begin isolation level ${level}`);
      await rr.query('select 1'); // its snapshot, taken now
      try {
        if (level === 'repeatable read') expect(ids(await claim(a, group, 'c1', 10))).toEqual([m2]);
        const err = await rr.query(`select * from bucketq.claim($1, 'c1', 10)`, [group]).then(() => null, (e: { code?: string; message: string; hint?: string }) => e);
        expect(err?.code).toBe('BQ005');
        expect(err?.message).toMatch(/claim: runs only in READ COMMITTED transactions, and this one is (REPEATABLE READ|SERIALIZABLE)/);
        expect(err?.hint).toMatch(/BEGIN ISOLATION LEVEL READ COMMITTED/);
      } finally {
        await rr.query('rollback');
      }
      await rr.query(`begin isolation level ${level}`);
      try {
        const err = await rr.query(`select * from bucketq.claim_locked($1, 'c1', 10)`, [group]).then(() => null, (e: { code?: string; message: string }) => e);
        expect(err?.code).toBe('BQ005');
        expect(err?.message).toMatch(/claim_locked: runs only in READ COMMITTED transactions/);
      } finally {
        await rr.query('rollback');
      }
    }
  });
});
