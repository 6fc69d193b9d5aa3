// Per-key FIFO at the SQL level (DESIGN guarantee 2), with real concurrent sessions:
// producers sending to the same keys while consumers claim and ack.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ack, claim, inTx, pidOf, send, sendBatch, tick, topicAndGroup, useDatabase, waitUntilBlocked, type Claimed } from './helpers/sql.js';

const ctx = useDatabase();

/** Deterministic PRNG so that a failure can be reproduced. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Committed {
  id: number;
  key: string;
  producer: number;
  i: number;
}

/**
 * One producer session: sends `count` messages to keys chosen by pick(), mixing single
 * autocommitted sends, multi-statement transactions, send_batch, and rolled-back
 * transactions (whose messages must never be delivered). Returns what committed.
 */
async function produce(c: pg.Client, topic: string, producer: number, count: number, pick: () => string, rand: () => number): Promise<{ committed: Committed[]; rolledBack: number[] }> {
  const committed: Committed[] = [];
  const rolledBack: number[] = [];
  let i = 0;
  while (i < count) {
    const mode = Math.floor(rand() * 4);
    const n = Math.min(count - i, mode === 0 ? 1 : 1 + Math.floor(rand() * 5));
    // Keys in a consistent order within a transaction: a producer that locks key counters
    // in arbitrary order can deadlock with another one (that would be the caller's doing).
    const keys = Array.from({ length: n }, () => pick()).sort();
    const batch = keys.map((key, j) => ({ key, producer, i: i + j }));
    if (mode === 0) {
      const b = batch[0]!;
      committed.push({ ...b, id: await send(c, topic, b, { key: b.key }) });
    } else if (mode === 1) {
      // several statements in one transaction
      const ids = await inTx(c, async () => {
        const out: number[] = [];
        for (const b of batch) out.push(await send(c, topic, b, { key: b.key }));
        return out;
      });
      batch.forEach((b, j) => committed.push({ ...b, id: ids[j]! }));
    } else if (mode === 2) {
      const ids = await sendBatch(c, topic, batch, { keys: batch.map((b) => b.key) });
      batch.forEach((b, j) => committed.push({ ...b, id: ids[j]! }));
    } else {
      // a transaction that rolls back: its messages and key_seqs must vanish
      await c.query('begin');
      for (const b of batch) rolledBack.push(await send(c, topic, { ...b, rolledBack: true }, { key: b.key }));
      await c.query('rollback');
      continue; // do not advance i: these did not happen
    }
    i += n;
  }
  return { committed, rolledBack };
}

interface ConsumeResult {
  violations: string[];
  acked: Map<string, { seq: number; id: number; payload: { producer: number; i: number } }[]>;
}

/**
 * Consumer sessions claiming and acking in a loop until `expected()` messages are acked.
 * Per key it tracks the last key_seq whose ack was sent and whether a lease is held:
 * a claim must return exactly last + 1 and never a key that is still leased.
 */
