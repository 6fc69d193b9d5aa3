// Locked claims (claim_locked): messages held by row locks in the claimer's own
// transaction, acked or nacked there with lease_tokens => NULL. Real concurrent
// sessions; crashes are real terminated backends.
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ack, claim, expectBqError, nack, pgError, pidOf, send, sendBatch, setClock, topicAndGroup, useDatabase, waitUntilBlocked, type Queryable } from './helpers/sql.js';

const ctx = useDatabase();
const opened: pg.Client[] = [];
/** A session whose open transaction is rolled back after each test, failed or not. */
async function session(): Promise<pg.Client> {
  const c = await ctx.session();
  opened.push(c);
  return c;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.query('rollback').catch(() => {})));
});

interface Locked {
  msg_id: number;
  key: string | null;
  key_seq: number | null;
  attempt: number;
  epoch: number;
  xact: string;
}

async function claimLocked(c: Queryable, group: string, consumer: string, max = 100, maxPerKey = 1): Promise<Locked[]> {
  const { rows } = await c.query(
    `select msg_id, key, key_seq, attempt, epoch, xact::text
       from bucketq.claim_locked(group_name => $1, consumer_id => $2, max_messages => $3, max_per_key => $4)`,
    [group, consumer, max, maxPerKey],
  );
  return rows.map((r) => ({ ...r, msg_id: Number(r.msg_id), key_seq: r.key_seq === null ? null : Number(r.key_seq), epoch: Number(r.epoch) }));
}

async function ackLocked(c: Queryable, group: string, ids: number[], consumer: string | null = 'c1', strict = true) {
  const { rows } = await c.query(
    `select msg_id::int, status from bucketq.ack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => null, consumer_id => $3, strict => $4)`,
    [group, ids, consumer, strict],
  );
  return rows as { msg_id: number; status: string }[];
}

async function nackLocked(c: Queryable, group: string, ids: number[], consumer = 'c1', retryDelay = '1 hour') {
  const { rows } = await c.query(
    `select msg_id::int, status from bucketq.nack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => null,
                                                 errors => $3::text[], retry_delay => $4::interval, consumer_id => $5)`,
    [group, ids, ids.map(() => 'boom'), retryDelay, consumer],
  );
  return rows as { msg_id: number; status: string }[];
}

async function inbox(c: Queryable, group: string) {
  const { rows } = await c.query(
    `select i.msg_id::int, i.key_seq::int, i.state::int, i.attempts, i.lease_token is not null as leased
       from bucketq.inbox i join bucketq.consumer_group g using (group_id)
      where g.name = $1 order by i.key_id, i.key_seq, i.msg_id`,
    [group],
  );
  return rows as { msg_id: number; key_seq: number; state: number; attempts: number; leased: boolean }[];
}

const seqs = (ms: { key: string | null; key_seq: number | null }[]) => ms.map((m) => `${m.key ?? '-'}${m.key_seq ?? ''}`);

