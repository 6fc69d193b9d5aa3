// Runs (claim's max_per_key): consecutive messages of one key leased together, acked in
// order; a nack, an expiry or a rebalance puts the rest of the run back behind its head
// without counting an attempt, so per-key FIFO and the dead-letter rule still hold.
import { describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, inTx, nack, pidOf, sendBatch, setClock, topicAndGroup, useDatabase, waitUntilBlocked, type Claimed, type Queryable } from './helpers/sql.js';

const ctx = useDatabase();

async function rows(c: Queryable, group: string) {
  const { rows } = await c.query(
    `select i.msg_id::int, i.key_seq::int, i.state::int, i.attempts from bucketq.inbox i join bucketq.consumer_group g using (group_id)
      where g.name = $1 order by i.key_id, i.key_seq, i.msg_id`,
    [group],
  );
  return rows as { msg_id: number; key_seq: number; state: number; attempts: number }[];
}

const seqs = (ms: Claimed[]) => ms.map((m) => `${m.key ?? '-'}${m.key_seq ?? ''}`);

describe('claim with max_per_key', () => {
  it('leases each key as a run in key_seq order under one token; by default only the head', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, Array.from({ length: 10 }, (_, i) => ({ i })), {
      keys: ['a', 'b', 'a', null, 'a', 'b', 'a', 'b', null, 'a'],
    });

    const heads = await inTx(c, async () => {
      const got = await claim(c, group, consumer, 100);
      throw Object.assign(new Error('roll back'), { got });
    }).catch((err: { got?: Claimed[] }) => err.got);
    expect(seqs(heads ?? [])).toEqual(['a1', 'b1', '-', '-']);

    const run = await claim(c, group, consumer, 100, { maxPerKey: 3 });
    expect(seqs(run)).toEqual(['a1', 'a2', 'a3', 'b1', 'b2', 'b3', '-', '-']);
    expect(new Set(run.map((m) => m.lease_token)).size).toBe(1);
    expect(run.every((m) => m.attempt === 1)).toBe(true);
    // a4, a5 wait behind the leased run
    expect(await claim(c, group, consumer, 100, { maxPerKey: 3 })).toEqual([]);
    const left = (await rows(c, group)).filter((r) => r.state !== 1);
    expect(left.map((r) => [r.key_seq, r.state])).toEqual([
      [4, 3],
      [5, 3],
    ]);
  });

  it('max_messages caps heads and runs together: a bucket\'s whole run, then the next bucket', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, Array.from({ length: 12 }, (_, i) => ({ i })), { keys: [...Array(6).fill('x'), ...Array(6).fill('y')] });
    // One bucket's batch at a time, whichever comes first: a whole run of five...
    const first = seqs(await claim(c, group, consumer, 5, { maxPerKey: 10 }));
    const [k, other] = first[0] === 'x1' ? ['x', 'y'] : ['y', 'x'];
    expect(first).toEqual([1, 2, 3, 4, 5].map((i) => `${k}${i}`));
    // ...then the other key's run, capped at max_per_key
    expect(seqs(await claim(c, group, consumer, 5, { maxPerKey: 3 }))).toEqual([1, 2, 3].map((i) => `${other}${i}`));
    expect(seqs(await claim(c, group, consumer, 5, { maxPerKey: 3 }))).toEqual([]); // x6 and y4.. wait behind their runs
  });

  it('a bucket another session is reading is skipped, with its keys; the other buckets flow', async () => {
    const c = await ctx.session();
    const other = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const ids = await sendBatch(c, topic, Array.from({ length: 8 }, (_, i) => ({ i })), { keys: ['x', 'x', 'x', 'x', 'y', 'y', 'z', 'z'] });
    const { rows } = await c.query(`select id::int, key, bucket from bucketq.message where id = any($1::bigint[])`, [ids]);
    const bucketOf = (k: string) => rows.find((r) => r.key === k)!.bucket as number;
    await other.query('begin');
    // a locked claim of x's bucket under way in another session
    await other.query(
      `select 1 from bucketq.cursor k join bucketq.consumer_group g using (group_id) where g.name = $1 and k.bucket = $2 for update of k`,
      [group, bucketOf('x')],
    );
    try {
      const expected = ['y1', 'y2', 'z1', 'z2'].filter((s) => bucketOf(s[0]!) !== bucketOf('x'));
      expect(seqs(await claim(c, group, consumer, 100, { maxPerKey: 10 }))).toEqual(expected);
    } finally {
      await other.query('rollback');
    }
    expect(seqs(await claim(c, group, consumer, 100, { maxPerKey: 10 }))).toEqual(['x1', 'x2', 'x3', 'x4']);
  });

  it('a run ends at a message not yet due (not_before) and at a gap', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await c.query(
      `select bucketq.send_batch($1, array['{}','{}','{}','{}']::jsonb[], array['k','k','k','k'], null, null,
                                 array[null, null, now() + interval '1 hour', null]::timestamptz[])`,
      [topic],
    );
    expect(seqs(await claim(c, group, consumer, 10, { maxPerKey: 10 }))).toEqual(['k1', 'k2']);
  });

  it('rejects max_per_key outside 1 to 10000 with a hint', async () => {
    const c = await ctx.session();
    const { group, consumer } = await topicAndGroup(c, ctx);
    await expectBqError(claim(c, group, consumer, 10, { maxPerKey: 0 }), 'BQ005', /invalid max_per_key 0/);
    await expectBqError(claim(c, group, consumer, 10, { maxPerKey: 10001 }), 'BQ005', /invalid max_per_key 10001/);
  });
});

