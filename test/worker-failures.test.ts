// How a worker copes with handlers that misbehave (issue 13): thrown values that are not
// Errors, handlers that hang, failures retried all at the same instant.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import type { Consumer } from '../src/worker/consumer.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

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
