// How a worker copes with handlers that misbehave (issue 13): thrown values that are not
// Errors, handlers that hang, failures retried all at the same instant.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { jitteredRetryDelay } from '../src/worker/backoff.js';
import type { Consumer } from '../src/worker/consumer.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { sleep, waitFor } from './support/wait.js';

let db: FreshDatabase;
let bq: BucketQ;
let n = 0;
const unique = (prefix: string) => `${prefix}.${++n}`;
const quiet = pino({ level: 'silent' });
const running: Consumer[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
  await db.pool.query('create table effects (msg_id bigint, key text)');
});
afterAll(async () => {
  await Promise.all(running.map((c) => c.stop({ timeoutMs: 1000 })));
  await bq.close();
  await db.drop();
});

async function topicAndGroup(group: Record<string, unknown> = {}): Promise<{ topic: string; group: string }> {
  const topic = unique('t');
  const name = unique('g');
  await bq.createTopic(topic, { buckets: 1 });
  await bq.createGroup(name, topic, { startAt: 'earliest', ...group });
  return { topic, group: name };
}

async function pending(group: string): Promise<number> {
  const r = await db.pool.query<{ pending: string }>('select pending from bucketq.groups where group_name = $1', [group]);
  return Number(r.rows[0]?.pending);
}

async function deadLetters(group: string): Promise<{ key: string; attempts: number; last_error: string }[]> {
  const r = await db.pool.query('select key, attempts, last_error from bucketq.dead_letters where group_name = $1 order by key', [group]);
  return r.rows;
}

async function effects(keys: string[]): Promise<string[]> {
  const r = await db.pool.query<{ key: string }>('select key from effects where key = any($1) order by key', [keys]);
  return r.rows.map((x) => x.key);
}

describe('thrown values that are not Errors', () => {
  it.each(['lock', 'lease'] as const)(
    'a handler throwing Object.create(null) (%s claims) fails only its own message; the other three are acked once',
    async (claimMode) => {
      const { topic, group } = await topicAndGroup({ maxAttempts: 1 });
      const keys = ['a', 'b', 'c', 'd'].map((k) => `${k}.${claimMode}`);
      await bq.sendBatch(topic, keys.map((key) => ({ payload: {}, key })));
      const c = await bq.consume(
        {
          group,
          claimMode,
          batchSize: 4,
          handler: async (m, ctx) => {
            if (m.key === keys[1]) throw Object.create(null); // no toString, no valueOf: String() throws
            await ctx.client.query('insert into effects values ($1, $2)', [m.msgId, m.key]);
          },
        },
        quiet,
      );
      running.push(c);
      try {
        await waitFor('drain', async () => (await pending(group)) === 0, 10_000);
      } finally {
        await c.stop();
      }
      expect(await effects(keys)).toEqual([keys[0], keys[2], keys[3]]);
      const dead = await deadLetters(group);
      expect(dead.map((d) => d.key)).toEqual([keys[1]]);
      expect(dead[0]!.last_error).toMatch(/\S/);
    },
  );

  it("a handler throwing undefined ('message' transactions) is nacked: retried with backoff, dead-lettered when attempts run out", async () => {
    const { topic, group } = await topicAndGroup({ maxAttempts: 2, backoffBase: '10 milliseconds', backoffMax: '10 milliseconds' });
    await bq.sendBatch(topic, [{ payload: {}, key: 'u' }]);
    const attempts: number[] = [];
    const c = await bq.consume(
      {
        group,
        transaction: 'message',
        leaseTimeoutMs: 60_000, // without the nack, the retry would wait out this lease
        handler: async (_m, ctx) => {
          attempts.push(ctx.attempt);
          throw undefined;
        },
      },
      quiet,
    );
    running.push(c);
    try {
      await waitFor('the message to be dead-lettered', async () => (await deadLetters(group)).length === 1, 10_000);
    } finally {
      await c.stop();
    }
    expect(attempts).toEqual([1, 2]);
    const [dead] = await deadLetters(group);
    expect(dead).toMatchObject({ key: 'u', attempts: 2 });
    expect(dead!.last_error).toMatch(/undefined/);
    expect(c.stats.failed).toBe(2);
  });
});

