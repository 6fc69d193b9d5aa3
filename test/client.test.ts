// The BucketQ client against the real SQL: argument passing, result mapping, typed errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { z } from 'zod';
import { BucketQ } from '../src/client.js';
import { preparedStatementsOffByEnv } from '../src/db/prepared.js';
import {
  ConfigError,
  ConflictError,
  FencedError,
  InvalidArgumentError,
  InvalidNameError,
  PayloadValidationError,
  StaleLeaseError,
  UnknownGroupError,
  UnknownTopicError,
} from '../src/errors.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

let db: FreshDatabase;
let bq: BucketQ;
let n = 0;
/** Unique names per test: tests share one database. */
const unique = (prefix: string) => `${prefix}.${++n}`;

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
});
afterAll(async () => {
  await bq.close(); // a caller's pool: must stay open until we end it
  await db.drop();
});

async function topicWithGroup(opts: { buckets?: number } = {}): Promise<{ topic: string; group: string }> {
  const topic = unique('t');
  const group = unique('g');
  await bq.createTopic(topic, opts);
  await bq.createGroup(group, topic, { startAt: 'earliest' });
  await bq.join(group, 'c1');
  return { topic, group };
}

describe('topics and groups', () => {
  it('createTopic is idempotent and rejects different settings with ConflictError', async () => {
    const topic = unique('t');
    expect(await bq.createTopic(topic, { buckets: 4, retention: 7 * 86_400 })).toBe(true);
    expect(await bq.createTopic(topic, { buckets: 4, retention: '7 days' })).toBe(false);
    const err = await bq.createTopic(topic, { buckets: 8 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as ConflictError).hint).toBeTruthy();
  });

  it('maps invalid names and unknown topics to typed errors', async () => {
    await expect(bq.createTopic('bad name!')).rejects.toBeInstanceOf(InvalidNameError);
    await expect(bq.createGroup(unique('g'), 'no.such.topic')).rejects.toBeInstanceOf(UnknownTopicError);
    await expect(bq.send('no.such.topic', {})).rejects.toBeInstanceOf(UnknownTopicError);
    await expect(bq.claim('no.such.group', 'c1')).rejects.toBeInstanceOf(UnknownGroupError);
  });

  it('accepts a Date as startAt', async () => {
    const topic = unique('t');
    await bq.createTopic(topic);
    expect(await bq.createGroup(unique('g'), topic, { startAt: new Date(Date.now() - 60_000) })).toBe(true);
  });
});

describe('lobby', () => {
  it('join takes every bucket for a lone consumer; claim requires membership; leave releases', async () => {
    const topic = unique('t');
    const group = unique('g');
    await bq.createTopic(topic, { buckets: 4 });
    await bq.createGroup(group, topic, { startAt: 'earliest', sessionTimeout: 30 });
    await expect(bq.claim(group, 'stranger')).rejects.toBeInstanceOf(FencedError);
    const owned = await bq.join(group, 'c1', { meta: { host: 'test' } });
    expect(owned.map((b) => b.bucket)).toEqual([0, 1, 2, 3]);
    for (const b of owned) expect(b.epoch).toMatch(/^\d+$/);
    expect((await bq.heartbeat(group, 'c1')).map((b) => b.bucket)).toEqual([0, 1, 2, 3]);
    expect(await bq.leave(group, 'c1')).toBe(4);
  });
});

