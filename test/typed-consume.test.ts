// Typed consumers (issue 12): bq.topic(name, schema).consume() hands the handler the
// schema's output type and checks every payload on receive (an invalid one never reaches
// the handler and is dead-lettered with the validation issues); bq.consume<P>() types
// hand-checked payloads. The type assertions are checked by `tsc --noEmit` (npm test).
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { BucketQ } from '../src/client.js';
import { ConfigError } from '../src/errors.js';
import type { Consumer } from '../src/worker/consumer.js';
import { useDatabase } from './helpers/sql.js';
import { waitFor } from './support/wait.js';

const ctx = useDatabase();
const quiet = pino({ level: 'silent' });
let bq: BucketQ;
const consumers: Consumer[] = [];

beforeAll(() => {
  bq = new BucketQ({ connectionString: ctx.db.connectionString, poolMax: 4 });
});
afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await bq?.close();
});

const Order = z.object({ amount: z.number().int().positive(), note: z.string().default('none') });

describe('bq.topic(name, schema).consume()', () => {
  it('gives the handler parsed payloads; an invalid payload is dead-lettered at once with its issues and never reaches the handler', async () => {
    await bq.createTopic('tc.orders', { buckets: 2 });
    // Attempts to spare, and a backoff long enough that a retry would not finish the test:
    // the invalid payload must not use them.
    await bq.createGroup('tc.billing', 'tc.orders', { startAt: 'earliest', maxAttempts: 5, backoffBase: '1 hour', backoffMax: '1 hour' });
    const orders = bq.topic('tc.orders', Order);
    const okId = await orders.send({ amount: 5 }, { key: 'c-1' });
    // Sent from SQL, past the producer's check: the consumer must catch it.
    const bad = await ctx.db.pool.query<{ id: string }>(`select bucketq.send('tc.orders', '{"amount": "five"}'::jsonb, key => 'c-2')::text as id`);
    const badId = bad.rows[0]!.id;
    const okAfter = await ctx.db.pool.query<{ id: string }>(`select bucketq.send('tc.orders', '{"amount": 7}'::jsonb, key => 'c-2')::text as id`);

    const seen: { id: string; payload: { amount: number; note: string } }[] = [];
    const consumer = await orders.consume(
      {
        group: 'tc.billing',
        pollIntervalMs: 100,
        handler: async (message, hctx) => {
          expectTypeOf(message.payload).toEqualTypeOf<{ amount: number; note: string }>();
          // @ts-expect-error: not in the schema
          void message.payload.customer;
          await hctx.client.query('select 1');
          seen.push({ id: message.msgId, payload: message.payload });
        },
      },
      quiet,
    );
    consumers.push(consumer);
    await waitFor('both groups of work done', async () => {
      const { rows } = await ctx.db.pool.query<{ pending: string }>(`select pending from bucketq.groups where group_name = 'tc.billing'`);
      return rows[0]!.pending === '0';
    });
    // The schema's output reached the handler (the default filled in on receive: the row holds no note).
    expect(seen).toEqual([
      { id: okId, payload: { amount: 5, note: 'none' } },
      { id: okAfter.rows[0]!.id, payload: { amount: 7, note: 'none' } },
    ]);
    const dead = await ctx.db.pool.query<{ msg_id: string; attempts: number; last_error: string }>(
      `select msg_id::text, attempts, last_error from bucketq.dead_letters where group_name = 'tc.billing'`,
    );
    expect(dead.rows).toHaveLength(1);
    expect(dead.rows[0]).toMatchObject({ msg_id: badId, attempts: 1 });
    expect(dead.rows[0]!.last_error).toMatch(new RegExp(`^PayloadValidationError: invalid payload received on topic 'tc\\.orders':\\n  - message ${badId}: payload: amount: `));
    expect(dead.rows[0]!.last_error).not.toMatch(/\n\s+at /); // the issues, not a stack trace
  }, 60_000);

  it.each([
    ['lock', 'batch'],
    ['lease', 'batch'],
    ['lease', 'message'],
  ] as const)('claimMode %s, transaction %s: invalid payloads are dead at once, the valid ones of the batch are handled', async (claimMode, transaction) => {
    const topic = `tc.modes.${claimMode}.${transaction}`;
    const group = `${topic}.g`;
    await bq.createTopic(topic, { buckets: 1 });
    await bq.createGroup(group, topic, { startAt: 'earliest', maxAttempts: 5, backoffBase: '1 hour', backoffMax: '1 hour' });
    const payloads = [{ amount: 1 }, { amount: 'x' }, { amount: 2 }, { amount: -1 }, { amount: 3 }];
    await ctx.db.pool.query(`select bucketq.send_batch($1, $2::jsonb[], array['a','b','a','c','d'])`, [topic, payloads.map((p) => JSON.stringify(p))]);
    const seen: number[] = [];
    const consumer = await bq.topic(topic, Order).consume(
      { group, claimMode, transaction, batchSize: 10, pollIntervalMs: 50, handler: (m) => void seen.push(m.payload.amount) },
      quiet,
    );
    consumers.push(consumer);
    await waitFor('every message handled or dead', async () => {
      const { rows } = await ctx.db.pool.query<{ pending: string }>(`select pending from bucketq.groups where group_name = $1`, [group]);
      return rows[0]!.pending === '0';
    });
    await consumer.stop();
    expect(seen.sort()).toEqual([1, 2, 3]);
    const dead = await ctx.db.pool.query<{ attempts: number }>(`select attempts from bucketq.dead_letters where group_name = $1`, [group]);
    expect(dead.rows).toEqual([{ attempts: 1 }, { attempts: 1 }]);
    expect(consumer.stats.deadLettered).toBe(2);
  }, 60_000);

  it("refuses a group of another topic, naming the group's topic", async () => {
    await bq.createTopic('tc.other', { buckets: 1 });
    await bq.createGroup('tc.other.g', 'tc.other');
    await expect(bq.topic('tc.orders', Order).consume({ group: 'tc.other.g', handler: () => {} }, quiet)).rejects.toThrow(ConfigError);
    await expect(bq.topic('tc.orders', Order).consume({ group: 'tc.other.g', handler: () => {} }, quiet)).rejects.toThrow(
      /group 'tc\.other\.g' reads topic 'tc\.other', not 'tc\.orders'/,
    );
  });
});

describe('bq.consume<P>()', () => {
  it('types the payload as P (the caller vouches for it); without P it is unknown', async () => {
    interface Invoice {
      invoice: number;
    }
    await bq.createTopic('tc.invoices', { buckets: 1 });
    await bq.createGroup('tc.inv', 'tc.invoices', { startAt: 'earliest' });
    await bq.send('tc.invoices', { invoice: 12 });
    const got: number[] = [];
    const consumer = await bq.consume<Invoice>(
      {
        group: 'tc.inv',
        pollIntervalMs: 100,
        handler: (message) => {
          expectTypeOf(message.payload).toEqualTypeOf<Invoice>();
          got.push(message.payload.invoice);
        },
      },
      quiet,
    );
    consumers.push(consumer);
    await waitFor('invoice handled', () => got.length === 1);
    expect(got).toEqual([12]);

    // Untyped: payload is unknown until checked.
    type Untyped = Parameters<Parameters<typeof bq.consume>[0]['handler']>[0]['payload'];
    expectTypeOf<Untyped>().toEqualTypeOf<unknown>();
  });
});