async function consume(sessions: { c: pg.Client; consumer: string }[], group: string, expected: () => number | undefined, rand: () => number): Promise<ConsumeResult> {
  const violations: string[] = [];
  const lastAcked = new Map<string, number>();
  const held = new Set<string>();
  const acked: ConsumeResult['acked'] = new Map();
  let total = 0;
  const done = () => {
    const e = expected();
    return violations.length > 0 || (e !== undefined && total >= e);
  };
  await Promise.all(
    sessions.map(async ({ c, consumer }) => {
      let idle = 0;
      while (!done()) {
        const msgs: Claimed[] = await claim(c, group, consumer, 1 + Math.floor(rand() * 20));
        if (msgs.length === 0) {
          if (++idle > 20_000) {
            violations.push(`consumer ${consumer} starved with ${total} of ${expected()} acked`);
            return;
          }
          await tick();
          continue;
        }
        idle = 0;
        for (const m of msgs) {
          const key = m.key!;
          const last = lastAcked.get(key) ?? 0;
          if (held.has(key)) violations.push(`key ${key}: claimed seq ${m.key_seq} while seq ${last + 1} is still leased`);
          if (m.key_seq !== last + 1) violations.push(`key ${key}: claimed seq ${m.key_seq}, expected ${last + 1}`);
          if (m.attempt !== 1) violations.push(`msg ${m.msg_id}: attempt ${m.attempt}, expected 1`);
          held.add(key);
        }
        if (rand() < 0.3) await tick(); // hold the leases a moment
        // Record before sending the ack: once it commits, another session may claim the next one.
        for (const m of msgs) {
          lastAcked.set(m.key!, m.key_seq!);
          held.delete(m.key!);
          const list = acked.get(m.key!) ?? [];
          list.push({ seq: m.key_seq!, id: m.msg_id, payload: m.payload as { producer: number; i: number } });
          acked.set(m.key!, list);
        }
        total += msgs.length;
        const res = rand() < 0.5 ? await ack(c, group, msgs) : await inTx(c, () => ack(c, group, msgs));
        if (res.some((r) => r.status !== 'acked')) violations.push(`ack statuses ${JSON.stringify(res)}`);
      }
    }),
  );
  return { violations, acked };
}

/** Samples the inbox while the run goes: per key, at most one row is not waiting (ready, leased, delayed). */
async function monitor(c: pg.Client, group: string, stop: () => boolean): Promise<string[]> {
  const bad: string[] = [];
  let samples = 0;
  while (!stop() || samples === 0) {
    const { rows } = await c.query(
      `select i.key_id, count(*) filter (where i.state <> 3)::int as active, count(*) filter (where i.state = 1)::int as leased
         from bucketq.inbox i join bucketq.consumer_group g on g.group_id = i.group_id
        where g.name = $1 and i.key_id is not null
        group by i.key_id
       having count(*) filter (where i.state <> 3) > 1`,
      [group],
    );
    for (const r of rows) bad.push(`key_id ${r.key_id}: ${r.active} active rows (${r.leased} leased)`);
    samples++;
    await tick();
  }
  return bad;
}