describe('hung handlers', () => {
  const modes = [
    { transaction: 'batch', claimMode: 'lock' },
    { transaction: 'batch', claimMode: 'lease' },
    { transaction: 'message', claimMode: 'lease' },
  ] as const;

  it.each(modes)(
    'a handler past handlerTimeoutMs ($transaction transactions, $claimMode claims) is given up on: signal aborted, query cancelled, message nacked, its key flows on',
    async ({ transaction, claimMode }) => {
      const { topic, group } = await topicAndGroup({ maxAttempts: 1 });
      const k = (name: string) => `${name}.${transaction}.${claimMode}`;
      await bq.sendBatch(topic, [
        { payload: { mode: 'hang' }, key: k('h') }, // ignores its signal, never settles
        { payload: { mode: 'sql' }, key: k('s') }, // stuck in Postgres
        { payload: { mode: 'ok' }, key: k('h') }, // behind the hung one on its key
        { payload: { mode: 'ok' }, key: k('o') },
      ]);
      const aborted: string[] = [];
      const c = await bq.consume(
        {
          group,
          transaction,
          claimMode,
          batchSize: 10,
          handlerTimeoutMs: 300,
          handler: async (m, ctx) => {
            const { mode } = m.payload as { mode: string };
            ctx.signal.addEventListener('abort', () => aborted.push(mode));
            if (mode === 'hang') await new Promise(() => {});
            if (mode === 'sql') await ctx.client.query('select pg_sleep(30)');
            await ctx.client.query('insert into effects values ($1, $2)', [m.msgId, m.key]);
          },
        },
        quiet,
      );
      running.push(c);
      try {
        await waitFor('drain', async () => (await pending(group)) === 0, 15_000);
      } finally {
        await c.stop({ timeoutMs: 1000 });
      }
      expect(aborted.sort()).toEqual(['hang', 'sql']);
      const dead = await deadLetters(group);
      expect(dead.map((d) => d.key).sort()).toEqual([k('h'), k('s')].sort());
      for (const d of dead) expect(d.last_error).toMatch(/timed out after 300 ms \(handlerTimeoutMs\)/);
      expect((await effects([k('h'), k('o'), k('s')])).sort()).toEqual([k('h'), k('o')].sort());
      const sleeping = await db.pool.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'");
      expect(sleeping.rows[0].n, 'the timed-out query was cancelled').toBe(0);
    },
  );

  it.each(['batch', 'message'] as const)(
    'stop({ timeoutMs: 500 }) returns within about its timeout (%s transactions): running handlers are aborted, their messages handed back without using an attempt, the group left',
    async (transaction) => {
      const { topic, group } = await topicAndGroup();
      await bq.sendBatch(topic, [
        { payload: { mode: 'hang' }, key: 'a' },
        { payload: { mode: 'sql' }, key: 'b' },
      ]);
      const started: string[] = [];
      const aborted: string[] = [];
      const c = await bq.consume(
        {
          group,
          transaction,
          claimMode: 'lease',
          concurrency: 2,
          handler: async (m, ctx) => {
            const { mode } = m.payload as { mode: string };
            started.push(mode);
            ctx.signal.addEventListener('abort', () => aborted.push(mode));
            if (mode === 'hang') await new Promise(() => {});
            await ctx.client.query('select pg_sleep(30)');
          },
        },
        quiet,
      );
      running.push(c);
      await waitFor('a handler to start', () => started.length >= (transaction === 'message' ? 2 : 1), 10_000);
      const t0 = Date.now();
      await c.stop({ timeoutMs: 500 });
      const took = Date.now() - t0;
      expect(took, 'stop took').toBeLessThan(500 + 1500);
      expect(aborted.sort()).toEqual([...started].sort());
      const members = await db.pool.query('select consumer_id from bucketq.consumers where group_name = $1', [group]);
      expect(members.rows).toEqual([]);
      // A stop that runs out of time is not the message's fault (issue 12): no nack, no
      // attempt used, no backoff; leaving hands the leases back at once.
      const back = await db.pool.query<{ key: string; state: number; attempts: number; last_error: string | null }>(
        `select m.key, i.state::int, i.attempts, i.last_error from bucketq.inbox i join bucketq.consumer_group g using (group_id)
           join bucketq.message m on m.id = i.msg_id where g.name = $1 order by m.key`,
        [group],
      );
      expect(back.rows).toEqual(['a', 'b'].map((key) => ({ key, state: 0, attempts: 0, last_error: null })));
    },
  );

  it('a handler that first reads ctx.signal after it was given up on finds it aborted with the timeout (the signal is made on first read)', async () => {
    const { topic, group } = await topicAndGroup({ maxAttempts: 1 });
    await bq.send(topic, {}, { key: 'late-reader' });
    const seen: { aborted: boolean; reason: string; same: boolean }[] = [];
    const c = await bq.consume(
      {
        group,
        batchSize: 1,
        handlerTimeoutMs: 150,
        handler: async (_m, ctx) => {
          await new Promise((r) => setTimeout(r, 600)); // past the timeout, without touching the signal
          const signal = ctx.signal;
          seen.push({ aborted: signal.aborted, reason: String((signal.reason as Error)?.message), same: ctx.signal === signal });
        },
      },
      quiet,
    );
    running.push(c);
    try {
      await waitFor('the handler to look at its signal', () => seen.length === 1, 10_000);
      await waitFor('dead-lettered', async () => (await deadLetters(group)).length === 1, 10_000);
    } finally {
      await c.stop({ timeoutMs: 1000 });
    }
    expect(seen).toEqual([{ aborted: true, reason: expect.stringMatching(/timed out after 150 ms \(handlerTimeoutMs\)/), same: true }]);
  });

  it('rejects a bad handlerTimeoutMs with a message naming it and the fix', async () => {
    const { group } = await topicAndGroup();
    await expect(bq.consume({ group, handler: () => {}, handlerTimeoutMs: 0 }, quiet)).rejects.toThrow(/handlerTimeoutMs must be at least 1 ms/);
    await expect(bq.consume({ group, handler: () => {}, handlerTimeoutMs: 5000, leaseTimeoutMs: 1000 }, quiet)).rejects.toThrow(
      /handlerTimeoutMs \(5000\) is longer than leaseTimeoutMs \(1000\).*lower handlerTimeoutMs or raise leaseTimeoutMs/,
    );
  });
});