describe('send and consume', () => {
  it('round-trips payload, key, headers; ids are strings in input order', async () => {
    const { topic, group } = await topicWithGroup();
    const ids = await bq.sendBatch(topic, [
      { payload: { n: 1 }, key: 'k', headers: { h: 'x' } },
      { payload: 'plain string', key: 'k' },
      { payload: [1, 2, 3] },
    ]);
    expect(ids).toHaveLength(3);
    for (const id of ids) expect(id).toMatch(/^\d+$/);
    expect(BigInt(ids[0]!)).toBeLessThan(BigInt(ids[1]!));

    const first = await bq.claim(group, 'c1');
    // The second keyed message waits for the first to be acked.
    expect(first.map((m) => m.msgId).sort()).toEqual([ids[0], ids[2]].sort());
    const keyed = first.find((m) => m.msgId === ids[0])!;
    expect(keyed).toMatchObject({ key: 'k', keySeq: '1', payload: { n: 1 }, headers: { h: 'x' }, attempt: 1 });
    expect(keyed.epoch).toMatch(/^\d+$/);
    expect(keyed.sentAt).toBeInstanceOf(Date);
    expect(keyed.leasedUntil.getTime()).toBeGreaterThan(Date.now());
    expect(first.find((m) => m.msgId === ids[2])).toMatchObject({ key: null, keySeq: null, payload: [1, 2, 3] });

    expect(await bq.ack(group, first)).toEqual(first.map((m) => ({ msgId: m.msgId, status: 'acked' })));
    const second = await bq.claim(group, 'c1');
    expect(second).toHaveLength(1);
    expect(second[0]).toMatchObject({ msgId: ids[1], keySeq: '2', payload: 'plain string' });
  });

  it('send inside a caller transaction is invisible until commit (transactional outbox)', async () => {
    const { topic, group } = await topicWithGroup();
    const client = await db.pool.connect();
    try {
      await client.query('begin');
      await bq.send(topic, { order: 1 }, { client });
      await client.query('rollback');
      expect(await bq.claim(group, 'c1')).toEqual([]);

      await client.query('begin');
      const id = await bq.send(topic, { order: 2 }, { client });
      expect(await bq.claim(group, 'c1')).toEqual([]); // not committed yet
      await client.query('commit');
      expect((await bq.claim(group, 'c1')).map((m) => m.msgId)).toEqual([id]);
    } finally {
      client.release();
    }
  });

  it('an idempotency key repeated returns the original id and sends nothing', async () => {
    const { topic, group } = await topicWithGroup();
    const a = await bq.send(topic, { v: 1 }, { idempotencyKey: 'once' });
    const b = await bq.send(topic, { v: 2 }, { idempotencyKey: 'once' });
    expect(b).toBe(a);
    expect(await bq.claim(group, 'c1')).toHaveLength(1);
  });

  it('ack with a wrong lease token raises StaleLeaseError; strict: false reports it', async () => {
    const { topic, group } = await topicWithGroup();
    await bq.send(topic, { v: 1 });
    const [m] = await bq.claim(group, 'c1');
    const wrong = { msgId: m!.msgId, leaseToken: (BigInt(m!.leaseToken) + 1000n).toString() };
    await expect(bq.ack(group, [wrong])).rejects.toBeInstanceOf(StaleLeaseError);
    expect(await bq.ack(group, [wrong], { strict: false })).toEqual([{ msgId: m!.msgId, status: 'stale' }]);
    expect(await bq.ack(group, [m!])).toEqual([{ msgId: m!.msgId, status: 'acked' }]);
  });

  it('nack schedules a retry; the message comes back with attempt 2', async () => {
    const { topic, group } = await topicWithGroup();
    await bq.send(topic, { v: 1 }, { key: 'k' });
    const [m] = await bq.claim(group, 'c1');
    const [r] = await bq.nack(group, [{ ...m!, error: 'boom' }], { retryDelay: 0 });
    expect(r).toMatchObject({ msgId: m!.msgId, status: 'retry' });
    expect(r!.retryAt).toBeInstanceOf(Date);
    const [again] = await bq.claim(group, 'c1');
    expect(again).toMatchObject({ msgId: m!.msgId, attempt: 2 });
  });

  it("on a pool whose connections default to REPEATABLE READ, claim, ack and nack run in READ COMMITTED (the functions refuse any other level); a caller's client in REPEATABLE READ gets the refusal", async () => {
    const { topic, group } = await topicWithGroup();
    for (const key of ['a', 'b', 'c']) await bq.send(topic, { key }, { key });
    const rrPool = new pg.Pool({ connectionString: db.connectionString, options: '-c default_transaction_isolation=repeatable\\ read', max: 2 });
    const rr = new BucketQ({ pool: rrPool });
    try {
      // Called directly on such a connection, claim refuses: what the client works around.
      expect((await rrPool.query<{ l: string }>("select current_setting('transaction_isolation') as l")).rows[0]!.l).toBe('repeatable read');
      const direct = await rrPool.query('select * from bucketq.claim($1, $2)', [group, 'c1']).then(() => undefined, (e: { code?: string }) => e);
      expect(direct?.code).toBe('BQ005');

      const got = await rr.claim(group, 'c1', { max: 3 });
      expect(got.map((m) => m.key).sort()).toEqual(['a', 'b', 'c']);
      const [a, b, c] = ['a', 'b', 'c'].map((k) => got.find((m) => m.key === k)!);
      expect(await rr.ack(group, [a!])).toEqual([{ msgId: a!.msgId, status: 'acked' }]);
      const [retried] = await rr.nack(group, [{ ...b!, error: 'boom' }], { retryDelay: 0 });
      expect(retried).toMatchObject({ msgId: b!.msgId, status: 'retry' });

      // A caller's own transaction at REPEATABLE READ: refused, naming the fix, and nothing acked.
      const own = await rrPool.connect();
      try {
        await own.query('begin');
        const err = await rr.ack(group, [c!], { client: own }).then(() => undefined, (e: Error) => e);
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect(err!.message).toMatch(/ack: runs only in READ COMMITTED transactions, and this one is REPEATABLE READ/);
        await own.query('rollback');
      } finally {
        own.release();
      }
      expect(await rr.ack(group, [c!])).toEqual([{ msgId: c!.msgId, status: 'acked' }]);
      // Only b comes back, once, on its second attempt.
      const again = await rr.claim(group, 'c1', { max: 3 });
      expect(again.map((m) => [m.msgId, m.attempt])).toEqual([[b!.msgId, 2]]);
      expect(await rr.ack(group, again)).toEqual([{ msgId: b!.msgId, status: 'acked' }]);
      expect(await rr.claim(group, 'c1')).toEqual([]);
    } finally {
      await rr.close();
      await rrPool.end();
    }
  });
});