async function runScenario(opts: { keys: number; producers: number; perProducer: number; consumers: number; distinctConsumers: boolean; seed: number }) {
  const admin = await ctx.session();
  // The consumers join once and never heartbeat: a session that lasts the whole run, so
  // that a slow machine tests order, not liveness.
  const { topic, group } = await topicAndGroup(admin, ctx, { consumer: null, group: { session_timeout: '1 hour' } });
  const consumerSessions: { c: pg.Client; consumer: string }[] = [];
  for (let i = 0; i < opts.consumers; i++) {
    const consumer = opts.distinctConsumers ? `c${i}` : 'c-shared';
    const c = await ctx.session();
    if (opts.distinctConsumers || i === 0) await c.query('select * from bucketq.join($1, $2)', [group, consumer]);
    consumerSessions.push({ c, consumer });
  }
  if (opts.distinctConsumers) {
    // settle the fair share so that every consumer owns some buckets
    for (let round = 0; round < 4; round++) for (const s of consumerSessions) await s.c.query('select * from bucketq.heartbeat($1, $2)', [group, s.consumer]);
    const { rows } = await admin.query(`select count(distinct owner)::int as owners, count(owner)::int as owned from bucketq.buckets where group_name = $1`, [group]);
    expect(rows[0]).toEqual({ owners: opts.consumers, owned: 16 });
  }
  const producerSessions = await Promise.all(Array.from({ length: opts.producers }, () => ctx.session()));
  const monitorSession = await ctx.session();

  const keyNames = Array.from({ length: opts.keys }, (_, k) => `key-${k}`);
  let expectedTotal: number | undefined;
  let finished = false;
  const producing = Promise.all(
    producerSessions.map((c, p) => {
      const rand = rng(opts.seed * 100 + p);
      return produce(c, topic, p, opts.perProducer, () => keyNames[Math.floor(rand() * keyNames.length)]!, rand);
    }),
  ).then((results) => {
    expectedTotal = results.reduce((s, r) => s + r.committed.length, 0);
    return results;
  });
  const consuming = consume(consumerSessions, group, () => expectedTotal, rng(opts.seed));
  const monitoring = monitor(monitorSession, group, () => finished);
  const [produced, consumed] = await Promise.all([producing, consuming]);
  finished = true;
  const monitorViolations = await monitoring;

  expect(consumed.violations).toEqual([]);
  expect(monitorViolations).toEqual([]);

  // Every committed message acked exactly once, none of the rolled-back ones.
  const committed = produced.flatMap((r) => r.committed);
  const rolledBack = new Set(produced.flatMap((r) => r.rolledBack));
  const ackedIds = [...consumed.acked.values()].flat().map((a) => a.id);
  expect(ackedIds.length).toBe(committed.length);
  expect(new Set(ackedIds)).toEqual(new Set(committed.map((m) => m.id)));
  expect(ackedIds.filter((id) => rolledBack.has(id))).toEqual([]);

  // Per key: key_seq 1..N in ack order, no gaps, no duplicates; and each producer's
  // messages of the key in the order that producer sent them.
  for (const key of keyNames) {
    const list = consumed.acked.get(key) ?? [];
    const n = committed.filter((m) => m.key === key).length;
    expect(list.map((a) => a.seq), `key ${key}`).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    for (let p = 0; p < opts.producers; p++) {
      const mine = list.filter((a) => a.payload.producer === p).map((a) => a.payload.i);
      expect(mine, `key ${key} producer ${p}`).toEqual([...mine].sort((x, y) => x - y));
    }
  }

  const { rows } = await admin.query(
    `select (select count(*)::int from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1) as delivered,
            (select count(*)::int from bucketq.inbox i join bucketq.consumer_group g using (group_id) where g.name = $1) as pending`,
    [group],
  );
  expect(rows[0]).toEqual({ delivered: committed.length, pending: 0 });
}

describe('per-key FIFO under concurrency', () => {
  it('one hot key: 8 producers (single sends, transactions, batches, rollbacks) and 3 sessions of one consumer', async () => {
    await runScenario({ keys: 1, producers: 8, perProducer: 50, consumers: 3, distinctConsumers: false, seed: 1 });
  });

  it('200 keys: 8 producers and 3 joined consumers sharing the buckets', async () => {
    await runScenario({ keys: 200, producers: 8, perProducer: 250, consumers: 3, distinctConsumers: true, seed: 2 });
  });
});