describe('acking and nacking runs', () => {
  it('acking a whole run makes the message after it ready; acking past a leased earlier one is refused and acks nothing', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, Array.from({ length: 6 }, (_, i) => ({ i })), { keys: Array(6).fill('k') });
    const run = await claim(c, group, consumer, 3, { maxPerKey: 3 });
    expect(seqs(run)).toEqual(['k1', 'k2', 'k3']);

    const err = await expectBqError(ack(c, group, [run[1]!, run[2]!]), 'BQ005', /out of order/);
    expect(err.message).toContain(String(run[0]!.msg_id));
    const leased = await c.query(`select sum(leased)::int as n from bucketq.lag where group_name = $1`, [group]);
    expect(leased.rows[0].n).toBe(3);

    await inTx(c, async () => {
      await ack(c, group, [run[0]!]);
      await ack(c, group, [run[1]!, run[2]!]);
    });
    expect(seqs(await claim(c, group, consumer, 10, { maxPerKey: 10 }))).toEqual(['k4', 'k5', 'k6']);
  });

  it('a nack in the middle: earlier ones ack, the failed one retries after its delay, the rest waits behind it without an attempt', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { group: { backoff_base: '10 seconds', session_timeout: '1 hour' } });
    await sendBatch(c, topic, Array.from({ length: 5 }, (_, i) => ({ i })), { keys: Array(5).fill('k') });
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(run).toHaveLength(5);

    await inTx(c, () => ack(c, group, run.slice(0, 2)));
    const [n] = await nack(c, group, [run[2]!]);
    expect(n).toMatchObject({ msg_id: run[2]!.msg_id, status: 'retry' });
    expect(n!.retry_at).not.toBeNull();
    expect((await rows(c, group)).map((r) => [r.key_seq, r.state, r.attempts])).toEqual([
      [3, 2, 1],
      [4, 3, 0],
      [5, 3, 0],
    ]);
    // the tail's old lease is void
    await expectBqError(ack(c, group, [run[3]!]), 'BQ006');

    expect(await claim(c, group, consumer, 10, { maxPerKey: 10 })).toEqual([]);
    await setClock(c, '11 seconds');
    const retry = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(retry)).toEqual(['k3']); // a retry comes alone
    expect(retry[0]!.attempt).toBe(2);
    await ack(c, group, retry);
    const rest = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(rest)).toEqual(['k4', 'k5']);
    expect(rest.map((m) => m.attempt)).toEqual([1, 1]);
  });

  it('a nack of a later message while an earlier one of its run is still leased: it waits behind that one and keeps its retry time', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { group: { session_timeout: '1 hour' } });
    await sendBatch(c, topic, [{}, {}, {}], { keys: ['k', 'k', 'k'] });
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    await nack(c, group, [run[1]!], { retryDelay: '10 minutes' });
    expect((await rows(c, group)).map((r) => [r.key_seq, r.state])).toEqual([
      [1, 1],
      [2, 3],
      [3, 3],
    ]);
    await ack(c, group, [run[0]!]);
    expect((await rows(c, group)).map((r) => [r.key_seq, r.state])).toEqual([
      [2, 2], // delayed: its retry time holds
      [3, 3],
    ]);
    expect(await claim(c, group, consumer, 10, { maxPerKey: 10 })).toEqual([]);
    await setClock(c, '11 minutes');
    expect(seqs(await claim(c, group, consumer, 10, { maxPerKey: 10 }))).toEqual(['k2']);
  });

  it('a dead-lettered message in a run (skip policy): the rest of the run flows after it', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { group: { max_attempts: 1 } });
    await sendBatch(c, topic, [{}, {}, {}, {}], { keys: ['k', 'k', 'k', 'k'] });
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    await inTx(c, async () => {
      await ack(c, group, [run[0]!]);
    });
    expect((await nack(c, group, [run[1]!]))[0]!.status).toBe('dead');
    expect(seqs(await claim(c, group, consumer, 10, { maxPerKey: 10 }))).toEqual(['k3', 'k4']);
  });
});