/** Terminate a session's backend, as a crash or a dropped connection would end it. */
async function kill(observer: Queryable, victim: pg.Client): Promise<void> {
  const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
  await observer.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
  for (let i = 0; i < 500; i++) {
    const { rows: alive } = await observer.query('select 1 from pg_stat_activity where pid = $1', [rows[0]!.pid]);
    if (alive.length === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`backend ${rows[0]!.pid} did not end`);
}

describe('claim_locked', () => {
  it('hands out runs in key order without writing; other claimers skip the bucket; a rollback makes them ready at once', async () => {
    const a = await session();
    const b = await session();
    // one bucket: a batch holds it whole (other buckets' batches are another test's)
    const { topic, group, consumer } = await topicAndGroup(a, ctx, { buckets: 1 });
    await sendBatch(a, topic, Array.from({ length: 7 }, (_, i) => ({ i })), { keys: ['x', 'x', 'x', 'y', null, 'y', 'z'] });
    const before = await inbox(b, group);

    await a.query('begin');
    const got = await claimLocked(a, group, consumer, 4, 10);
    expect(seqs(got)).toEqual(['x1', 'x2', 'x3', 'y1']);
    expect(got.every((m) => m.attempt === 1 && m.epoch === got[0]!.epoch)).toBe(true);
    expect(new Set(got.map((m) => m.xact)).size).toBe(1);
    // Nothing written to the inbox: it reads the same from another session.
    expect(await inbox(b, group)).toEqual(before);
    // Another claimer (locked or leased) passes the bucket by while a reads it.
    await b.query('begin');
    expect(seqs(await claimLocked(b, group, consumer, 100, 10))).toEqual([]);
    await b.query('rollback');
    expect(seqs(await claim(b, group, consumer, 100, { maxPerKey: 10 }))).toEqual([]);

    await a.query('rollback');
    await a.query('begin');
    expect(seqs(await claimLocked(a, group, consumer, 100, 10))).toEqual(['x1', 'x2', 'x3', 'y1', 'y2', '-', 'z1']);
    await a.query('rollback');
  });

  it('ack with lease_tokens => NULL: delivery records with attempt and epoch, the key moves on, in order only', async () => {
    const c = await session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const ids = await sendBatch(c, topic, [{}, {}, {}, {}], { keys: ['k', 'k', 'k', 'k'] });

    await c.query('begin');
    const got = await claimLocked(c, group, consumer, 2, 2);
    expect(seqs(got)).toEqual(['k1', 'k2']);
    await expectBqError(ackLocked(c, group, [ids[1]!]), 'BQ005', /out of order/);
    await c.query('rollback');

    await c.query('begin');
    await claimLocked(c, group, consumer, 2, 2);
    await expectBqError(ackLocked(c, group, [ids[0]!], null), 'BQ005', /needs the consumer_id/);
    await c.query('rollback');

    await c.query('begin');
    await claimLocked(c, group, consumer, 2, 2);
    expect(await ackLocked(c, group, [ids[0]!, ids[1]!])).toEqual([
      { msg_id: ids[0], status: 'acked' },
      { msg_id: ids[1], status: 'acked' },
    ]);
    await c.query('commit');
    const { rows: delivered } = await c.query(
      `select msg_id::int, attempt, consumer_id, epoch::int from bucketq.deliveries d join bucketq.consumer_group g using (group_id)
        where g.name = $1 order by msg_id`,
      [group],
    );
    expect(delivered).toEqual([
      { msg_id: ids[0], attempt: 1, consumer_id: consumer, epoch: got[0]!.epoch },
      { msg_id: ids[1], attempt: 1, consumer_id: consumer, epoch: got[0]!.epoch },
    ]);
    // A message this transaction did not claim is refused; nothing is acked.
    await c.query('begin');
    await expectBqError(ackLocked(c, group, [ids[3]!]), 'BQ006');
    await c.query('rollback');
    // The key moved on: k3 comes next, with k4 behind it.
    await c.query('begin');
    expect(seqs(await claimLocked(c, group, consumer, 10, 10))).toEqual(['k3', 'k4']);
    await c.query('rollback');
    // Acked already: strict raises BQ006; not strict reports it.
    await expectBqError(ackLocked(c, group, [ids[0]!]), 'BQ006');
    expect(await ackLocked(c, group, [ids[0]!], consumer, false)).toEqual([{ msg_id: ids[0], status: 'already_acked' }]);
  });

  it('nack with lease_tokens => NULL counts the attempt, keeps the key blocked, and dead-letters when attempts are spent', async () => {
    const c = await session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx, { group: { max_attempts: 2 } });
    const ids = await sendBatch(c, topic, [{}, {}], { keys: ['k', 'k'] });

    await c.query('begin');
    expect((await claimLocked(c, group, consumer))[0]!.attempt).toBe(1);
    expect(await nackLocked(c, group, [ids[0]!], consumer, '0 seconds')).toEqual([{ msg_id: ids[0], status: 'retry' }]);
    await c.query('commit');
    expect((await inbox(c, group)).map((r) => [r.key_seq, r.state, r.attempts])).toEqual([
      [1, 2, 1], // the retry, delayed
      [2, 3, 0], // k2 waits behind it
    ]);

    await c.query('begin');
    const again = await claimLocked(c, group, consumer);
    expect(again.map((m) => [m.msg_id, m.attempt])).toEqual([[ids[0], 2]]);
    expect(await nackLocked(c, group, [ids[0]!])).toEqual([{ msg_id: ids[0], status: 'dead' }]);
    await c.query('commit');
    const { rows: dead } = await c.query('select msg_id::int, attempts, last_error from bucketq.dead_letter where msg_id = $1', [ids[0]]);
    expect(dead).toEqual([{ msg_id: ids[0], attempts: 2, last_error: 'boom' }]);
    await c.query('begin');
    expect(seqs(await claimLocked(c, group, consumer))).toEqual(['k2']);
    await c.query('rollback');
  });

  it('two locked batches, each holding a retry whose key the other reads further in the log: both ack and nack without waiting for each other (no deadlock), and the keys go on in order', async () => {
    const a = await session();
    const b = await session();
    const { topic, group, consumer } = await topicAndGroup(a, ctx, { buckets: 2 });
    // a key for each bucket
    const { rows: keyRows } = await a.query<{ k: string; b: number }>(
      `select distinct on (b) k, b from (select k, ((hashtextextended(k, 0) & 9223372036854775807) % 2)::int as b
                                           from unnest(array['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) k) x order by b, k`,
    );
    const [ka, kb] = [keyRows[0]!, keyRows[1]!];
    const claimIn = async (c: pg.Client, bucket: number, max: number) =>
      (
        await c.query(
          `select msg_id::int, key, key_seq::int, attempt from bucketq.claim_locked(group_name => $1, consumer_id => $2, max_messages => $3, buckets => $4::int[])`,
          [group, consumer, max, [bucket]],
        )
      ).rows as { msg_id: number; key: string; key_seq: number; attempt: number }[];

    for (const settle of ['ack', 'nack'] as const) {
      // The first message of each key fails once: both wait in the inbox as retries,
      // the next ones in the log.
      const first = await sendBatch(a, topic, [{}, {}], { keys: [ka.k, kb.k] });
      await a.query('begin');
      expect((await claimLocked(a, group, consumer, 10)).map((m) => m.msg_id).sort()).toEqual([...first].sort());
      await nackLocked(a, group, first, consumer, '0 seconds');
      await a.query('commit');
      const next = await sendBatch(a, topic, [{}, {}], { keys: [ka.k, kb.k] });

      // b holds kb's retry, a holds ka's; then each reads the other's bucket's log,
      // where the key's next message must wait behind the retry the other holds.
      await b.query('begin');
      expect((await claimIn(b, kb.b, 1)).map((m) => [m.msg_id, m.attempt])).toEqual([[first[1], 2]]);
      await a.query('begin');
      expect((await claimIn(a, ka.b, 1)).map((m) => [m.msg_id, m.attempt])).toEqual([[first[0], 2]]);
      expect(await claimIn(a, kb.b, 10)).toEqual([]);
      expect(await claimIn(b, ka.b, 10)).toEqual([]);

      // Each settles its retry while the other is still open. A lock that one took
      // on a row the other holds made the two wait for each other (40P01 for one).
      const t0 = Date.now();
      const settled = await Promise.allSettled(
        settle === 'ack'
          ? [ackLocked(a, group, [first[0]!], consumer), ackLocked(b, group, [first[1]!], consumer)]
          : [nackLocked(a, group, [first[0]!], consumer, '0 seconds'), nackLocked(b, group, [first[1]!], consumer, '0 seconds')],
      );
      expect(settled.map((s) => (s.status === 'rejected' ? String(s.reason) : s.status)), settle).toEqual(['fulfilled', 'fulfilled']);
      expect(Date.now() - t0, `${settle} waited`).toBeLessThan(900); // deadlock_timeout is 1 s
      await a.query('commit');
      await b.query('commit');

      // Each key goes on in order: its retry again if nacked, then its next message.
      const rest: number[] = [];
      for (let round = 0; round < 3; round++) {
        await a.query('begin');
        const got = await claimLocked(a, group, consumer, 10);
        if (got.length) await ackLocked(a, group, got.map((m) => m.msg_id), consumer);
        await a.query('commit');
        rest.push(...got.map((m) => m.msg_id));
      }
      const expected = settle === 'ack' ? [...next] : [...first, ...next];
      expect([...rest].sort((x, y) => x - y)).toEqual([...expected].sort((x, y) => x - y));
      for (const k of [0, 1]) {
        const ofKey = rest.filter((id) => id === first[k] || id === next[k]);
        expect(ofKey, `key ${k} in order`).toEqual(settle === 'ack' ? [next[k]] : [first[k], next[k]]);
      }
    }
  });

  it('a consumer whose bucket moved while it held the messages cannot ack them (BQ008); the new owner gets them', async () => {
    const a = await session();
    const b = await session();
    const { topic, group } = await topicAndGroup(a, ctx, { buckets: 1, group: { session_timeout: '10 seconds' } });
    const [id] = await sendBatch(a, topic, [{}], { keys: ['k'] });

    await a.query('begin');
    expect((await claimLocked(a, group, 'c1')).map((m) => m.msg_id)).toEqual([id]);
    // c1's session expires; c2 takes the bucket.
    await setClock(b, '30 seconds');
    await b.query('select * from bucketq.join($1, $2)', [group, 'c2']);
    await b.query('select * from bucketq.heartbeat($1, $2)', [group, 'c2']);
    await expectBqError(ackLocked(a, group, [id!]), 'BQ008', /no longer owns/);
    await a.query('rollback');

    await b.query('begin');
    expect((await claimLocked(b, group, 'c2')).map((m) => m.msg_id)).toEqual([id]);
    expect(await ackLocked(b, group, [id!], 'c2')).toEqual([{ msg_id: id, status: 'acked' }]);
    await b.query('commit');
  });

  it.each(['the log', 'the inbox'] as const)('record_attempt for a message from %s whose bucket moved while its transaction held it: fenced (BQ008), nothing recorded', async (from) => {
    const a = await session();
    const b = await session();
    const { topic, group } = await topicAndGroup(a, ctx, { buckets: 1, group: { session_timeout: '10 seconds' } });
    const [id] = await sendBatch(a, topic, [{}], { keys: ['k'] });
    if (from === 'the inbox') {
      // a retry: in the inbox, ready again at once
      const leased = await claim(a, group, 'c1');
      await nack(a, group, leased, { retryDelay: '0 seconds' });
    }
    await a.query('begin');
    const got = await claimLocked(a, group, 'c1');
    expect(got.map((m) => m.msg_id)).toEqual([id]);
    await setClock(b, '30 seconds');
    await b.query('select * from bucketq.join($1, $2)', [group, 'c2']);
    await b.query('select * from bucketq.heartbeat($1, $2)', [group, 'c2']);
    await expectBqError(
      b.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, 'c1', got[0]!.xact, [id]]),
      'BQ008', /c1 no longer owns the buckets of messages \{?\d+/);
    const { rows } = await b.query(
      `select (select count(*)::int from bucketq.attempt_log a join bucketq.consumer_group g using (group_id) where g.name = $1)
            + (select count(*)::int from bucketq.progress p join bucketq.consumer_group g using (group_id) where g.name = $1 and p.kind = 3) as n`,
      [group]);
    expect(rows[0].n).toBe(0);
    await a.query('rollback');
  });

  it("a retry and a replayed dead letter that another consumer's lease left behind: the locked claimer who owns the bucket now acks them, and the records name it", async () => {
    // The lease's consumer stays on an inbox row after its nack or dead letter. A locked
    // ack checked that consumer's ownership instead of its own, so no other consumer
    // could ack these rows: each try rolled back and counted an attempt, until the
    // message was dead-lettered (found by test/upgrade.test.ts).
    const a = await session();
    const b = await session();
    const { topic, group } = await topicAndGroup(a, ctx, {
      buckets: 1,
      group: { session_timeout: '10 seconds', on_exhausted: 'block' },
    });
    const [retry, dead, behind] = await sendBatch(a, topic, [{}, {}, {}], { keys: ['r', 'd', 'd'] });
    const leased = await claim(a, group, 'c1', 3); // (behind waits in the inbox)
    expect(leased.map((m) => m.msg_id)).toEqual([retry, dead]);
    expect((await nack(a, group, leased.filter((m) => m.msg_id === retry), { retryDelay: '0 seconds' })).map((r) => r.status)).toEqual(['retry']);
    const { rows: rejected } = await a.query(
      'select status from bucketq.reject(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[])',
      [group, [dead], leased.filter((m) => m.msg_id === dead).map((m) => m.lease_token)],
    );
    expect(rejected.map((r) => r.status)).toEqual(['dead']);
    expect(await a.query('select bucketq.replay_dead($1) as n', [group]).then((r) => r.rows[0].n)).toBe(1);

    // c1's session expires; c2 takes the bucket, and claims with row locks.
    await setClock(b, '30 seconds');
    await b.query('select * from bucketq.join($1, $2)', [group, 'c2']);
    await b.query('select * from bucketq.heartbeat($1, $2)', [group, 'c2']);
    const { rows: owner } = await b.query<{ owner: string; epoch: string }>(
      'select owner, epoch::text from bucketq.buckets where group_name = $1', [group]);
    expect(owner[0]!.owner).toBe('c2');

    await b.query('begin');
    const got = await claimLocked(b, group, 'c2', 10, 2);
    expect(got.map((m) => m.msg_id).sort((x, y) => x - y)).toEqual([retry, dead, behind]);
    expect(await ackLocked(b, group, got.map((m) => m.msg_id), 'c2')).toEqual(got.map((m) => ({ msg_id: m.msg_id, status: 'acked' })));
    await b.query('commit');
    const { rows: records } = await b.query(
      'select msg_id::int, consumer_id, epoch::text from bucketq.deliveries where group_name = $1 order by msg_id', [group]);
    expect(records).toEqual([retry, dead, behind].map((id) => ({ msg_id: id, consumer_id: 'c2', epoch: owner[0]!.epoch })));
  });

  it('replay_dead beside a locked batch of the same key that acks part of it: the replayed message goes first, the batch\'s rest waits behind it', async () => {
    // The batch's unacked rest goes to the inbox, ready unless its key has an earlier row
    // there. A replay committing beside that ack was not seen by it: the key then had two
    // ready rows, one claim handed out both, and the locked ack refused them as out of
    // order (found by test/sql-random-sessions.test.ts, skip policy). replay_dead now
    // waits for the batch's transaction (its cursor row).
    const w = await session();
    const r = await session();
    const observer = await session();
    const { topic, group } = await topicAndGroup(w, ctx, { buckets: 1, group: { on_exhausted: 'skip' } });
    const first = (await sendBatch(w, topic, [{}], { keys: ['k'] }))[0]!;
    const leased = await claim(w, group, 'c1', 1);
    const { rows: rejected } = await w.query(
      'select status from bucketq.reject(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[])',
      [group, [first], leased.map((m) => m.lease_token)],
    );
    expect(rejected.map((x) => x.status)).toEqual(['dead']);
    const [second, third] = (await sendBatch(w, topic, [{}, {}], { keys: ['k', 'k'] })) as [number, number];

    await w.query('begin');
    expect((await claimLocked(w, group, 'c1', 10, 2)).map((m) => m.msg_id)).toEqual([second, third]);
    await r.query('begin');
    let replayed = false;
    const replay = r.query('select bucketq.replay_dead($1) as n', [group]).finally(() => (replayed = true));
    // (It waits for the batch's transaction now; before, it ran at once, uncommitted.)
    await waitUntilBlocked(observer, pidOf(r), () => replayed);
    expect(await ackLocked(w, group, [second], 'c1')).toEqual([{ msg_id: second, status: 'acked' }]);
    await w.query('commit');
    expect((await replay).rows[0].n).toBe(1);
    await r.query('commit');

    const { rows: states } = await observer.query(
      'select msg_id::int, state from bucketq.message_states where group_name = $1 and msg_id = any($2::bigint[]) order by msg_id',
      [group, [first, third]],
    );
    expect(states).toEqual([{ msg_id: first, state: 'ready' }, { msg_id: third, state: 'waiting' }]);
    for (const next of [first, third]) {
      await w.query('begin');
      const got = await claimLocked(w, group, 'c1', 10, 1);
      expect(got.map((m) => m.msg_id)).toEqual([next]);
      expect(await ackLocked(w, group, [next], 'c1')).toEqual([{ msg_id: next, status: 'acked' }]);
      await w.query('commit');
    }
  });

  it('a producer sending the next message of a held key commits without waiting, and that message follows in order', async () => {
    const consumerSession = await session();
    const producer = await session();
    const { topic, group, consumer } = await topicAndGroup(consumerSession, ctx);
    const [first] = await sendBatch(producer, topic, [{}], { keys: ['k'] });

    await consumerSession.query('begin');
    expect((await claimLocked(consumerSession, group, consumer)).map((m) => m.msg_id)).toEqual([first]);
    await producer.query(`set statement_timeout = '3s'`);
    const [second] = await sendBatch(producer, topic, [{}], { keys: ['k'] }); // its commit check does not wait
    await producer.query('reset statement_timeout');
    await ackLocked(consumerSession, group, [first!]);
    await consumerSession.query('commit');

    await consumerSession.query('begin');
    expect((await claimLocked(consumerSession, group, consumer)).map((m) => [m.msg_id, m.key_seq])).toEqual([[second, 2]]);
    await consumerSession.query('rollback');
  });

  it('hands out expired leases and due retries of leased claims, counting the attempt once', async () => {
    const c = await session();
    const { topic, group, consumer } = await topicAndGroup(c, ctx);
    const ids = await sendBatch(c, topic, [{}, {}, {}], { keys: ['k', 'k', 'j'] });
    const leased = await claim(c, group, consumer, 100, { leaseTimeout: '1 second', maxPerKey: 2 });
    expect(leased.map((m) => m.msg_id)).toEqual(ids);
    await setClock(c, '5 seconds');
    await c.query('select * from bucketq.heartbeat($1, $2)', [group, consumer]);

    await c.query('begin');
    const got = await claimLocked(c, group, consumer, 100, 2);
    // Each head again on its second attempt and alone; k2 waits behind k1 again.
    expect(got.map((m) => [m.msg_id, m.attempt])).toEqual([
      [ids[0], 2],
      [ids[2], 2],
    ]);
    await ackLocked(c, group, [ids[0]!, ids[2]!]);
    await c.query('commit');
    const { rows } = await c.query('select msg_id::int, attempt from bucketq.deliveries where msg_id = any($1::bigint[]) order by msg_id', [ids]);
    expect(rows).toEqual([
      { msg_id: ids[0], attempt: 2 },
      { msg_id: ids[2], attempt: 2 },
    ]);
  });
});