describe('rolled-back producers leave no gap in key_seq', () => {
  it('a rollback after a committed message: the next send continues at the rolled-back seq', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const first = await send(c, topic, { n: 1 }, { key: 'k' });
    await c.query('begin');
    const ghost = await send(c, topic, { n: 'ghost' }, { key: 'k' });
    const { rows: inside } = await c.query('select key_seq::int from bucketq.message where id = $1', [ghost]);
    expect(inside[0].key_seq).toBe(2);
    await c.query('rollback');
    const second = await send(c, topic, { n: 2 }, { key: 'k' });

    const got: Claimed[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await claim(c, group, consumer, 10);
      got.push(...m);
      if (m.length) await ack(c, group, m);
    }
    expect(got.map((m) => [m.msg_id, m.key_seq])).toEqual([
      [first, 1],
      [second, 2],
    ]);
  });

  it('a producer waiting on the key counter takes the seq of one that rolls back', async () => {
    const c = await ctx.session();
    const p1 = await ctx.session();
    const p2 = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await send(c, topic, { n: 1 }, { key: 'k' });

    await p1.query('begin');
    const ghost = await send(p1, topic, { n: 'ghost' }, { key: 'k' });
    const waiting = send(p2, topic, { n: 2 }, { key: 'k' }); // blocks on the key counter
    await waitUntilBlocked(c, pidOf(p2));
    await p1.query('rollback');
    const second = await waiting;

    const { rows } = await c.query(
      'select m.id::int, m.key_seq::int from bucketq.message m join bucketq.topic t using (topic_id) where t.name = $1 and m.key = $2 order by m.key_seq',
      [topic, 'k'],
    );
    expect(rows.map((r) => r.key_seq)).toEqual([1, 2]);
    expect(rows.map((r) => r.id)).not.toContain(ghost);
    expect(rows[1].id).toBe(second);

    const a = await claim(c, group, consumer, 10);
    expect(a.map((m) => m.key_seq)).toEqual([1]);
    await ack(c, group, a);
    const b = await claim(c, group, consumer, 10);
    expect(b.map((m) => [m.msg_id, m.key_seq])).toEqual([[second, 2]]);
  });

  it('a rolled-back first message of a key: the key starts at 1', async () => {
    const c = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await c.query('begin');
    await send(c, topic, { n: 'ghost' }, { key: 'fresh' });
    await c.query('rollback');
    const id = await send(c, topic, { n: 1 }, { key: 'fresh' });
    const got = await claim(c, group, consumer, 10);
    expect(got.map((m) => [m.msg_id, m.key_seq])).toEqual([[id, 1]]);
  });

  it('a rolled-back message that was waiting behind a leased head does not block the key', async () => {
    const c = await ctx.session();
    const p = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    await send(c, topic, { n: 1 }, { key: 'k' });
    const head = await claim(c, group, consumer, 10);
    await p.query('begin');
    await send(p, topic, { n: 'ghost' }, { key: 'k' });
    await p.query('rollback');
    await ack(c, group, head);
    const next = await send(c, topic, { n: 2 }, { key: 'k' });
    expect((await claim(c, group, consumer, 10)).map((m) => [m.msg_id, m.key_seq])).toEqual([[next, 2]]);
  });
});