describe('lost runs', () => {
  it('an expired run: the head comes back alone on its next attempt, the tail waits without an attempt, then runs resume', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { group: { lease_timeout: '5 seconds', session_timeout: '1 hour' } });
    await sendBatch(c, topic, [{}, {}, {}, {}], { keys: ['k', 'k', 'k', 'k'] });
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(run).toHaveLength(4);

    await setClock(c, '6 seconds');
    const again = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(again)).toEqual(['k1']);
    expect(again[0]!.attempt).toBe(2);
    expect((await rows(c, group)).map((r) => [r.key_seq, r.state, r.attempts])).toEqual([
      [1, 1, 2],
      [2, 3, 0],
      [3, 3, 0],
      [4, 3, 0],
    ]);
    await expectBqError(ack(c, group, run), 'BQ006'); // the old lease is void, head and tail
    await ack(c, group, again);
    const rest = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(rest)).toEqual(['k2', 'k3', 'k4']);
    expect(rest.map((m) => m.attempt)).toEqual([1, 1, 1]);
  });

  it('a message that kills its worker every time is dead-lettered alone: the messages behind it in its run are delivered', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, {
      group: { lease_timeout: '5 seconds', session_timeout: '1 hour', max_attempts: 2 },
    });
    await sendBatch(c, topic, [{}, {}, {}], { keys: ['k', 'k', 'k'] });
    expect(await claim(c, group, consumer, 10, { maxPerKey: 10 })).toHaveLength(3); // crash 1
    await setClock(c, '6 seconds');
    expect(seqs(await claim(c, group, consumer, 10, { maxPerKey: 10 }))).toEqual(['k1']); // crash 2
    await setClock(c, '12 seconds');
    const after = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(after)).toEqual(['k2', 'k3']);
    expect(after.map((m) => m.attempt)).toEqual([1, 1]);
    const { rows: dead } = await c.query(`select key_seq::int from bucketq.dead_letters where group_name = $1`, [group]);
    expect(dead).toEqual([{ key_seq: 1 }]);
  });

  it('a consumer leaving with a run leased: the head is ready again, the tail waits, no attempt counted', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, [{}, {}, {}], { keys: ['k', 'k', 'k'] });
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(run).toHaveLength(3);
    await c.query('select bucketq.leave($1, $2)', [group, consumer]);
    await c.query('select * from bucketq.join($1, $2)', [group, 'c2']);
    const again = await claim(c, group, 'c2', 10, { maxPerKey: 10 });
    expect(seqs(again)).toEqual(['k1', 'k2', 'k3']);
    expect(again.map((m) => m.attempt)).toEqual([1, 1, 1]);
  });

  it('rewind with a run leased: the old lease is void and the key is delivered again from the start, in order', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, [{}, {}, {}], { keys: ['k', 'k', 'k'] });
    const first = await claim(c, group, consumer, 1, { maxPerKey: 1 });
    await ack(c, group, first);
    const run = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(run)).toEqual(['k2', 'k3']);
    await c.query(`select bucketq.rewind($1, now() - interval '1 minute')`, [group]);
    await expectBqError(ack(c, group, run), 'BQ006');
    const again = await claim(c, group, consumer, 10, { maxPerKey: 10 });
    expect(seqs(again)).toEqual(['k1', 'k2', 'k3']);
  });
});