describe('attempts of locked claims that end without committing', () => {
  it('record_attempt + a killed session: the next claim counts the attempt; after max_attempts crashes the message is dead-lettered and the key moves on', async () => {
    const observer = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { group: { max_attempts: 3 } });
    const [poison, next] = await sendBatch(observer, topic, [{ poison: true }, {}], { keys: ['k', 'k'] });

    for (const expected of [1, 2, 3]) {
      const worker = await session();
      await worker.query('begin');
      const got = await claimLocked(worker, group, consumer, 10, 10);
      // After a crash the head comes alone (no run), on its next attempt.
      expect(got.map((m) => [m.msg_id, m.attempt])).toEqual(expected === 1 ? [[poison, 1], [next, 1]] : [[poison, expected]]);
      await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, got[0]!.xact, [poison]]);
      await kill(observer, worker);
    }
    const worker = await session();
    await worker.query('begin');
    expect((await claimLocked(worker, group, consumer)).map((m) => [m.msg_id, m.attempt])).toEqual([[next, 1]]);
    await worker.query('commit');
    const { rows: dead } = await observer.query('select msg_id::int, attempts, last_error from bucketq.dead_letter where msg_id = $1', [poison]);
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ msg_id: poison, attempts: 3 });
    expect(dead[0]!.last_error).toMatch(/ended without committing in each of 3 attempts/);
    const { rows: log } = await observer.query('select count(*)::int as n from bucketq.attempt_log a join bucketq.consumer_group g using (group_id) where g.name = $1', [group]);
    expect(log).toEqual([{ n: 0 }]);
  });

  it('a locked batch whose transaction commits without settling, after its attempt was recorded: handed back alone, never the messages acked before it', async () => {
    const observer = await session();
    const w = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { buckets: 1 });
    const [m0] = await sendBatch(observer, topic, [{ n: 0 }], { keys: ['k'] });
    await w.query('begin');
    expect((await claimLocked(w, group, consumer)).map((m) => m.msg_id)).toEqual([m0]);
    await ackLocked(w, group, [m0!]);
    await w.query('commit');

    const [m1] = await sendBatch(observer, topic, [{ n: 1 }], { keys: ['k'] });
    await w.query('begin');
    const got = await claimLocked(w, group, consumer);
    expect(got.map((m) => m.msg_id)).toEqual([m1]);
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, got[0]!.xact, [m1]]);
    await w.query('commit'); // without ack or nack: handed back on purpose (a stop that ran out of time)

    await w.query('begin');
    const again = await claimLocked(w, group, consumer, 10, 10);
    await w.query('rollback');
    // m1 again, as it was (no attempt counted); m0 was acked and must not come back
    expect(again.map((m) => [m.msg_id, m.attempt])).toEqual([[m1, 1]]);
  });

  it('two locked batches in a row that end without committing, the second in a newer window: every message of both comes back', async () => {
    // The first batch reads the rest of the checkpoint's window, the second (after the
    // first's messages went back, in its own transaction, rolled back with it) the next
    // window. Recounted from the checkpoint, both batches' messages must come back: the
    // rest of the old window was passed over once (lost) when the last noted message
    // sat in the newer window.
    const observer = await session();
    const w = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { buckets: 1 });
    const [m0, m1, m2] = await sendBatch(observer, topic, [{ n: 0 }, { n: 1 }, { n: 2 }], { keys: ['a', 'b', 'c'] });
    await w.query('begin');
    expect((await claimLocked(w, group, consumer, 1)).map((m) => m.msg_id)).toEqual([m0]);
    await ackLocked(w, group, [m0!]);
    await w.query('commit'); // the checkpoint: m0 done, m1 and m2 ahead in its window

    await w.query('begin');
    const first = await claimLocked(w, group, consumer, 2);
    expect(first.map((m) => m.msg_id)).toEqual([m1, m2]);
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, first[0]!.xact, [m1, m2]]);
    await w.query('rollback');

    const [m3] = await sendBatch(observer, topic, [{ n: 3 }], { keys: ['d'] });
    await w.query('begin');
    const second = await claimLocked(w, group, consumer, 10);
    expect(second.map((m) => [m.msg_id, m.attempt])).toEqual([[m1, 2], [m2, 2], [m3, 1]]);
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, second[0]!.xact, [m1, m2, m3]]);
    await w.query('rollback');

    const delivered: [number, number][] = [];
    for (let i = 0; i < 5; i++) {
      await w.query('begin');
      const got = await claimLocked(w, group, consumer, 10);
      if (got.length > 0) await ackLocked(w, group, got.map((m) => m.msg_id));
      await w.query('commit');
      delivered.push(...got.map((m) => [m.msg_id, m.attempt] as [number, number]));
    }
    expect(delivered.sort((x, y) => x[0] - y[0])).toEqual([[m1, 3], [m2, 3], [m3, 2]]);
  });

  it('a locked batch that expired a lease batch and then rolled back: what the lease batch had passed is not read again', async () => {
    // The lease batch hands m1 and passes m2, delayed to the inbox (not_before). Its
    // lease expires; a locked claim hands it back (m1 to the inbox), takes m1 and m2
    // from there, records its attempt (m1 still counts as a log message: the hand-back
    // is not committed) and rolls back. Counted from the checkpoint before the lease
    // batch, m2 was read from the log again and delivered twice.
    const observer = await session();
    const w = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { buckets: 1, group: { lease_timeout: '1 second', session_timeout: '1 hour' } });
    const m1 = await send(observer, topic, { n: 1 }, { key: 'a' });
    const m2 = await send(observer, topic, { n: 2 }, { key: 'b', notBefore: new Date(Date.now() + 2000) });
    expect((await claim(observer, group, consumer, 10)).map((m) => m.msg_id)).toEqual([m1]);

    await setClock(w, '10 seconds'); // the lease has expired, m2 is due
    await w.query('begin');
    const locked = await claimLocked(w, group, consumer, 10);
    expect(locked.map((m) => m.msg_id).sort()).toEqual([m1, m2].sort());
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, locked[0]!.xact, [m1, m2]]);
    await w.query('rollback');

    const delivered: number[] = [];
    for (let i = 0; i < 4; i++) {
      const got = await claim(w, group, consumer, 10);
      if (got.length > 0) await ack(w, group, got);
      delivered.push(...got.map((m) => m.msg_id));
    }
    expect(delivered.sort()).toEqual([m1, m2].sort());
    const { rows: states } = await observer.query(
      `select msg_id::int, state from bucketq.message_states where group_name = $1 order by msg_id`, [group]);
    expect(states).toEqual([{ msg_id: m1, state: 'done' }, { msg_id: m2, state: 'done' }]);
  });

  // record_attempt checks that the claiming transaction holds the bucket, then writes
  // its note. If that transaction ends in between (a crash, a kill, a commit), others
  // claim and ack the bucket meanwhile, and a note written after their rows would be
  // the bucket's latest: read as the state, it handed the acked batch out again. The
  // note is held between the check and the write by a lock on a statement trigger of
  // attempt_log (record_attempt's insert there comes between the two).
  it.each(['commit', 'rollback'] as const)('an attempt whose transaction ends (%s) while record_attempt runs never brings back messages acked since', async (ending) => {
    const observer = await session();
    const a = await session();
    const b = await session();
    const recorder = await session();
    const holder = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { buckets: 1 });
    const [m1] = await sendBatch(observer, topic, [{ n: 1 }], { keys: ['k'] });
    await observer.query(`create or replace function public.hold_attempt_log() returns trigger language plpgsql as $$
                           begin perform pg_advisory_xact_lock_shared(4242); return null; end $$`);
    await observer.query(`create trigger hold_attempt_log before insert on bucketq.attempt_log
                           for each statement execute function public.hold_attempt_log()`);
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock(4242)');
      await a.query('begin');
      const got = await claimLocked(a, group, consumer);
      expect(got.map((m) => m.msg_id)).toEqual([m1]);
      const pid = (await recorder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const recording = recorder.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, got[0]!.xact, [m1]]);
      recording.catch(() => {});
      // Past its check, waiting to write.
      for (let i = 0; ; i++) {
        const { rows } = await observer.query(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid]);
        if (rows.length > 0) break;
        if (i > 500) throw new Error('record_attempt never reached its write');
        await new Promise((r) => setTimeout(r, 10));
      }
      await a.query(ending); // ended without settling: m1 is handed out again, once
      await b.query('begin');
      const again = await claimLocked(b, group, consumer);
      expect(again.map((m) => [m.msg_id, m.attempt])).toEqual([[m1, 1]]);
      await ackLocked(b, group, [m1!], consumer);
      await b.query('commit');
      await holder.query('commit');
      await recording;

      await b.query('begin');
      const after = await claimLocked(b, group, consumer, 10, 10);
      await b.query('rollback');
      expect(after.map((m) => m.msg_id), 'acked, must not come back').toEqual([]);
      const { rows: deliveries } = await observer.query('select count(*)::int as n from bucketq.deliveries where msg_id = $1', [m1]);
      expect(deliveries).toEqual([{ n: 1 }]);
    } finally {
      await holder.query('rollback').catch(() => {});
      await observer.query('drop trigger if exists hold_attempt_log on bucketq.attempt_log');
    }
  });

  // _release (leave, join, heartbeat giving buckets up) hands back the leased batches of
  // the buckets it releases. It found them with one query, then locked each bucket's
  // cursor row and expired the batch that query had shown. An ack of that batch that
  // committed in between made it an acked batch: expired, its messages went to the
  // inbox again and the checkpoint back before them. The first expire is held by a
  // lock on a statement trigger of the inbox, while the second bucket's batch is acked.
  it('a lease released while its batch is acked (leave) never brings the acked messages back', async () => {
    const observer = await session();
    const w1 = await session();
    const leaver = await session();
    const holder = await session();
    const { topic, group } = await topicAndGroup(observer, ctx, { buckets: 2, consumer: 'w1' });
    const sent = await sendBatch(observer, topic, [{ n: 1 }, { n: 2 }]);
    const got = await claim(w1, group, 'w1', 2);
    expect(got.map((m) => m.bucket).sort()).toEqual([0, 1]);
    const inB = got.find((m) => m.bucket === 1)!;
    await observer.query(`create or replace function public.hold_inbox() returns trigger language plpgsql as $$
                           begin perform pg_advisory_xact_lock_shared(4243); return null; end $$`);
    await observer.query(`create trigger hold_inbox before insert on bucketq.inbox for each statement execute function public.hold_inbox()`);
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock(4243)');
      const pid = (await leaver.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const leaving = leaver.query(`select bucketq.leave($1, 'w1')`, [group]);
      leaving.catch(() => {});
      // leave found both batches and is expiring bucket 0's, held at its inbox insert
      for (let i = 0; ; i++) {
        const { rows } = await observer.query(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid]);
        if (rows.length > 0) break;
        if (i > 500) throw new Error('leave never reached the inbox');
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await ack(w1, group, [inB])).toEqual([{ msg_id: inB.msg_id, status: 'acked' }]);
      await holder.query('commit');
      await leaving;
    } finally {
      await holder.query('rollback').catch(() => {});
      await observer.query('drop trigger if exists hold_inbox on bucketq.inbox');
    }
    await observer.query(`select * from bucketq.join($1, 'w2')`, [group]);
    const again = await claim(observer, group, 'w2', 10);
    expect(again.map((m) => m.msg_id), 'only the batch not acked comes back').toEqual(sent.filter((id) => id !== inB.msg_id));
    const { rows: deliveries } = await observer.query('select count(*)::int as n from bucketq.deliveries where msg_id = $1', [inB.msg_id]);
    expect(deliveries).toEqual([{ n: 1 }]);
  });

  it('a committed transaction counts nothing more; a message held by another transaction right now is counted later', async () => {
    const observer = await session();
    const a = await session();
    const b = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx);
    const [m1, m2] = await sendBatch(observer, topic, [{}, {}], { keys: ['x', 'y'] });

    // Committed: x acked, y nacked (counted by the nack itself).
    await a.query('begin');
    const got = await claimLocked(a, group, consumer);
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, got[0]!.xact, [m1, m2]]);
    await ackLocked(a, group, [m1!]);
    await nackLocked(a, group, [m2!], consumer, '0 seconds');
    await a.query('commit');
    await a.query('begin');
    expect((await claimLocked(a, group, consumer)).map((m) => [m.msg_id, m.attempt])).toEqual([[m2, 2]]);
    await a.query('rollback');

    // Aborted while the message is already held again elsewhere: counted once it is free.
    const [m3] = await sendBatch(observer, topic, [{}], { keys: ['z'] });
    await a.query('begin');
    const first = await claimLocked(a, group, consumer);
    const xact = first[0]!.xact;
    await observer.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, xact, first.map((m) => m.msg_id)]);
    await a.query('rollback');
    // m3 came from its bucket's log: another batch reading that bucket holds its cursor row.
    await b.query('begin');
    await b.query(
      `select 1 from bucketq.cursor k join bucketq.consumer_group g using (group_id)
        where g.name = $1 and k.bucket = (select bucket from bucketq.message where id = $2) for update of k`,
      [group, m3],
    );
    await observer.query('begin');
    const seen = await claimLocked(observer, group, consumer);
    expect(seen.map((m) => m.msg_id)).not.toContain(m3);
    await observer.query('commit');
    await b.query('rollback');
    await observer.query('begin');
    const later = await claimLocked(observer, group, consumer);
    expect(later.filter((m) => m.msg_id === m3).map((m) => m.attempt)).toEqual([2]);
    await observer.query('rollback');
  });

  it('rejects bad arguments with BQ005 and a hint', async () => {
    const c = await session();
    const { group, consumer } = await topicAndGroup(c, ctx);
    await expectBqError(c.query('select * from bucketq.claim_locked($1, $2, 0)', [group, consumer]), 'BQ005', /max_messages/);
    await expectBqError(c.query('select * from bucketq.claim_locked($1, $2, 10, max_per_key => 0)', [group, consumer]), 'BQ005', /max_per_key/);
    await expectBqError(c.query('select * from bucketq.claim_locked($1, $2, 10, buckets => array[99])', [group, consumer]), 'BQ005', /out of range/);
    await expectBqError(c.query('select * from bucketq.claim_locked($1, $2)', [group, 'stranger']), 'BQ008', /not a live member/);
    await expectBqError(c.query('select bucketq.record_attempt($1, $2, null, array[1]::bigint[])', [group, consumer]), 'BQ005', /must not be NULL/);
    await expectBqError(c.query('select * from bucketq.ack($1, array[null]::bigint[], null, $2)', [group, consumer]), 'BQ005', /without NULL/);
  });
});