describe('ack racing a send on the same key', () => {
  it('never strands the key: after both commit, the next message is claimable (200 rounds, 5 interleavings)', async () => {
    const setup = await ctx.session();
    const consumerSession = await ctx.session();
    const producer = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(setup, ctx, { buckets: 1 });
    await send(producer, topic, { round: -1 }, { key: 'k' });
    let [head] = await claim(consumerSession, group, consumer, 1);
    expect(head?.key_seq).toBe(1);
    const stranded: string[] = [];

    for (let round = 0; round < 200; round++) {
      const mode = round % 5;
      let nextId: number;
      const cs = consumerSession;
      const heldHead = head!;
      if (mode === 0) {
        // producer's send done, then its COMMIT and the consumer's autocommitted ack at once
        await producer.query('begin');
        nextId = await send(producer, topic, { round }, { key: 'k' });
        await Promise.all([producer.query('commit'), ack(cs, group, [heldHead])]);
      } else if (mode === 1) {
        // both statements done inside open transactions, then both COMMITs at once
        await producer.query('begin');
        nextId = await send(producer, topic, { round }, { key: 'k' });
        await cs.query('begin');
        await ack(cs, group, [heldHead]);
        await Promise.all([producer.query('commit'), cs.query('commit')]);
      } else if (mode === 2) {
        // the ack's delete happens first (uncommitted), then the send sees the head still there
        await cs.query('begin');
        await ack(cs, group, [heldHead]);
        await producer.query('begin');
        nextId = await send(producer, topic, { round }, { key: 'k' });
        await Promise.all([cs.query('commit'), producer.query('commit')]);
      } else if (mode === 3) {
        // send, ack (its promotion cannot see the uncommitted send), consumer commits, then producer
        await producer.query('begin');
        nextId = await send(producer, topic, { round }, { key: 'k' });
        await cs.query('begin');
        await ack(cs, group, [heldHead]);
        await cs.query('commit');
        await producer.query('commit');
      } else {
        // as 3, but the producer commits first while the consumer's ack is uncommitted
        await producer.query('begin');
        nextId = await send(producer, topic, { round }, { key: 'k' });
        await cs.query('begin');
        await ack(cs, group, [heldHead]);
        const committing = producer.query('commit'); // waits for the consumer's commit
        await cs.query('commit');
        await committing;
      }
      const next = await claim(cs, group, consumer, 10);
      if (next.length !== 1 || next[0]!.msg_id !== nextId) {
        const { rows } = await setup.query(
          `select i.msg_id, i.key_seq, i.state from bucketq.inbox i join bucketq.consumer_group g using (group_id) where g.name = $1 order by key_seq`,
          [group],
        );
        stranded.push(`round ${round} (mode ${mode}): claimed ${JSON.stringify(next.map((m) => m.msg_id))}, expected [${nextId}]; inbox ${JSON.stringify(rows)}`);
        break;
      }
      expect(next[0]!.key_seq).toBe(round + 2);
      head = next[0];
    }
    expect(stranded).toEqual([]);
  });

  it('a batch producer committing while a batch ack of the same keys runs: neither fails with a deadlock (up to 150 rounds)', async () => {
    // A producer sending to keys whose heads are leased inserts waiting rows; at commit its
    // check locks each head FOR SHARE in the order of its rows. A consumer acking those heads
    // in one ack() deletes them in its own order. Opposite orders must not make either fail.
    const setup = await ctx.session();
    const consumerSession = await ctx.session();
    const producer = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(setup, ctx, { buckets: 1 });
    const keys = Array.from({ length: 60 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await sendBatch(setup, topic, keys.map((k) => ({ k })), { keys });
    const failures: string[] = [];
    for (let round = 0; round < 150 && failures.length === 0; round++) {
      const heads = await claim(consumerSession, group, consumer, 1000);
      expect(heads).toHaveLength(keys.length); // no key stranded so far
      const order = round % 2 ? [...keys].reverse() : keys; // the producer's own key order
      await producer.query('begin');
      await sendBatch(producer, topic, order.map((k) => ({ k, round })), { keys: order });
      const [committed, acked] = await Promise.all([
        producer.query('commit').then(() => 'ok', (e: Error) => `producer COMMIT: ${e.message}`),
        ack(consumerSession, group, heads).then(() => 'ok', (e: Error) => `ack: ${e.message}`),
      ]);
      for (const r of [committed, acked]) if (r !== 'ok') failures.push(`round ${round}: ${r}`);
    }
    expect(failures).toEqual([]);
  });

  it('a consumer acking two heads in two statements while a batch producer of the same keys commits: the producer waits for nothing, nothing is stranded', async () => {
    // Consumer: BEGIN; ack(b1) ... ack(a1); COMMIT. Producer: send_batch(keys [A, B]) then
    // COMMIT. Sends write only the log (no row per group that an ack would lock), so the
    // producer's commit never waits for the consumer, and there is no lock cycle to break.
    const c = await ctx.session();
    const p = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { buckets: 1 });
    await sendBatch(c, topic, [{ a: 1 }, { b: 1 }], { keys: ['A', 'B'] });
    const heads = await claim(c, group, consumer, 10);
    const a1 = heads.find((m) => m.key === 'A')!;
    const b1 = heads.find((m) => m.key === 'B')!;
    await p.query('begin');
    const [a2, b2] = await sendBatch(p, topic, [{ a: 2 }, { b: 2 }], { keys: ['A', 'B'] });
    await c.query('begin');
    await ack(c, group, [b1]);
    await p.query('commit'); // would hang here if it waited for the consumer's transaction
    await ack(c, group, [a1]);
    await c.query('commit');
    expect((await claim(c, group, consumer, 10)).map((m) => m.msg_id).sort((x, y) => x - y)).toEqual([a2, b2]);
  });
});