describe('a run\'s tail handed back while its head is being acked', () => {
  // The ack of the head and the hand-back of the tail run at once: neither may leave the
  // tail waiting behind a head that is gone (it would wait for ever).
  it('an ack of the head in flight while a claim hands the expired tail back: the tail is not stranded', async () => {
    const acker = await ctx.session();
    const claimer = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(acker, ctx, { group: { session_timeout: '1 minute' } });
    const [head, tail] = await sendBatch(acker, topic, [{}, {}], { keys: ['k', 'k'] });
    const run = await claim(acker, group, consumer, 10, { maxPerKey: 2, leaseTimeout: '1 second' });
    expect(run.map((m) => m.msg_id)).toEqual([head, tail]);

    await acker.query('begin');
    await ack(acker, group, [run[0]!]); // the head alone, not committed yet
    // Meanwhile the lease has expired for another session's claim, which puts expired
    // tails back behind their heads (the head is still there in its snapshot).
    await setClock(claimer, '10 seconds');
    await claimer.query(`set lock_timeout = '5s'`);
    // The tail is held by the ack's promotion: skipped, left for later (before the fix
    // it was put back to waiting behind the head being acked, and stranded there).
    expect((await claim(claimer, group, consumer, 10)).map((m) => m.msg_id)).toEqual([]);
    await acker.query('commit');
    const later = await claim(claimer, group, consumer, 10);
    expect(later.map((m) => [m.msg_id, m.attempt])).toEqual([[tail, 2]]);
    await ack(claimer, group, later);
    expect(await rows(acker, group)).toEqual([]);
  });
});

describe("a run's tail handed back while its head is dead-lettered", () => {
  it('a claim dead-letters the expired head while another session hands the tail back: the tail is not stranded', async () => {
    const claimer = await ctx.session();
    const other = await ctx.session();
    const observer = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(claimer, ctx, { group: { max_attempts: 1, session_timeout: '1 hour' } });
    const [head, tail] = await sendBatch(claimer, topic, [{}, {}], { keys: ['k', 'k'] });
    const run = await claim(claimer, group, consumer, 10, { maxPerKey: 2, leaseTimeout: '1 second' });
    expect(run.map((m) => m.msg_id)).toEqual([head, tail]);
    await setClock(claimer, '10 seconds'); // the run's lease has expired; its one attempt is spent

    // Another session (a second claimer of this consumer, a rebalance) has taken the
    // tail's row to hand it back.
    await other.query('begin');
    await other.query('select 1 from bucketq.inbox where msg_id = $1 for update', [tail]);
    // This claim skips the held tail, dead-letters the head and promotes the key's next
    // row: it waits for that row (before 000019 it went on without waiting).
    await claimer.query('begin');
    let settled = false;
    const claiming = claim(claimer, group, consumer, 10).finally(() => (settled = true));
    await waitUntilBlocked(observer, pidOf(claimer), () => settled);
    // The hand-back still sees the head (its deletion is not committed): the tail waits behind it.
    const { rows: g } = await other.query('select group_id from bucketq.consumer_group where name = $1', [group]);
    await other.query('select * from bucketq._unlease($1, array[$2::bigint])', [g[0].group_id, tail]);
    await other.query('commit');
    const first = await claiming;
    await claimer.query('commit');

    const delivered = [...first, ...(await claim(claimer, group, consumer, 10))].map((m) => m.msg_id);
    expect(delivered).toEqual([tail]);
    const { rows: dead } = await observer.query('select msg_id::int from bucketq.dead_letters where group_name = $1', [group]);
    expect(dead).toEqual([{ msg_id: head }]);
  });
});

