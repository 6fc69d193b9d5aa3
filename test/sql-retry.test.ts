// nack, backoff, dead letters (skip and block) and replay_dead at the SQL level.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, nack, pidOf, send, sendBatch, setClock, stateFingerprint, topicAndGroup, useDatabase, waitUntilBlocked } from './helpers/sql.js';

const ctx = useDatabase();

async function lag(c: pg.Client, group: string) {
  const { rows } = await c.query(
    `select sum(ready)::int as ready, sum(leased)::int as leased, sum(delayed)::int as delayed, sum(waiting)::int as waiting,
            sum(dead_blocking)::int as dead_blocking
       from bucketq.lag where group_name = $1`,
    [group],
  );
  return rows[0];
}

async function deadLetters(c: pg.Client, group: string) {
  const { rows } = await c.query(
    `select msg_id::int, key, key_seq::int, attempts, last_error, status, payload from bucketq.dead_letters where group_name = $1 order by msg_id`,
    [group],
  );
  return rows;
}

/** Claim, then ack, one message at a time until nothing is claimable; returns the payloads in order. */
async function drain(c: pg.Client, group: string, consumer: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (;;) {
    const got = await claim(c, group, consumer, 1);
    if (got.length === 0) return out;
    out.push(got[0]!.payload);
    await ack(c, group, got);
  }
}

describe('nack and backoff', () => {
  it('a nacked message keeps its key blocked until the retry is acked', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { group: { session_timeout: '1 hour' } });
    const [k1, k2] = await sendBatch(s, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    const [m] = await claim(s, group, consumer, 10);
    expect(m?.msg_id).toBe(k1);
    const [r] = await nack(s, group, [m!], { error: 'handler failed' });
    expect(r?.status).toBe('retry');
    expect(await lag(s, group)).toMatchObject({ ready: 0, leased: 0, delayed: 1, waiting: 1 });

    expect(await claim(s, group, consumer, 10)).toEqual([]); // k1 in backoff, k2 must wait
    await setClock(s, '2 seconds'); // past the 1-second base backoff
    const [retry] = await claim(s, group, consumer, 10);
    expect([retry?.msg_id, retry?.attempt]).toEqual([k1, 2]);
    expect(await claim(s, group, consumer, 10)).toEqual([]); // k2 still waits behind the leased retry
    await ack(s, group, [retry!]);
    expect((await claim(s, group, consumer, 10)).map((x) => x.msg_id)).toEqual([k2]);
  });

  it('a message sent to a key after its earlier one was nacked waits behind the retry, though the claim reads it alone from the log', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { group: { session_timeout: '1 hour' } });
    const k1 = await send(s, topic, { n: 1 }, { key: 'k' });
    const [m] = await claim(s, group, consumer, 10);
    expect(m?.msg_id).toBe(k1);
    await nack(s, group, [m!], { error: 'handler failed' });
    // Sent now: the claim's window holds k2 alone, with nothing in it to say "wait";
    // only the key's retry in the inbox does.
    const k2 = await send(s, topic, { n: 2 }, { key: 'k' });
    expect(await claim(s, group, consumer, 10)).toEqual([]);
    expect(await lag(s, group)).toMatchObject({ ready: 0, leased: 0, delayed: 1, waiting: 1 });
    await setClock(s, '2 seconds');
    const [retry] = await claim(s, group, consumer, 10);
    expect([retry?.msg_id, retry?.attempt]).toEqual([k1, 2]);
    expect(await claim(s, group, consumer, 10)).toEqual([]);
    await ack(s, group, [retry!]);
    expect((await claim(s, group, consumer, 10)).map((x) => x.msg_id)).toEqual([k2]);
  });

  it('backoff grows as base * 2^(attempt-1), capped at backoff_max; retry_delay overrides it', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, {
      group: { max_attempts: 10, backoff_base: '1 second', backoff_max: '5 seconds', session_timeout: '1 hour' },
    });
    const id = await send(s, topic, { x: 1 }, { key: 'k' });
    let offset = 0;
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 6; attempt++) {
      await setClock(s, `${offset} milliseconds`);
      const [m] = await claim(s, group, consumer, 10);
      expect([m?.msg_id, m?.attempt]).toEqual([id, attempt]);
      await s.query('begin');
      const [r] = await nack(s, group, [m!]);
      const { rows } = await s.query('select bucketq._now() as now');
      await s.query('commit');
      const delay = r!.retry_at!.getTime() - (rows[0].now as Date).getTime();
      delays.push(delay);
      // not before the retry time ...
      await setClock(s, `${offset + delay - 300} milliseconds`);
      expect(await claim(s, group, consumer, 10)).toEqual([]);
      offset += delay + 100;
    }
    expect(delays).toEqual([1000, 2000, 4000, 5000, 5000, 5000]);

    // an explicit retry_delay replaces the backoff
    await setClock(s, `${offset} milliseconds`);
    const [m] = await claim(s, group, consumer, 10);
    expect(m?.attempt).toBe(7);
    await nack(s, group, [m!], { retryDelay: '0 seconds' });
    expect((await claim(s, group, consumer, 10)).map((x) => x.attempt)).toEqual([8]);
  });

  it('nack of a stale lease raises BQ006 and leaves the current lease alone', async () => {
    const s1 = await ctx.session();
    const s2 = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s1, ctx, { group: { lease_timeout: '5 seconds', session_timeout: '1 hour' } });
    await send(s1, topic, { x: 1 });
    const old = await claim(s1, group, consumer, 1);
    await setClock(s2, '6 seconds');
    const fresh = await claim(s2, group, consumer, 1);
    expect(fresh[0]?.attempt).toBe(2);
    await expectBqError(nack(s1, group, old), 'BQ006');
    expect(await lag(s1, group)).toMatchObject({ leased: 1, delayed: 0 });
    expect(await ack(s2, group, fresh)).toEqual([{ msg_id: fresh[0]!.msg_id, status: 'acked' }]);
  });
});