describe('record_attempt racing delete_group', () => {
  it('waits for the deletion, then fails with BQ003 and leaves no progress row behind', async () => {
    const observer = await session();
    const worker = await session();
    const deleter = await session();
    const recorder = await session();
    const { topic, group, consumer } = await topicAndGroup(observer, ctx, { buckets: 1 });
    const { rows: ids } = await observer.query('select group_id from bucketq.consumer_group where name = $1', [group]);
    const groupId = ids[0]!.group_id as number;
    const [m] = await sendBatch(observer, topic, [{ n: 1 }], { keys: ['k'] });
    await worker.query('begin');
    const got = await claimLocked(worker, group, consumer);
    expect(got.map((x) => x.msg_id)).toEqual([m]);

    // delete_group holds the group's row and waits for the batch's cursor row.
    const deleting = deleter.query('select bucketq.delete_group($1, force => true)', [group]);
    await waitUntilBlocked(observer, pidOf(deleter));
    let recorded = false;
    const recording = pgError(
      recorder.query('select bucketq.record_attempt($1, $2, $3::xid8, $4::bigint[])', [group, consumer, got[0]!.xact, [m]]),
    ).finally(() => (recorded = true));
    // Behind the group's row lock (without it, the note was written at once).
    await waitUntilBlocked(observer, pidOf(recorder), () => recorded);
    await worker.query('rollback');
    await deleting;
    const err = await recording;
    expect(err.code).toBe('BQ003');
    expect(err.message).toMatch(/deleted while record_attempt ran/);
    const { rows } = await observer.query('select count(*)::int as n from bucketq.progress where group_id = $1', [groupId]);
    expect(rows).toEqual([{ n: 0 }]);
  });
});