describe('a replayed dead letter below a lease that is handed back', () => {
  it('the replayed message waits behind the later one in flight; when that lease is handed back, the key goes on from the replayed one', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, {
      buckets: 1, group: { max_attempts: 1, on_exhausted: 'skip', session_timeout: '1 hour' },
    });
    const [m1, m2] = await sendBatch(c, topic, [{ n: 1 }, { n: 2 }], { keys: ['k', 'k'] });
    const first = await claim(c, group, consumer, 10);
    expect(first.map((m) => m.msg_id)).toEqual([m1]);
    await nack(c, group, first); // its only attempt: dead, skipped
    const second = await claim(c, group, consumer, 10, { leaseTimeout: '1 second' });
    expect(second.map((m) => m.msg_id)).toEqual([m2]);
    // m1 back, below m2, which is in flight: m1 waits for it
    await c.query('select bucketq.replay_dead($1)', [group]);
    // m2's lease expires; a claim hands it back behind m1 (before: both waited, for ever)
    await setClock(c, '10 seconds');
    const delivered: number[] = [];
    for (let i = 0; i < 3; i++) {
      const got = await claim(c, group, consumer, 10);
      if (got.length) await ack(c, group, got);
      delivered.push(...got.map((m) => m.msg_id));
    }
    expect(delivered).toEqual([m1, m2]);
  });

  // Found by the random-sessions run with skip and replay: k2:64 and 65 acked before
  // k2:63, which a lease held from the log meanwhile.
  it('a replayed message acked while a later one is out from the log does not let the messages waiting behind that one go', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, {
      buckets: 1, group: { max_attempts: 1, on_exhausted: 'skip', session_timeout: '1 hour' },
    });
    const [m1] = await sendBatch(c, topic, [{ n: 1 }], { keys: ['k'] });
    await nack(c, group, await claim(c, group, consumer, 10)); // its only attempt: dead, skipped
    const [m2, m3, m4] = await sendBatch(c, topic, [{ n: 2 }, { n: 3 }, { n: 4 }], { keys: ['k', 'k', 'k'] });
    // From the log: m2 handed out, m3 and m4 wait in the inbox behind it (max_per_key 1).
    const second = await claim(c, group, consumer, 10);
    expect(second.map((m) => m.msg_id)).toEqual([m2]);
    // m1 back; m2 is in flight, so m1 goes before m3 and m4, which are not.
    await c.query('select bucketq.replay_dead($1)', [group]);
    const replayed = await claim(c, group, consumer, 10);
    expect(replayed.map((m) => m.msg_id)).toEqual([m1]);
    await ack(c, group, replayed);
    // m3 still waits for m2 (before: the ack of m1 promoted it, and it went next)
    expect(await claim(c, group, consumer, 10, { maxPerKey: 5 })).toEqual([]);
    const waiting = (await rows(c, group)).filter((r) => r.msg_id === m3 || r.msg_id === m4);
    expect(waiting.map((r) => r.state)).toEqual([3, 3]);
    await ack(c, group, second);
    const rest = await claim(c, group, consumer, 10, { maxPerKey: 5 });
    expect(rest.map((m) => m.msg_id)).toEqual([m3, m4]);
    await ack(c, group, rest);
  });

  it('the same with the message after the replayed one dead-lettered (skip) while the later one is out from the log', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, {
      buckets: 1, group: { max_attempts: 1, on_exhausted: 'skip', session_timeout: '1 hour' },
    });
    const [m1] = await sendBatch(c, topic, [{ n: 1 }], { keys: ['k'] });
    await nack(c, group, await claim(c, group, consumer, 10));
    const [m2, m3] = await sendBatch(c, topic, [{ n: 2 }, { n: 3 }], { keys: ['k', 'k'] });
    const second = await claim(c, group, consumer, 10);
    expect(second.map((m) => m.msg_id)).toEqual([m2]);
    await c.query('select bucketq.replay_dead($1)', [group]);
    const replayed = await claim(c, group, consumer, 10);
    expect(replayed.map((m) => m.msg_id)).toEqual([m1]);
    // m1 fails again: dead, skipped; its key's next waiting message is m3, behind m2
    await nack(c, group, replayed);
    expect(await claim(c, group, consumer, 10)).toEqual([]);
    await ack(c, group, second);
    expect((await claim(c, group, consumer, 10)).map((m) => m.msg_id)).toEqual([m3]);
  });
});

