// The worker runtime in this process: exactly-once effects through the handler's
// transaction, fencing of a consumer that lost its buckets, retries and dead letters,
// savepoint isolation in batch mode, rebalancing between consumers, graceful stop.
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { consume, type Consumer } from '../src/worker/consumer.js';
import { WARM_UP_TAG } from '../src/worker/warm-up.js';
import type { Handler } from '../src/worker/options.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { findFreePort } from '../src/db/embedded.js';

let db: FreshDatabase;
let bq: BucketQ;
let n = 0;
const unique = (prefix: string) => `${prefix}.${++n}`;
const quiet = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
  await db.pool.query(
    'create table effects (id bigserial primary key, group_name text, msg_id bigint, key text, key_seq bigint, consumer text)',
  );
});
afterAll(async () => {
  await bq.close();
  await db.drop();
});

/** The SQL of a pg Client.query call (text, or a config object with text). */
const queryText = (args: unknown[]): string | undefined =>
  typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
/** A claim or claim_locked call, as the worker sends them. */
const isClaim = (text: string | undefined): boolean => !!text && /bucketq\.claim(_locked)?\s*\(/.test(text);

/** Writes one effect row through the ack's transaction. */
const recordEffect =
  (group: string): Handler =>
  async (m, ctx) => {
    await ctx.client.query('insert into effects (group_name, msg_id, key, key_seq, consumer) values ($1, $2, $3, $4, $5)', [
      group,
      m.msgId,
      m.key,
      m.keySeq,
      ctx.consumerId,
    ]);
  };

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function pending(group: string): Promise<number> {
  const r = await db.pool.query<{ pending: string }>('select pending from bucketq.groups where group_name = $1', [group]);
  return Number(r.rows[0]?.pending);
}

async function sendKeyed(topic: string, count: number, keys: number): Promise<void> {
  const messages = Array.from({ length: count }, (_, i) => ({ payload: { i }, key: `k${i % keys}` }));
  await bq.sendBatch(topic, messages);
}

/** Per key, effects in commit order must carry key_seq 1, 2, 3, ... */
async function assertExactlyOnceInOrder(group: string, expected: number): Promise<void> {
  const dup = await db.pool.query(
    'select msg_id, count(*) from effects where group_name = $1 group by msg_id having count(*) > 1',
    [group],
  );
  expect(dup.rows).toEqual([]);
  const total = await db.pool.query<{ n: string }>('select count(*) as n from effects where group_name = $1', [group]);
  expect(Number(total.rows[0]?.n)).toBe(expected);
  const disorder = await db.pool.query(
    `select key, key_seq, prev from (
       select key, key_seq, lag(key_seq) over (partition by key order by id) as prev
         from effects where group_name = $1 and key is not null) x
      where prev is not null and key_seq <> prev + 1`,
    [group],
  );
  expect(disorder.rows).toEqual([]);
}

describe('consume()', () => {
  const modes = [
    { transaction: 'batch', claimMode: 'auto' },
    { transaction: 'batch', claimMode: 'lock' },
    { transaction: 'batch', claimMode: 'lease' },
    { transaction: 'message', claimMode: 'lease' },
  ] as const;

  for (const { transaction, claimMode } of modes) {
    it(`processes every message exactly once in per-key order (${transaction} transactions, ${claimMode} claims)`, async () => {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 8 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      await sendKeyed(topic, 600, 30);
      const c = await bq.consume({ group, handler: recordEffect(group), transaction, claimMode, concurrency: 4, batchSize: 50 }, quiet);
      try {
        await sendKeyed(topic, 400, 30); // while it runs: woken by NOTIFY
        await waitFor('drain', async () => (await pending(group)) === 0);
      } finally {
        await c.stop();
      }
      await assertExactlyOnceInOrder(group, 1000);
      expect(c.stats.processed).toBe(1000);
    });
  }

  for (const { transaction, claimMode } of modes) {
    it(`one hot key in runs, some messages failing once (${transaction} transactions, ${claimMode} claims): each message handled only after the one before it succeeded`, async () => {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 4 });
      await bq.createGroup(group, topic, { startAt: 'earliest', backoffBase: '10 milliseconds', backoffMax: '10 milliseconds' });
      await bq.sendBatch(topic, Array.from({ length: 300 }, (_, i) => ({ payload: { i }, key: 'hot' })));
      const violations: string[] = [];
      let lastSucceeded = 0;
      let failures = 0;
      const handler: Handler = async (m, ctx) => {
        const seq = Number(m.keySeq);
        if (seq !== lastSucceeded + 1) violations.push(`${seq} started after ${lastSucceeded} succeeded`);
        if (seq % 7 === 3 && m.attempt === 1) {
          failures++;
          throw new Error(`fails once: ${seq}`);
        }
        await recordEffect(group)(m, ctx);
        lastSucceeded = seq;
      };
      const c = await bq.consume({ group, handler, transaction, claimMode, concurrency: 4, batchSize: 50 }, quiet);
      try {
        await waitFor('drain', async () => (await pending(group)) === 0);
      } finally {
        await c.stop();
      }
      expect(violations).toEqual([]);
      expect(failures).toBe(43);
      await assertExactlyOnceInOrder(group, 300);
    });
  }

  it('the handler\'s transaction (effects + ack) commits durably: the claim connection\'s synchronous_commit = off stays there', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 2 });
    await bq.createGroup(group, topic, { startAt: 'earliest' });
    await bq.sendBatch(topic, [{ payload: {}, key: 'a' }, { payload: {} }]);
    const seen: string[] = [];
    const c = await bq.consume(
      {
        group,
        handler: async (_m, ctx) => {
          const { rows } = await ctx.client.query<{ synchronous_commit: string }>('show synchronous_commit');
          seen.push(rows[0]!.synchronous_commit);
        },
      },
      quiet,
    );
    let claimSetting: string | undefined;
    try {
      await waitFor('drain', async () => (await pending(group)) === 0);
      // the claim connection itself (private: this checks the startup option took effect)
      const claimPool = (c as unknown as { claimPool: import('pg').Pool }).claimPool;
      claimSetting = (await claimPool.query<{ synchronous_commit: string }>('show synchronous_commit')).rows[0]?.synchronous_commit;
    } finally {
      await c.stop();
    }
    expect(claimSetting).toBe('off');
    expect(seen).toEqual(['on', 'on']); // the claim connection's setting must not leak into handlers
  });

  it('on connections whose default isolation is REPEATABLE READ, claims, handlers and acks still run in READ COMMITTED (claims refuse any other), each message once, in key order', async () => {
    const topic = unique('t');
    await bq.createTopic(topic, { buckets: 4 });
    for (const claimMode of ['lease', 'lock'] as const) {
      const group = unique('g');
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      const levels = new Set<string>();
      const effect = recordEffect(group);
      const pool = new pg.Pool({ connectionString: db.connectionString, options: '-c default_transaction_isolation=repeatable\\ read' });
      const c = await consume(
        { pool },
        {
          group,
          transaction: 'batch',
          claimMode,
          handler: async (m, ctx) => {
            levels.add((await ctx.client.query<{ l: string }>("select current_setting('transaction_isolation') as l")).rows[0]!.l);
            await effect(m, ctx);
          },
        },
        quiet,
      );
      try {
        if (claimMode === 'lease') await sendKeyed(topic, 200, 20);
        await waitFor(`drain (${claimMode})`, async () => (await pending(group)) === 0);
      } finally {
        await c.stop();
        await pool.end();
      }
      expect(levels).toEqual(new Set(['read committed']));
      await assertExactlyOnceInOrder(group, 200);
    }
  });

  it.each([
    ['', false],
    [' (with metrics: the lag count waits for the warm-ups, or it takes the warm connection the first batch needs)', true],
  ])('start warms the claim connection and a pool connection before the first claim, and one more per unit of concurrency before it is used (a claim and an ack that roll back)%s', async (_title, withMetrics) => {
    // That the warm-up rolls back (delivers nothing, counts no attempt) is what the
    // exactly-once tests above check: each starts on a backlog.
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest' });
    // Batches of 10: several would run at once while the other connections warm.
    await sendKeyed(topic, 400, 40);
    // Every connection of the consumer (its claim connection is made from the same settings)
    // keeps its statements, and every statement's start and end goes in one timeline.
    const sessions: string[][] = [];
    const timeline: { session: number; text: string; event: 'start' | 'end' }[] = [];
    class RecordingClient extends pg.Client {
      private readonly sent: string[] = [];
      private readonly session = sessions.length;
      constructor(config?: pg.ClientConfig) {
        super(config);
        sessions.push(this.sent);
      }
      override query(...args: unknown[]): never {
        const text = queryText(args) ?? '';
        this.sent.push(text);
        timeline.push({ session: this.session, text, event: 'start' });
        const result = (super.query as (...a: unknown[]) => unknown)(...args);
        if (result instanceof Promise) {
          void result.then(
            () => timeline.push({ session: this.session, text, event: 'end' }),
            () => timeline.push({ session: this.session, text, event: 'end' }),
          );
        }
        return result as never;
      }
    }
    const pool = new pg.Pool({ connectionString: db.connectionString, max: 6, Client: RecordingClient });
    const handled: { msgId: string; attempt: number }[] = [];
    const c = await consume(
      { pool },
      {
        group,
        handler: (m) => void handled.push({ msgId: m.msgId, attempt: m.attempt }),
        transaction: 'batch',
        claimMode: 'auto',
        concurrency: 3,
        batchSize: 10,
        metricsPort: withMetrics ? await findFreePort() : undefined,
      },
      quiet,
    );
    const isLagCount = (text: string) => text.includes('select pending from bucketq.groups');
    try {
      await waitFor('drain', async () => (await pending(group)) === 0);
      if (withMetrics) await waitFor('the lag count', async () => timeline.some((e) => isLagCount(e.text)));
    } finally {
      await c.stop();
      await pool.end();
    }
    const isWarmUp = (text: string) => text.startsWith(WARM_UP_TAG);
    if (withMetrics) {
      const lastWarmUpEnd = timeline.map((e) => e.event === 'end' && isWarmUp(e.text)).lastIndexOf(true);
      expect(timeline.findIndex((e) => isLagCount(e.text))).toBeGreaterThan(lastWarmUpEnd);
    }
    const warmed = sessions.filter((sent) => sent.some(isWarmUp));
    expect(warmed).toHaveLength(4); // 3 pool connections (concurrency 3) and the claim connection
    for (const sent of warmed) {
      // Each warm-up came before any claim the connection made, and ended in a rollback.
      const first = sent.findIndex(isClaim);
      expect(sent[first]!.startsWith(`${WARM_UP_TAG} begin isolation level read committed; `)).toBe(true);
      expect(sent[first]!.endsWith(`${WARM_UP_TAG} rollback`)).toBe(true);
    }
    // No batch ran on a cold connection: while the others warmed, the pool opened none
    // beside them for the first batches.
    expect(sessions.filter((sent) => sent.some(isClaim)).every((sent) => sent.some(isWarmUp))).toBe(true);
    // The first claim (not a warm-up) started once two warm-ups had ended: the claim
    // connection's and a pool connection's.
    const firstClaim = timeline.findIndex((e) => e.event === 'start' && isClaim(e.text) && !isWarmUp(e.text));
    expect(firstClaim).toBeGreaterThan(0);
    const warmUpsEnded = timeline.slice(0, firstClaim).filter((e) => e.event === 'end' && isWarmUp(e.text));
    expect(new Set(warmUpsEnded.map((e) => e.session)).size).toBeGreaterThanOrEqual(2);
    expect(handled).toHaveLength(400);
    expect(new Set(handled.map((h) => h.msgId)).size).toBe(400);
    expect(handled.filter((h) => h.attempt !== 1)).toEqual([]);
  });

  for (const claimMode of ['lease', 'lock'] as const) {
    it(`a send to a bucket whose batch is still in flight claims nothing until that batch ends, then at once (${claimMode})`, async () => {
      // One batch per bucket at a time: a claim in such a bucket would find nothing. The
      // wake-up waits for the batch's end instead (not for the poll: 10 s here).
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 1 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      const claims: string[] = [];
      let warmUpsEnded = 0;
      class RecordingClient extends pg.Client {
        override query(...args: unknown[]): never {
          const text = queryText(args) ?? '';
          if (isClaim(text) && !text.startsWith(WARM_UP_TAG)) claims.push(text);
          const result = (super.query as (...a: unknown[]) => unknown)(...args);
          if (text.startsWith(WARM_UP_TAG) && result instanceof Promise) void result.finally(() => warmUpsEnded++);
          return result as never;
        }
      }
      const pool = new pg.Pool({ connectionString: db.connectionString, max: 8, Client: RecordingClient });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const handled: string[] = [];
      let firstStarted = false;
      const c = await consume(
        { pool },
        {
          group,
          concurrency: 2, // a free slot: the loop could claim while the first batch runs
          transaction: 'batch',
          claimMode,
          pollIntervalMs: 10_000,
          handler: async (m) => {
            if ((m.payload as { n: number }).n === 1) {
              firstStarted = true;
              await gate;
            }
            handled.push(m.key!);
          },
        },
        quiet,
      );
      try {
        // The end of the last warm-up wakes the loop to claim everywhere (a claim may have
        // passed over the buckets it held): over before the sends.
        // (2 pool connections, and the claim connection unless claims only lock)
        await waitFor('the warm-ups', async () => warmUpsEnded === (claimMode === 'lock' ? 2 : 3));
        await sleep(200);
        await bq.send(topic, { n: 1 }, { key: 'a' });
        await waitFor('the first handler to start', async () => firstStarted);
        const before = claims.length;
        await bq.send(topic, { n: 2 }, { key: 'b' });
        await sleep(400); // its NOTIFY has come
        expect(claims.length - before).toBe(0);
        const released = Date.now();
        release();
        await waitFor('the second message', async () => handled.includes('b'), 5000);
        expect(Date.now() - released).toBeLessThan(2000);
        expect(handled).toEqual(['a', 'b']);
      } finally {
        release();
        await c.stop();
        await pool.end();
      }
    });
  }

  it('claims, acks and heartbeats run as named prepared statements, on every connection; preparedStatements: false sends them unnamed', async () => {
    for (const preparedStatements of [true, false]) {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 4 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      await sendKeyed(topic, 40, 8);
      const calls: { text: string; name: string | undefined }[] = [];
      class RecordingClient extends pg.Client {
        override query(...args: unknown[]): never {
          const name = typeof args[0] === 'object' ? (args[0] as { name?: string }).name : undefined;
          calls.push({ text: queryText(args) ?? '', name });
          return (super.query as (...a: unknown[]) => never)(...args);
        }
      }
      const pool = new pg.Pool({ connectionString: db.connectionString, max: 4, Client: RecordingClient });
      let handled = 0;
      // claimMode 'lease': its claims, acks and heartbeats are all prepared calls ('lock'
      // claims open their transaction in the same round trip, a multi-statement text).
      const c = await consume({ pool }, { group, handler: () => void handled++, claimMode: 'lease', concurrency: 2, heartbeatIntervalMs: 50, preparedStatements }, quiet);
      try {
        await waitFor('drain', async () => (await pending(group)) === 0);
        await waitFor('a heartbeat', async () => calls.some((q) => q.text.includes('bucketq.heartbeat(')));
      } finally {
        await c.stop();
        await pool.end();
      }
      expect(handled).toBe(40);
      const hot = calls.filter((q) => /bucketq\.(claim|ack|heartbeat)\(/.test(q.text) && !q.text.startsWith(WARM_UP_TAG));
      expect(new Set(hot.map((q) => q.text.match(/bucketq\.(\w+)\(/)![1]))).toEqual(new Set(['claim', 'ack', 'heartbeat']));
      if (preparedStatements) {
        expect(hot.filter((q) => !q.name?.startsWith('bucketq_'))).toEqual([]);
        // One name per text, the same on every connection.
        const names = new Map(hot.map((q) => [q.text, q.name]));
        expect(hot.every((q) => names.get(q.text) === q.name)).toBe(true);
      } else {
        expect(hot.filter((q) => q.name !== undefined)).toEqual([]);
      }
    }
  });

  it('two consumers split the buckets, rebalance when one leaves, and lose nothing', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 8 });
    await bq.createGroup(group, topic, { startAt: 'earliest', sessionTimeout: '2 seconds' });
    const a = await bq.consume({ group, handler: recordEffect(group), heartbeatIntervalMs: 100 }, quiet);
    const b = await bq.consume({ group, handler: recordEffect(group), heartbeatIntervalMs: 100 }, quiet);
    try {
      await waitFor('fair share', async () => a.ownedBuckets().size === 4 && b.ownedBuckets().size === 4);
      await sendKeyed(topic, 500, 40);
      await a.stop();
      await waitFor('b owns all buckets', async () => b.ownedBuckets().size === 8);
      await sendKeyed(topic, 500, 40);
      await waitFor('drain', async () => (await pending(group)) === 0);
    } finally {
      await a.stop();
      await b.stop();
    }
    await assertExactlyOnceInOrder(group, 1000);
  });

  it('a consumer that lost its buckets while its handler ran cannot commit its effects', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 2 });
    await bq.createGroup(group, topic, { startAt: 'earliest', sessionTimeout: '500 milliseconds' });
    const [victim] = await bq.sendBatch(topic, [{ payload: { slow: true }, key: 'slow' }]);
    let zombieStarted = false;
    // The zombie never heartbeats after joining and spends 1.5 s inside its transaction.
    const zombie = await bq.consume(
      {
        group,
        transaction: 'message',
        heartbeatIntervalMs: 3_600_000,
        handler: async (m, ctx) => {
          zombieStarted = true;
          await recordEffect(group)(m, ctx);
          await ctx.client.query('select pg_sleep(1.5)');
        },
      },
      quiet,
    );
    let rescuer: Consumer | undefined;
    try {
      await waitFor('zombie to start', async () => zombieStarted);
      rescuer = await bq.consume({ group, handler: recordEffect(group), heartbeatIntervalMs: 100 }, quiet);
      await waitFor('rescuer to deliver', async () => {
        const r = await db.pool.query('select 1 from bucketq.deliveries where msg_id = $1', [victim]);
        return r.rowCount === 1;
      });
      await waitFor('zombie ack refused', async () => zombie.stats.fenced >= 1, 10_000);
    } finally {
      await zombie.stop();
      await rescuer?.stop();
    }
    const effects = await db.pool.query<{ consumer: string }>('select consumer from effects where msg_id = $1', [victim]);
    expect(effects.rows).toEqual([{ consumer: rescuer?.consumerId }]);
    const deliveries = await db.pool.query<{ consumer_id: string }>('select consumer_id from bucketq.deliveries where msg_id = $1', [
      victim,
    ]);
    expect(deliveries.rows).toEqual([{ consumer_id: rescuer?.consumerId }]);
  });

  it('retries a failing message in order, dead-letters it after max attempts, and the key moves on', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest', maxAttempts: 3, backoffBase: '10 milliseconds', backoffMax: '50 milliseconds' });
    const ids = await bq.sendBatch(topic, [
      { payload: { poison: true }, key: 'k' },
      { payload: { n: 2 }, key: 'k' },
      { payload: { n: 3 }, key: 'k' },
    ]);
    const seen: string[] = [];
    const c = await bq.consume(
      {
        group,
        pollIntervalMs: 20,
        handler: async (m, ctx) => {
          seen.push(`${m.keySeq}@${m.attempt}`);
          await recordEffect(group)(m, ctx);
          if ((m.payload as { poison?: boolean }).poison) throw new Error('poison message');
        },
      },
      quiet,
    );
    try {
      await waitFor('drain', async () => (await pending(group)) === 0);
    } finally {
      await c.stop();
    }
    expect(seen).toEqual(['1@1', '1@2', '1@3', '2@1', '3@1']);
    const dead = await db.pool.query<{ msg_id: string; attempts: number; last_error: string }>(
      'select msg_id, attempts, last_error from bucketq.dead_letters where group_name = $1',
      [group],
    );
    expect(dead.rows).toHaveLength(1);
    expect(dead.rows[0]?.msg_id).toBe(ids[0]);
    expect(dead.rows[0]?.attempts).toBe(3);
    expect(dead.rows[0]?.last_error).toContain('poison message');
    // The failed attempts' effects were rolled back; only messages 2 and 3 left effects.
    const effects = await db.pool.query('select key_seq from effects where group_name = $1 order by id', [group]);
    expect(effects.rows.map((r: { key_seq: string }) => r.key_seq)).toEqual(['2', '3']);
    expect(c.stats.deadLettered).toBe(1);
  });

  it.each(['lease', 'lock'] as const)('in batch mode (%s claims) a failing message rolls back only its own effects, whether or not the others wrote anything', async (claimMode) => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 1 });
    await bq.createGroup(group, topic, { startAt: 'earliest', maxAttempts: 1 });
    // The transaction and savepoints open only when a handler first queries: mix
    // handlers that write with ones that do not, failing before and after writing.
    const mode = (i: number) => (i === 5 ? 'fail-without-writing' : i === 7 ? 'write-then-fail' : i % 3 === 0 ? 'no-write' : 'write');
    await bq.sendBatch(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ payload: { mode: mode(i) }, key: `k${i}` })),
    );
    const c = await bq.consume(
      {
        group,
        batchSize: 20,
        transaction: 'batch',
        claimMode,
        handler: async (m, ctx) => {
          const { mode } = m.payload as { mode: string };
          if (mode === 'fail-without-writing') throw new Error('fails before writing');
          if (mode === 'no-write') return;
          await recordEffect(group)(m, ctx);
          if (mode === 'write-then-fail') throw new Error('this one fails');
        },
      },
      quiet,
    );
    try {
      await waitFor('drain', async () => (await pending(group)) === 0);
    } finally {
      await c.stop();
    }
    const effects = await db.pool.query<{ key: string }>('select key from effects where group_name = $1', [group]);
    expect(effects.rows.map((r) => r.key).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => i)
        .filter((i) => mode(i) === 'write')
        .map((i) => `k${i}`)
        .sort(),
    );
    const deliveries = await db.pool.query<{ n: string }>(
      'select count(*) as n from bucketq.deliveries d join bucketq.consumer_group g using (group_id) where g.name = $1',
      [group],
    );
    expect(Number(deliveries.rows[0]?.n)).toBe(18);
    const dead = await db.pool.query('select key from bucketq.dead_letters where group_name = $1 order by key', [group]);
    expect(dead.rows).toEqual([{ key: 'k5' }, { key: 'k7' }]);
  });

  it('stop() lets in-flight work finish, leaves the group and leaves no leases behind', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest' });
    await sendKeyed(topic, 200, 200);
    let started = 0;
    let finished = 0;
    const c = await bq.consume(
      {
        group,
        transaction: 'message',
        concurrency: 5,
        handler: async (m, ctx) => {
          started++;
          await sleep(30);
          await recordEffect(group)(m, ctx);
          finished++;
        },
      },
      quiet,
    );
    await waitFor('some progress', async () => started >= 10);
    await c.stop({ timeoutMs: 10_000 });
    expect(finished).toBe(started); // nothing cut short
    const leases = await db.pool.query("select count(*)::int as n from bucketq.inbox i join bucketq.consumer_group g using (group_id) where g.name = $1 and i.state = 1", [group]);
    expect(leases.rows[0]).toEqual({ n: 0 });
    const members = await db.pool.query('select consumer_id from bucketq.consumers where group_name = $1', [group]);
    expect(members.rows).toEqual([]);
    const owned = await db.pool.query("select count(*)::int as n from bucketq.buckets where group_name = $1 and owner is not null", [group]);
    expect(owned.rows[0]).toEqual({ n: 0 });
    // What it processed is done exactly once; the rest waits for the next consumer.
    expect(await pending(group)).toBe(200 - finished);
    await assertExactlyOnceInOrder(group, finished);
  });

  it('stop() while its heartbeat waits behind a leave of the same id: the worker does not join again after it left', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest', sessionTimeout: '30 seconds' });
    const c = await bq.consume({ group, handler: async () => {}, heartbeatIntervalMs: 50 }, quiet);
    const waiting = async (fn: string) =>
      (
        await db.pool.query(
          `select count(*)::int as n from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and query like $1`,
          [`%bucketq.${fn}(%`],
        )
      ).rows[0].n > 0;
    const operator = await db.pool.connect();
    try {
      // An operator's leave of this consumer, not committed yet: the worker's next
      // heartbeat waits for the consumer row, then finds it gone (BQ008).
      await operator.query('begin');
      await operator.query('select bucketq.leave($1, $2)', [group, c.consumerId]);
      await waitFor('the heartbeat to wait', () => waiting('heartbeat'));
      const stopped = c.stop();
      // Before the fix, stop() left at once (its leave queued behind the heartbeat) and the
      // heartbeat, finding the consumer gone, joined again once the leave was done. Now
      // stop() waits for the heartbeat, which does not rejoin a stopping consumer.
      await waitFor('the worker to leave, or to wait for its heartbeat', () => waiting('leave'), 500).catch(() => {});
      await operator.query('commit');
      await stopped;
    } finally {
      operator.release();
      await c.stop();
    }
    await sleep(300); // room for a rejoin in flight to land
    const members = await db.pool.query('select consumer_id from bucketq.consumers where group_name = $1', [group]);
    expect(members.rows).toEqual([]);
    const owned = await db.pool.query('select count(*)::int as n from bucketq.buckets where group_name = $1 and owner is not null', [group]);
    expect(owned.rows[0]).toEqual({ n: 0 });
  });

  for (const { transaction, claimMode } of modes) {
    it(`an idle consumer claims when woken or polled, not in a loop (${transaction} transactions, ${claimMode} claims)`, async () => {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 4 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      // The consumer's connections (its claim connections are made from the same
      // settings) count the claims they send.
      let claims = 0;
      class CountingClient extends pg.Client {
        override query(...args: unknown[]): never {
          if (isClaim(queryText(args))) claims++;
          return (super.query as (...a: unknown[]) => never)(...args);
        }
      }
      const pool = new pg.Pool({ connectionString: db.connectionString, max: 4, Client: CountingClient });
      const counted = new BucketQ({ pool });
      const c = await counted.consume({ group, handler: async () => {}, transaction, claimMode, pollIntervalMs: 200 }, quiet);
      try {
        await sendKeyed(topic, 20, 5); // some work first: batches end, empty claims follow
        await waitFor('drain', async () => (await pending(group)) === 0);
        await sleep(300);
        const before = claims;
        await sleep(2000);
        const idle = claims - before;
        // Polls every 200 ms: about 10 claims. Before the fix, 'lock' made thousands.
        expect(idle).toBeGreaterThan(0); // the count does see this consumer's claims
        expect(idle).toBeLessThan(40);
      } finally {
        await c.stop();
        await pool.end();
      }
    });
  }

  for (const { transaction, claimMode } of modes) {
    it(`a single send wakes only its bucket's owner, and its claims look in that bucket alone (${transaction} transactions, ${claimMode} claims)`, async () => {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 4 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      // Each consumer's connections note its claims and the buckets they name (null: all).
      const claims: { consumer: string; buckets: number[] | null }[] = [];
      const counting = (consumer: string) =>
        class extends pg.Client {
          override query(...args: unknown[]): never {
            const text = queryText(args);
            if (isClaim(text)) {
              const values = (Array.isArray(args[1]) ? args[1] : (args[0] as { values?: unknown[] }).values) ?? [];
              const at = /buckets => \$(\d+)/.exec(text!)?.[1];
              claims.push({ consumer, buckets: at === undefined ? null : ((values[Number(at) - 1] as number[] | null) ?? null) });
            }
            return (super.query as (...a: unknown[]) => never)(...args);
          }
        };
      const pools = ['a', 'b'].map((name) => new pg.Pool({ connectionString: db.connectionString, max: 4, Client: counting(name) }));
      const handled: number[] = [];
      // No poll within the test: only wake-ups bring claims.
      const opts = { group, transaction, claimMode, pollIntervalMs: 60_000, handler: async () => void handled.push(Date.now()) };
      const a = await new BucketQ({ pool: pools[0]! }).consume(opts, quiet);
      const b = await new BucketQ({ pool: pools[1]! }).consume(opts, quiet);
      try {
        await waitFor('fair share', async () => a.ownedBuckets().size === 2 && b.ownedBuckets().size === 2);
        // A key in one of a's buckets.
        const { rows } = await db.pool.query<{ key: string; bucket: number }>(
          `select 'w' || i as key, ((hashtextextended('w' || i, 0) & 9223372036854775807) % 4)::int as bucket
             from generate_series(1, 100) i`,
        );
        const target = rows.find((r) => a.ownedBuckets().has(r.bucket))!;
        await sleep(300); // the claims that follow joining are done
        const from = claims.length;
        const started = Date.now();
        for (let i = 0; i < 5; i++) {
          await bq.send(topic, { i }, { key: target.key });
          await waitFor(`message ${i + 1} handled`, async () => handled.length === i + 1, 10_000);
        }
        expect(Date.now() - started).toBeLessThan(10_000); // woken, not polled (60 s)
        const during = claims.slice(from);
        expect(during.filter((c) => c.consumer === 'b')).toEqual([]);
        expect(during.length).toBeGreaterThanOrEqual(5);
        expect(during.filter((c) => c.consumer === 'a' && JSON.stringify(c.buckets) === `[${target.bucket}]`)).toHaveLength(during.length);
        // A send to several buckets wakes both, to claim everywhere.
        const keys = rows.map((r) => r.key);
        const before = claims.length;
        await bq.sendBatch(topic, keys.map((key) => ({ payload: { key }, key })));
        await waitFor('the batch handled', async () => handled.length === 5 + keys.length, 10_000);
        const spread = claims.slice(before);
        expect(spread.some((c) => c.consumer === 'a' && c.buckets === null)).toBe(true);
        expect(spread.some((c) => c.consumer === 'b' && c.buckets === null)).toBe(true);
      } finally {
        await a.stop();
        await b.stop();
        await Promise.all(pools.map((p) => p.end()));
      }
    });
  }

  for (const claimMode of ['lease', 'lock'] as const) {
    it(`a claim rolled back by a deadlock is tried again at once, not after the poll interval (${claimMode} claims)`, async () => {
      const topic = unique('t');
      const group = unique('g');
      await bq.createTopic(topic, { buckets: 4 });
      await bq.createGroup(group, topic, { startAt: 'earliest' });
      await bq.send(topic, { k: 'a', s: 1 }, { key: 'a' });
      // The consumer's first claim fails as Postgres fails a deadlock victim (40P01).
      let failedAt: number | undefined;
      class DeadlockOnce extends pg.Client {
        override query(...args: unknown[]): never {
          const text = queryText(args);
          if (failedAt === undefined && isClaim(text)) {
            failedAt = Date.now();
            const err = Object.assign(new pg.DatabaseError('deadlock detected', 0, 'error'), { code: '40P01', severity: 'ERROR' });
            const callback = args.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
            // (pool.query passes a callback; a locked claim's round trip opens its transaction first)
            const opened: Promise<unknown> = /^\s*begin/i.test(text!) ? (super.query as (q: string) => Promise<unknown>)('begin') : Promise.resolve();
            const failed = opened.then(() => Promise.reject(err));
            if (callback) {
              failed.catch((e: Error) => callback(e));
              return undefined as never;
            }
            return failed as never;
          }
          return (super.query as (...a: unknown[]) => never)(...args);
        }
      }
      const pool = new pg.Pool({ connectionString: db.connectionString, max: 4, Client: DeadlockOnce });
      const counted = new BucketQ({ pool });
      let handledAt: number | undefined;
      const c = await counted.consume(
        // concurrency 1: in 'lock' mode the failed claim holds the one slot while it waits
        { group, handler: async () => void (handledAt = Date.now()), claimMode, concurrency: 1, pollIntervalMs: 5000 },
        quiet,
      );
      try {
        await waitFor('handled', async () => handledAt !== undefined, 10_000);
      } finally {
        await c.stop();
        await pool.end();
      }
      expect(failedAt).toBeDefined();
      // At once: a few ms. Before, the loop slept min(pollIntervalMs, 1 s) after any failed claim.
      expect(handledAt! - failedAt!).toBeLessThan(600);
    });
  }

  it('a start that fails (an unknown group) leaves no LISTEN connection behind: it opens beside the group\'s settings', async () => {
    const admin = new pg.Client({ connectionString: db.connectionString });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ t: Date }>('select clock_timestamp() as t');
      for (let i = 0; i < 3; i++) {
        await expect(bq.consume({ group: 'no.such.group', handler: async () => {} }, quiet)).rejects.toThrow(/unknown consumer group/);
      }
      // pg-listen's session runs LISTEN; one left open would keep it (and reconnect it).
      const listening = async () =>
        Number(
          (
            await admin.query<{ n: string }>(
              `select count(*) as n from pg_stat_activity
                where datname = current_database() and backend_start >= $1 and query ilike 'listen%'`,
              [rows[0]!.t],
            )
          ).rows[0]!.n,
        );
      await waitFor('the LISTEN sessions to end', async () => (await listening()) === 0, 5000);
      await new Promise((r) => setTimeout(r, 300));
      expect(await listening()).toBe(0);
    } finally {
      await admin.end();
    }
  });

  it('a start that fails after joining (the claim connection refused) leaves the group at once: its buckets are not held until the session times out', async () => {
    const topic = unique('startfail');
    const group = unique('startfail.g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest', sessionTimeout: '1 hour' });
    // A role allowed one connection: the pool's (settings, join) opens; the claim
    // connection, which 'lock' mode needs before the first claim, is refused.
    const user = `bqtest_onecon_${process.pid}`;
    await db.pool.query(`create role ${user} login password 'pw' connection limit 1 in role bucketq_consumer`);
    try {
      const url = new URL(db.connectionString);
      url.username = user;
      url.password = 'pw';
      await expect(
        consume({ connectionString: url.toString() }, { group, handler: async () => {}, claimMode: 'lock', listen: false }, quiet),
      ).rejects.toThrow(/too many connections for role/);
      const { rows } = await db.pool.query<{ consumers: string; owned: string }>(
        `select (select count(*) from bucketq.consumers where group_name = $1) as consumers,
                (select count(*) from bucketq.buckets where group_name = $1 and owned) as owned`,
        [group],
      );
      expect(rows[0]).toEqual({ consumers: '0', owned: '0' });
    } finally {
      await waitFor('the role\'s connection to close', async () =>
        (await db.pool.query(`select count(*)::int as n from pg_stat_activity where usename = $1`, [user])).rows[0].n === 0, 5000);
      await db.pool.query(`drop role ${user}`);
    }
  });

  it('rejects bad options with a message naming the option', async () => {
    await expect(bq.consume({ group: 'g', handler: async () => {}, concurrency: 0 }, quiet)).rejects.toThrow(/concurrency/);
    await expect(
      bq.consume({ group: 'g', handler: async () => {}, transaction: 'sometimes' as 'batch' }, quiet),
    ).rejects.toThrow(/transaction must be 'batch' or 'message'/);
    await expect(bq.consume({ group: 'no.such.group', handler: async () => {} }, quiet)).rejects.toThrow(/unknown consumer group/);
    await expect(
      bq.consume({ group: 'g', handler: async () => {}, claimMode: 'grab' as 'lock' }, quiet),
    ).rejects.toThrow(/claimMode must be 'auto', 'lock' or 'lease'/);
    await expect(
      bq.consume({ group: 'g', handler: async () => {}, preparedStatements: 'no' as unknown as boolean }, quiet),
    ).rejects.toThrow(/preparedStatements must be true or false/);
    await expect(
      bq.consume({ group: 'g', handler: async () => {}, transaction: 'message', claimMode: 'lock' }, quiet),
    ).rejects.toThrow(/claimMode 'lock' needs transaction 'batch'.*use claimMode 'lease' with transaction 'message'/);
  });
});