describe('retry backoff', () => {
  it('the jittered delay spans the upper half of the group backoff for the attempt, capped at backoffMax', () => {
    const settings = { backoffBaseMs: 1000, backoffMaxMs: 60_000 };
    expect(jitteredRetryDelay(settings, 1, () => 0)).toBe('500.000 milliseconds');
    expect(jitteredRetryDelay(settings, 1, () => 1)).toBe('1000.000 milliseconds');
    expect(jitteredRetryDelay(settings, 3, () => 0.5)).toBe('3000.000 milliseconds'); // 4 s backoff
    expect(jitteredRetryDelay(settings, 40, () => 1)).toBe('60000.000 milliseconds'); // capped
  });


  it.each(['lock', 'lease'] as const)(
    'failures of one batch (%s claims) are retried at scattered times within the group backoff, not all at once',
    async (claimMode) => {
      const { topic, group } = await topicAndGroup({ backoffBase: '10 seconds', backoffMax: '10 seconds' });
      await bq.sendBatch(topic, ['a', 'b', 'c', 'd', 'e'].map((key) => ({ payload: {}, key })));
      let failures = 0;
      const c = await bq.consume(
        {
          group,
          claimMode,
          batchSize: 5,
          handler: () => {
            failures++;
            throw new Error('fails');
          },
        },
        quiet,
      );
      running.push(c);
      try {
        await waitFor('five nacks', () => c.stats.failed === 5, 10_000);
      } finally {
        await c.stop();
      }
      expect(failures).toBe(5);
      const { rows } = await db.pool.query<{ delay_ms: number }>(
        `select extract(epoch from i.available_at - now()) * 1000 as delay_ms
           from bucketq.inbox i join bucketq.consumer_group g using (group_id)
          where g.name = $1 and i.last_error is not null`,
        [group],
      );
      const delays = rows.map((r) => Number(r.delay_ms));
      expect(delays).toHaveLength(5);
      expect(new Set(delays).size, `retry times ${delays.join(', ')}`).toBe(5);
      // Spread over the upper half of the backoff: never later than the group's backoff.
      for (const d of delays) expect(d).toBeLessThanOrEqual(10_000);
      for (const d of delays) expect(d).toBeGreaterThan(5_000 - 2_000); // minus the time since the nack
    },
  );
});