describe('runs under concurrency', () => {
  it('3 sessions claiming runs and failing some messages while 4 producers send: every message acked once, each key in key_seq order', async () => {
    const setup = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(setup, ctx, { group: { backoff_base: '1 millisecond', backoff_max: '1 millisecond', max_attempts: 100, session_timeout: '1 hour' } });
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const perProducer = 150;
    const producers = await Promise.all([0, 1, 2, 3].map(() => ctx.session()));
    const consumers = await Promise.all([0, 1, 2].map(() => ctx.session()));
    const total = producers.length * perProducer;

    const acked = new Map<string, number[]>(); // key -> acked key_seqs, in ack order
    const startedAt = new Map<string, number>(); // key -> next key_seq a claim may start with
    const violations: string[] = [];
    let done = 0;
    let producing = true;

    const produce = async (p: Queryable, n: number) => {
      for (let sent = 0; sent < perProducer; ) {
        const size = Math.min(perProducer - sent, 1 + ((n * 7 + sent) % 9));
        await sendBatch(p, topic, Array.from({ length: size }, () => ({})), { keys: Array.from({ length: size }, (_, i) => keys[(n + sent + i) % keys.length]!) });
        sent += size;
      }
    };
    const consumeLoop = async (s: Queryable, n: number) => {
      let round = 0;
      while (done < total) {
        const msgs = await claim(s, group, consumer, 15, { maxPerKey: 6 });
        if (msgs.length === 0) {
          await new Promise((r) => setTimeout(r, producing ? 1 : 5));
          continue;
        }
        // a claim hands out each key's next unacked message first
        for (const [i, m] of msgs.entries()) {
          const prev = msgs[i - 1];
          if (m.key === null) continue;
          if (prev?.key === m.key) {
            if (m.key_seq !== prev.key_seq! + 1) violations.push(`${m.key}: ${m.key_seq} after ${prev.key_seq} in one claim`);
          } else if (m.key_seq !== (startedAt.get(m.key) ?? 1)) {
            violations.push(`${m.key}: claim started at ${m.key_seq}, expected ${startedAt.get(m.key) ?? 1}`);
          }
        }
        // handle in order; one claim in five fails at its middle message: the rest of
        // that key's run is skipped, everything else acks, then the failed one is nacked
        const f = (n + round++) % 5 === 0 ? Math.floor(msgs.length / 2) : -1;
        const failedKey = f < 0 ? undefined : msgs[f]!.key;
        const toAck = msgs.filter((m, i) => i !== f && !(f >= 0 && i > f && m.key === failedKey));
        await s.query('begin');
        await ack(s, group, toAck);
        for (const m of toAck) {
          if (m.key === null) continue;
          acked.set(m.key, [...(acked.get(m.key) ?? []), m.key_seq!]);
          startedAt.set(m.key, m.key_seq! + 1);
        }
        await s.query('commit');
        done += toAck.length;
        if (f >= 0) await nack(s, group, [msgs[f]!]);
      }
    };

    await Promise.all([
      Promise.all(producers.map((p, n) => produce(p, n))).then(() => (producing = false)),
      ...consumers.map((s, n) => consumeLoop(s, n)),
    ]);

    expect(violations).toEqual([]);
    for (const [key, list] of acked) expect(list, key).toEqual(list.map((_, i) => i + 1));
    const { rows: counts } = await setup.query(
      `select count(*)::int as n, count(distinct msg_id)::int as d from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1`,
      [group],
    );
    expect(counts[0]).toEqual({ n: total, d: total });
    expect(await rows(setup, group)).toEqual([]);
  });
});