describe('prepared statements', () => {
  const preparedOn = async (client: pg.ClientBase) =>
    (await client.query<{ statement: string }>(`select statement from pg_prepared_statements where name like 'bucketq\\_%' order by statement`)).rows.map(
      (r) => r.statement.match(/bucketq\.(\w+)\(/)![1]!,
    ).sort();

  it('sends and acks are prepared once per connection; preparedStatements: false sends them unnamed', async () => {
    const { topic, group } = await topicWithGroup();
    const own = new pg.Pool({ connectionString: db.connectionString, max: 1 }); // a connection no other test has used
    const client = await own.connect();
    try {
      for (let i = 0; i < 3; i++) {
        await bq.send(topic, { i }, { key: 'a', client });
        await bq.sendBatch(topic, [{ payload: { i }, key: 'b' }], { client });
      }
      const [m] = await bq.claim(group, 'c1', { max: 1 });
      await bq.ack(group, [m!], { client });
      expect(await preparedOn(client)).toEqual(['ack', 'send', 'send_batch']);
    } finally {
      client.release();
      await own.end();
    }

    // A pooler that does not keep prepared statements (PgBouncer in transaction mode
    // before 1.21) hands the next transaction a server connection that never saw them:
    // DEALLOCATE ALL is that, on one connection.
    const one = new pg.Pool({ connectionString: db.connectionString, max: 1 });
    one.on('error', () => {}); // (an idle client's connection may end with the test database)
    const prepared = new BucketQ({ pool: one });
    try {
      await prepared.send(topic, { n: 1 });
      await one.query('deallocate all');
      await expect(prepared.send(topic, { n: 2 })).rejects.toThrow(/prepared statement .* does not exist/);
    } finally {
      await one.end();
    }
    const forgetful = new pg.Pool({ connectionString: db.connectionString, max: 1 });
    forgetful.on('error', () => {});
    const unprepared = new BucketQ({ pool: forgetful, preparedStatements: false });
    try {
      for (let i = 0; i < 3; i++) {
        await unprepared.send(topic, { i }, { key: 'c' });
        await unprepared.sendBatch(topic, [{ payload: { i }, key: 'c' }]);
        const [x] = await unprepared.claim(group, 'c1', { max: 1 });
        await unprepared.ack(group, [x!]);
        await forgetful.query('deallocate all');
      }
      const c = await forgetful.connect();
      try {
        expect(await preparedOn(c)).toEqual([]);
      } finally {
        c.release();
      }
    } finally {
      await forgetful.end();
    }
  });

  it('BUCKETQ_PREPARED_STATEMENTS=off turns them off for the process; a value it does not know is a ConfigError naming it', () => {
    expect(preparedStatementsOffByEnv({})).toBe(false);
    expect(preparedStatementsOffByEnv({ BUCKETQ_PREPARED_STATEMENTS: 'off' })).toBe(true);
    expect(preparedStatementsOffByEnv({ BUCKETQ_PREPARED_STATEMENTS: ' False ' })).toBe(true);
    expect(preparedStatementsOffByEnv({ BUCKETQ_PREPARED_STATEMENTS: 'on' })).toBe(false);
    expect(() => preparedStatementsOffByEnv({ BUCKETQ_PREPARED_STATEMENTS: 'sometimes' })).toThrow(ConfigError);
    expect(() => preparedStatementsOffByEnv({ BUCKETQ_PREPARED_STATEMENTS: 'sometimes' })).toThrow(/BUCKETQ_PREPARED_STATEMENTS="sometimes".*'off'/);
  });
});

describe('validation at the edge', () => {
  it('typed topics validate payloads and send nothing on failure', async () => {
    const { topic, group } = await topicWithGroup();
    const orders = bq.topic(topic, z.object({ orderId: z.number().int(), note: z.string().default('') }));
    const err = await orders.send({ orderId: 'x' } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadValidationError);
    expect((err as Error).message).toContain(topic);
    expect((err as Error).message).toContain('orderId');
    await expect(orders.sendBatch([{ payload: { orderId: 1 } }, { payload: {} as never }])).rejects.toBeInstanceOf(PayloadValidationError);
    expect(await bq.claim(group, 'c1')).toEqual([]);

    await orders.send({ orderId: 7 });
    const [m] = await bq.claim(group, 'c1');
    expect(m!.payload).toEqual({ orderId: 7, note: '' }); // the parsed value is what is sent
  });

  it('rejects malformed options with ConfigError listing each problem', async () => {
    const err = await bq.createGroup('g', 't', { onExhausted: 'retry' as never, maxAttempts: 0, bogus: 1 } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain("onExhausted must be 'skip' or 'block', got 'retry'");
    expect(msg).toContain('maxAttempts must be an integer from 1');
    expect(msg).toContain("unknown option 'bogus'");
    await expect(bq.send('t', undefined)).rejects.toThrow(/payload is not JSON-serialisable/);
  });
});