describe('retries left by a consumer that is gone', () => {
  it('a consumer that takes over the bucket under a new id delivers them with row locks, once each, without a dead letter or an error', async () => {
    // A nack under a lease leaves its consumer on the retry's row. A locked ack used to
    // check that consumer's ownership rather than its own claimer's: every batch holding
    // such a retry was refused and rolled back, its attempts counted, until the messages
    // were dead-lettered. A worker restarted under a new id (the default) with retries
    // pending and a backlog (claimMode 'auto' then locks) met exactly that.
    // (The backoff is long enough that the first consumer stops before a retry is due.)
    const { topic, group } = await topicAndGroup({ maxAttempts: 3, backoffBase: '1 second', backoffMax: '1 second' });
    const keys = ['a', 'b', 'c', 'd'].map((k) => `${k}.gone`);
    await bq.sendBatch(topic, keys.map((key) => ({ payload: {}, key })));
    const first = await bq.consume(
      { group, claimMode: 'lease', batchSize: 4, handler: () => Promise.reject(new Error('fails the first time')) },
      quiet,
    );
    running.push(first);
    try {
      await waitFor('four nacks', () => first.stats.failed === 4, 10_000);
    } finally {
      await first.stop(); // leaves the group
    }
    expect(first.stats.failed).toBe(4);

    const logged: { level: number; msg: string; err?: { message?: string } }[] = [];
    const second = await bq.consume(
      {
        group,
        claimMode: 'lock',
        batchSize: 4,
        handler: async (m, ctx) => {
          await ctx.client.query('insert into effects (msg_id, key) values ($1, $2)', [m.msgId, m.key]);
        },
      },
      pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) }),
    );
    running.push(second);
    try {
      await waitFor('the four retries', async () => (await effects(keys)).length >= 4, 10_000).catch(() => {});
    } finally {
      await second.stop();
    }
    expect(logged.map((l) => `${l.msg}: ${l.err?.message ?? ''}`)).toEqual([]);
    expect(await deadLetters(group)).toEqual([]);
    expect(await effects(keys)).toEqual(keys);
    const { rows } = await db.pool.query('select consumer_id, attempt from bucketq.deliveries where group_name = $1', [group]);
    expect(rows).toEqual(keys.map(() => ({ consumer_id: second.consumerId, attempt: 2 })));
  });
});

describe('lost membership', () => {
  it.each(['lock', 'lease'] as const)('a consumer removed from the group (%s claims) joins again at its next claim, not its next heartbeat', async (claimMode) => {
    const { topic, group } = await topicAndGroup();
    const seen: string[] = [];
    const c = await bq.consume(
      { group, claimMode, pollIntervalMs: 50, heartbeatIntervalMs: 3_600_000, handler: (m) => void seen.push(m.msgId) },
      quiet,
    );
    running.push(c);
    try {
      await db.pool.query('select bucketq.leave($1, $2)', [group, c.consumerId]); // an operator removes it
      const id = await bq.send(topic, {}, { key: 'after-leave' });
      await waitFor('the message sent after the removal', () => seen.includes(id), 10_000);
    } finally {
      await c.stop();
    }
  });
});

describe('a batch whose commit fails', () => {
  it.each(['lock', 'lease'] as const)(
    'a conflict at commit (%s claims) rolls the batch back and its messages come again at once, not at the next poll, each acked once',
    async (claimMode) => {
      const { topic, group } = await topicAndGroup();
      // The first commit of a batch that wrote an effect fails with a serialization
      // failure (a deferred trigger; the sequence is not rolled back with it).
      const table = `commit_conflict_${claimMode}`;
      await db.pool.query(`
        create sequence ${table}_fail;
        create table ${table} (msg_id bigint, attempt int);
        create function ${table}_once() returns trigger language plpgsql as $$
        begin
          if nextval('${table}_fail') = 1 then
            raise exception 'injected conflict at commit' using errcode = '40001';
          end if;
          return null;
        end $$;
        create constraint trigger conflict_at_commit after insert on ${table}
          deferrable initially deferred for each row execute function ${table}_once();`);
      const c = await bq.consume(
        {
          group,
          claimMode,
          batchSize: 10,
          pollIntervalMs: 60_000, // a wait for the poll would outlast the test's wait
          handler: async (m, ctx) => {
            await ctx.client.query(`insert into ${table} values ($1, $2)`, [m.msgId, m.attempt]);
          },
        },
        quiet,
      );
      running.push(c);
      let ids: string[];
      try {
        // Sent once the consumer is idle, so no other claim runs while the batch is in
        // flight (such a claim wakes the loop when the batch ends, whatever its outcome).
        await sleep(300);
        ids = await bq.sendBatch(topic, [1, 2, 3].map((n) => ({ payload: { n }, key: 'k' })));
        await waitFor('the rolled-back messages handled again', async () => (await pending(group)) === 0, 10_000);
      } finally {
        await c.stop();
      }
      const r = await db.pool.query<{ msg_id: string }>(`select msg_id from ${table} order by msg_id`);
      expect(r.rows.map((x) => x.msg_id)).toEqual(ids); // each once: the first commit's effects are gone
      const calls = await db.pool.query<{ n: string }>(`select last_value as n from ${table}_fail`);
      expect(Number(calls.rows[0]!.n)).toBeGreaterThan(1); // the injected failure did fire
    },
  );
});