describe('dead letters', () => {
  it("skip: after max_attempts the message is a dead letter and the key moves on", async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, {
      group: { max_attempts: 3, backoff_base: '0 seconds', backoff_max: '0 seconds' },
    });
    const [k1, k2] = await sendBatch(s, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    const statuses: string[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [m] = await claim(s, group, consumer, 10);
      expect([m?.msg_id, m?.attempt]).toEqual([k1, attempt]);
      statuses.push(...(await nack(s, group, [m!], { error: `failure ${attempt}` })).map((r) => r.status));
    }
    expect(statuses).toEqual(['retry', 'retry', 'dead']);
    expect(await deadLetters(s, group)).toEqual([
      { msg_id: k1, key: 'k', key_seq: 1, attempts: 3, last_error: 'failure 3', status: 'skipped', payload: { n: 1 } },
    ]);
    const [next] = await claim(s, group, consumer, 10);
    expect([next?.msg_id, next?.attempt]).toEqual([k2, 1]);
    const { rows } = await s.query(`select dead::int from bucketq.groups where group_name = $1`, [group]);
    expect(rows[0].dead).toBe(1);
  });

  it('skip: a lease that keeps expiring is dead-lettered after max_attempts, and the key moves on', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { group: { max_attempts: 2, lease_timeout: '5 seconds', session_timeout: '1 hour' } });
    const [k1, k2] = await sendBatch(s, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    expect((await claim(s, group, consumer, 10)).map((m) => [m.msg_id, m.attempt])).toEqual([[k1, 1]]);
    await setClock(s, '6 seconds');
    expect((await claim(s, group, consumer, 10)).map((m) => [m.msg_id, m.attempt])).toEqual([[k1, 2]]);
    await setClock(s, '12 seconds');
    expect((await claim(s, group, consumer, 10)).map((m) => [m.msg_id, m.attempt])).toEqual([[k2, 1]]);
    const dead = await deadLetters(s, group);
    expect(dead.map((d) => [d.msg_id, d.attempts, d.status])).toEqual([[k1, 2, 'skipped']]);
    expect(dead[0].last_error).toMatch(/lease expired/);
  });

  it('a poison message that crashes every worker (each restart a new consumer taking the buckets over) is dead-lettered after max_attempts', async () => {
    // Each worker claims the message and dies without ack or nack; a fresh process (new
    // consumer_id) takes the expired buckets over. Attempts must stay bounded by max_attempts.
    const admin = await ctx.session();
    const { topic, group } = await topicAndGroup(admin, ctx, { consumer: null, buckets: 1, group: { max_attempts: 2, session_timeout: '10 seconds' } });
    const [poison, next] = await sendBatch(admin, topic, [{ poison: true }, { poison: false }], { keys: ['k', 'k'] });
    const attempts: number[] = [];
    let after: number | undefined;
    for (let worker = 1; worker <= 4; worker++) {
      const c = await ctx.session();
      await setClock(c, `${worker * 20} seconds`); // the previous worker's session has expired
      await c.query('select * from bucketq.join($1, $2)', [group, `worker-${worker}`]);
      const got = await claim(c, group, `worker-${worker}`, 10);
      const m = got[0];
      if (!m) continue;
      if (m.msg_id !== poison) {
        after = m.msg_id;
        break;
      }
      attempts.push(m.attempt);
      // ... and the worker dies here
    }
    expect(attempts).toEqual([1, 2]);
    expect(after).toBe(next);
    expect((await deadLetters(admin, group)).map((d) => [d.msg_id, d.attempts])).toEqual([[poison, 2]]);
  });

  it('block: the dead message holds its key; other keys flow; replay_dead releases it in order', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, {
      group: { max_attempts: 2, on_exhausted: 'block', backoff_base: '0 seconds', backoff_max: '0 seconds' },
    });
    const [k1, k2] = await sendBatch(s, topic, [{ k: 1 }, { k: 2 }], { keys: ['k', 'k'] });
    const [m1] = await claim(s, group, consumer, 10);
    await nack(s, group, [m1!]);
    const [m2] = await claim(s, group, consumer, 10);
    expect((await nack(s, group, [m2!])).map((r) => r.status)).toEqual(['dead']);
    expect((await deadLetters(s, group)).map((d) => [d.msg_id, d.status])).toEqual([[k1, 'blocking']]);
    expect(await lag(s, group)).toMatchObject({ ready: 0, dead_blocking: 1, waiting: 1 });

    const other = await send(s, topic, { other: 1 }, { key: 'other' });
    expect((await claim(s, group, consumer, 10)).map((m) => m.msg_id)).toEqual([other]); // not k2

    expect(await s.query('select bucketq.replay_dead($1) as n', [group]).then((r) => r.rows[0].n)).toBe(1);
    const [again] = await claim(s, group, consumer, 10);
    expect([again?.msg_id, again?.attempt]).toEqual([k1, 1]);
    await ack(s, group, [again!]);
    expect((await claim(s, group, consumer, 10)).map((m) => m.msg_id)).toEqual([k2]);
    expect((await deadLetters(s, group)).map((d) => d.status)).toEqual(['replayed']);
  });
});

describe('replay_dead', () => {
  async function deadHeads(opts: { onExhausted?: string } = {}) {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, {
      group: { max_attempts: 1, on_exhausted: opts.onExhausted ?? 'skip', backoff_base: '0 seconds', backoff_max: '0 seconds' },
    });
    return { s, topic, group, consumer };
  }

  it('puts skipped dead letters back before the later, not yet claimed messages of the key', async () => {
    const { s, topic, group, consumer } = await deadHeads();
    const ids = await sendBatch(s, topic, [1, 2, 3, 4, 5].map((n) => ({ n })), { keys: ['k', 'k', 'k', 'k', 'k'] });
    // 1 and 2 die, 3 is acked; 4 and 5 are still to come
    for (const expected of ids.slice(0, 2)) {
      const [m] = await claim(s, group, consumer, 10);
      expect(m?.msg_id).toBe(expected);
      await nack(s, group, [m!]);
    }
    const [m3] = await claim(s, group, consumer, 10);
    expect(m3?.msg_id).toBe(ids[2]);
    await ack(s, group, [m3!]);

    expect(await s.query('select bucketq.replay_dead($1, $2::bigint[]) as n', [group, ids.slice(0, 2)]).then((r) => r.rows[0].n)).toBe(2);
    expect(await drain(s, group, consumer)).toEqual([{ n: 1 }, { n: 2 }, { n: 4 }, { n: 5 }]);
  });

  it('a replayed message waits for a later message of its key that is already in flight, then goes first', async () => {
    const { s, topic, group, consumer } = await deadHeads();
    const ids = await sendBatch(s, topic, [1, 2, 3].map((n) => ({ n })), { keys: ['k', 'k', 'k'] });
    const [m1] = await claim(s, group, consumer, 10);
    await nack(s, group, [m1!]); // dead, key moves on
    const [m2] = await claim(s, group, consumer, 10);
    expect(m2?.msg_id).toBe(ids[1]);
    await s.query('select bucketq.replay_dead($1)', [group]);
    expect(await claim(s, group, consumer, 10)).toEqual([]); // 2 is in flight: nothing else of the key
    await ack(s, group, [m2!]);
    expect(await drain(s, group, consumer)).toEqual([{ n: 1 }, { n: 3 }]);
  });

  it('holds back producers of its keys in key order: no deadlock with a transaction sending its keys in key order', async () => {
    const { s, topic, group, consumer } = await deadHeads();
    // "b" gets the lower key_id: an order by key_id would lock b before a.
    await sendBatch(s, topic, [{ n: 'b' }], { keys: ['b'] });
    await sendBatch(s, topic, [{ n: 'a' }], { keys: ['a'] });
    await nack(s, group, await claim(s, group, consumer, 10));
    expect((await deadLetters(s, group)).length).toBe(2);
    const [P, R] = [await ctx.session(), await ctx.session()];
    await P.query('begin');
    await send(P, topic, { n: 'a2' }, { key: 'a' });
    const replay = R.query('select bucketq.replay_dead($1) as n', [group]);
    await waitUntilBlocked(s, pidOf(R)); // on a, held by P: it must hold nothing else yet
    await send(P, topic, { n: 'b2' }, { key: 'b' });
    await P.query('commit');
    expect((await replay).rows[0].n).toBe(2);
    const got = await drain(s, group, consumer);
    expect(got.filter((p) => ['a', 'a2'].includes((p as { n: string }).n))).toEqual([{ n: 'a' }, { n: 'a2' }]);
    expect(got.filter((p) => ['b', 'b2'].includes((p as { n: string }).n))).toEqual([{ n: 'b' }, { n: 'b2' }]);
  });

  it('unknown (or already replayed) ids raise BQ005 and replay nothing', async () => {
    const { s, topic, group, consumer } = await deadHeads();
    const [a, b] = await sendBatch(s, topic, [{ n: 1 }, { n: 2 }], { keys: ['a', 'b'] });
    await nack(s, group, await claim(s, group, consumer, 10));
    expect((await deadLetters(s, group)).map((d) => d.msg_id)).toEqual([a, b]);

    const before = await stateFingerprint(s);
    const err = await expectBqError(s.query('select bucketq.replay_dead($1, $2::bigint[])', [group, [a, 999_999_999]]), 'BQ005');
    expect(err.message).toContain('999999999');
    expect(await stateFingerprint(s)).toEqual(before);
    expect((await deadLetters(s, group)).map((d) => d.status)).toEqual(['skipped', 'skipped']);

    expect(await s.query('select bucketq.replay_dead($1, $2::bigint[]) as n', [group, [a]]).then((r) => r.rows[0].n)).toBe(1);
    const afterOne = await stateFingerprint(s);
    await expectBqError(s.query('select bucketq.replay_dead($1, $2::bigint[])', [group, [a]]), 'BQ005', /replayed already/);
    expect(await stateFingerprint(s)).toEqual(afterOne);
    expect(await drain(s, group, consumer)).toEqual([{ n: 1 }]);
  });

  it('replays unkeyed dead letters of a block group at once', async () => {
    const { s, topic, group, consumer } = await deadHeads({ onExhausted: 'block' });
    const id = await send(s, topic, { unkeyed: true });
    await nack(s, group, await claim(s, group, consumer, 10));
    expect(await claim(s, group, consumer, 10)).toEqual([]);
    await s.query('select bucketq.replay_dead($1)', [group]);
    expect((await claim(s, group, consumer, 10)).map((m) => [m.msg_id, m.attempt])).toEqual([[id, 1]]);
  });
});
