// Worker metrics: a consumer started with metricsPort serves Prometheus /metrics with
// exact counts for a known workload, and /health that is 503 before joining and while
// stopping, 200 in between. Two consumers in one process keep separate registries.
import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { parseWorkerFlags } from '../src/cli/worker-command.js';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import type { Consumer } from '../src/worker/consumer.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { findFreePort } from '../src/db/embedded.js';

let db: FreshDatabase;
let bq: BucketQ;
const quiet = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const consumers: Consumer[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
});
afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop({ timeoutMs: 1000 })));
  await db.drop();
});

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample line, e.g. metric('bucketq_messages_processed_total{group="g",topic="t"}'). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no sample ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('worker metrics', () => {
  it('counts a known workload exactly, on separate registries per consumer', async () => {
    const BUCKETS = 8;
    await bq.createTopic('m.orders', { buckets: BUCKETS });
    await bq.createGroup('m.billing', 'm.orders', { startAt: 'earliest', maxAttempts: 4, backoffBase: '10 milliseconds', backoffMax: '10 milliseconds' });
    await bq.createTopic('m.poison', { buckets: 2 });
    await bq.createGroup('m.poison.g', 'm.poison', { startAt: 'earliest', maxAttempts: 1 });

    // 20 messages over 5 keys; two of them fail on their first attempt only.
    const ids = await bq.sendBatch('m.orders', Array.from({ length: 20 }, (_, i) => ({ payload: { i }, key: `k${i % 5}` })));
    const failOnce = new Set([ids[3]!, ids[11]!]);
    await bq.send('m.poison', { poison: true }, { key: 'p' });

    // Hold every handler until the gauges have been read with all 20 pending.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const port = await findFreePort();
    const a = await bq.consume(
      {
        group: 'm.billing',
        consumerId: 'metrics-a',
        metricsPort: port,
        heartbeatIntervalMs: 100,
        pollIntervalMs: 50,
        transaction: 'message',
        handler: async (m) => {
          await gate;
          if (failOnce.has(m.msgId) && m.attempt === 1) throw new Error(`first attempt of ${m.msgId} fails`);
        },
      },
      quiet,
    );
    consumers.push(a);
    const portB = await findFreePort();
    const b = await bq.consume(
      {
        group: 'm.poison.g',
        consumerId: 'metrics-b',
        metricsPort: portB,
        heartbeatIntervalMs: 100,
        pollIntervalMs: 50,
        handler: () => {
          throw new Error('always fails');
        },
      },
      quiet,
    );
    consumers.push(b);
    expect(a.metricsPort).toBe(port);

    const A = '{group="m.billing",topic="m.orders"}';
    // The lag is read on a timer of its own, first right after joining.
    await waitFor('the first lag reading', async () => (await get(port, '/metrics')).body.includes(`bucketq_lag_messages${A} `));
    const before = (await get(port, '/metrics')).body;
    expect(sample(before, `bucketq_lag_messages${A}`)).toBe(20);
    expect(sample(before, 'bucketq_owned_buckets{group="m.billing"}')).toBe(BUCKETS);
    expect(sample(before, `bucketq_messages_processed_total${A}`)).toBe(0);

    open();
    await waitFor('20 messages processed', async () => sample((await get(port, '/metrics')).body, `bucketq_messages_processed_total${A}`) === 20);
    await waitFor('the poison message dead-lettered', async () => b.stats.deadLettered === 1);
    // The lag gauge follows on the next heartbeat.
    await waitFor('lag gauge at 0', async () => sample((await get(port, '/metrics')).body, `bucketq_lag_messages${A}`) === 0);

    const text = (await get(port, '/metrics')).body;
    expect(sample(text, `bucketq_messages_processed_total${A}`)).toBe(20);
    expect(sample(text, `bucketq_messages_failed_total${A}`)).toBe(2);
    expect(sample(text, `bucketq_messages_retried_total${A}`)).toBe(2);
    expect(sample(text, `bucketq_messages_dead_lettered_total${A}`)).toBe(0);
    // 22 handler runs (20 + 2 retries); end-to-end latency once per message (first attempt).
    expect(sample(text, `bucketq_handler_duration_seconds_count${A}`)).toBe(22);
    expect(sample(text, `bucketq_handler_duration_seconds_bucket{le="+Inf",group="m.billing",topic="m.orders"}`)).toBe(22);
    expect(sample(text, `bucketq_end_to_end_latency_seconds_count${A}`)).toBe(20);
    // Every message was sent before the consumer started, so none reached a handler within 0.5 ms.
    expect(sample(text, `bucketq_end_to_end_latency_seconds_bucket{le="0.0005",group="m.billing",topic="m.orders"}`)).toBe(0);
    expect(sample(text, `bucketq_end_to_end_latency_seconds_sum${A}`)).toBeGreaterThan(0);
    expect(sample(text, 'bucketq_owned_buckets{group="m.billing"}')).toBe(BUCKETS);
    expect(sample(text, 'bucketq_rebalances_total{group="m.billing"}')).toBe(1);
    expect(sample(text, 'bucketq_fenced_total{group="m.billing"}')).toBe(0);
    expect(text).not.toContain('m.poison');

    const B = '{group="m.poison.g",topic="m.poison"}';
    const textB = (await get(portB, '/metrics')).body;
    expect(sample(textB, `bucketq_messages_processed_total${B}`)).toBe(0);
    expect(sample(textB, `bucketq_messages_failed_total${B}`)).toBe(1);
    expect(sample(textB, `bucketq_messages_retried_total${B}`)).toBe(0);
    expect(sample(textB, `bucketq_messages_dead_lettered_total${B}`)).toBe(1);
    expect(sample(textB, `bucketq_handler_duration_seconds_count${B}`)).toBe(1);
    expect(sample(textB, 'bucketq_owned_buckets{group="m.poison.g"}')).toBe(2);
    expect(textB).not.toContain('m.billing');

    // The counters agree with the consumer's own stats and with the database.
    expect(a.stats).toMatchObject({ processed: 20, failed: 2, deadLettered: 0, fenced: 0, rebalances: 1 });
    const dead = await db.pool.query("select count(*)::int as n from bucketq.dead_letters where group_name = 'm.poison.g'");
    expect(dead.rows[0].n).toBe(1);
    const e = await get(port, '/nope');
    expect(e.status).toBe(404);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a lag count that takes long holds neither the heartbeat nor the messages', async () => {
    // Counting a backlog of ten million messages took 27 s. The count ran after each
    // heartbeat and the next heartbeat waited for it: the session expired and the worker
    // stopped claiming. Here the count waits on a lock instead, for 2.5 session timeouts.
    await bq.createTopic('s.t', { buckets: 2 });
    await bq.createGroup('s.g', 's.t', { startAt: 'earliest', sessionTimeout: '1 second' });
    const port = await findFreePort();
    const handled: string[] = [];
    let open!: () => void;
    let gate: Promise<void> = Promise.resolve();
    const consumer = await bq.consume(
      {
        group: 's.g',
        consumerId: 'slow-lag',
        metricsPort: port,
        heartbeatIntervalMs: 100,
        pollIntervalMs: 50,
        handler: async (m) => {
          await gate;
          handled.push(m.msgId);
        },
      },
      quiet,
    );
    consumers.push(consumer);
    const S = '{group="s.g",topic="s.t"}';
    const lag = async () => {
      const body = (await get(port, '/metrics')).body;
      return body.includes(`bucketq_lag_messages${S} `) ? sample(body, `bucketq_lag_messages${S}`) : undefined;
    };
    await waitFor('the first lag reading', async () => (await lag()) === 0);

    // bucketq.groups reads the dead letters (its dead column): the count waits for this lock.
    const locker = new pg.Client({ connectionString: db.connectionString });
    await locker.connect();
    await locker.query('begin');
    await locker.query('lock table bucketq.dead_letter in access exclusive mode');
    try {
      await waitFor('the lag count to wait on the lock', async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%bucketq.groups%'`);
        return rows[0]!.n === 1;
      });
      const ids = await bq.sendBatch('s.t', Array.from({ length: 6 }, (_, i) => ({ payload: { i }, key: `k${i % 3}` })));
      await waitFor('the messages sent while the count waits', async () => ids.every((id) => handled.includes(id)), 10_000);
      await sleep(2_500); // 2.5 session timeouts
      const { rows } = await db.pool.query<{ alive: boolean }>(
        `select c.heartbeat_at > now() - g.session_timeout as alive
           from bucketq._consumer_now c join bucketq.consumer_group g using (group_id)
          where g.name = 's.g' and c.consumer_id = 'slow-lag'`);
      expect(rows[0]).toMatchObject({ alive: true });
      // Never fenced, never rebalanced: the session held throughout.
      expect(consumer.stats).toMatchObject({ fenced: 0, rebalances: 1 });
      // One count waits; no second one piled up behind it.
      const waiting = await db.pool.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where query like '%from bucketq.groups%' and state = 'active' and pid <> pg_backend_pid()`);
      expect(waiting.rows[0]!.n).toBe(1);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
    // The counts go on once the lock is gone, the next ten times as long after the slow
    // one as it took (about 26 s here): 4 messages held in their handlers are pending.
    gate = new Promise<void>((r) => (open = r));
    await bq.sendBatch('s.t', Array.from({ length: 4 }, (_, i) => ({ payload: { i }, key: `j${i}` })));
    await waitFor('the lag gauge at 4', async () => (await lag()) === 4, 60_000);
    open();
    await waitFor('the lag gauge at 0', async () => (await lag()) === 0, 10_000);
  }, 90_000);

  it('/health is 503 before the consumer joins, 200 with its buckets after, 503 while stopping, gone after stop', async () => {
    await bq.createTopic('h.t', { buckets: 4 });
    await bq.createGroup('h.g', 'h.t', { startAt: 'earliest' });
    await bq.send('h.t', { slow: true }, { key: 'k' });

    // Hold join back: it has to update bucket_owner, which another session has locked.
    const locker = new pg.Client({ connectionString: db.connectionString });
    await locker.connect();
    await locker.query('begin');
    await locker.query('lock table bucketq.bucket_owner in access exclusive mode');
    const port = await findFreePort();
    let release!: () => void;
    const inHandler = new Promise<void>((r) => (release = r));
    let handlerStarted = false;
    let finish!: () => void;
    const finishGate = new Promise<void>((r) => (finish = r));
    const starting = bq.consume(
      {
        group: 'h.g',
        consumerId: 'health-1',
        metricsPort: port,
        heartbeatIntervalMs: 100,
        pollIntervalMs: 50,
        handler: async () => {
          handlerStarted = true;
          release();
          await finishGate;
        },
      },
      quiet,
    );
    try {
      let before: { status: number; body: string } | undefined;
      await waitFor('the health endpoint to answer', async () => {
        before = await get(port, '/health').catch(() => undefined);
        return before !== undefined;
      });
      expect(before).toEqual({ status: 503, body: '{"ready":false}' });
      // Still not joined: the lock holds.
      await sleep(200);
      expect((await get(port, '/health')).status).toBe(503);
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
    const consumer = await starting;
    consumers.push(consumer);

    const after = await get(port, '/health');
    expect(after.status).toBe(200);
    // No consumer id: it names the worker to anyone who can reach the port (issue 13 item 13).
    expect(JSON.parse(after.body)).toEqual({ ready: true, group: 'h.g', topic: 'h.t', ownedBuckets: [0, 1, 2, 3] });

    // Stopping waits for the in-flight handler; meanwhile the probe says not ready.
    await inHandler;
    expect(handlerStarted).toBe(true);
    const stopping = consumer.stop({ timeoutMs: 10_000 });
    await sleep(50);
    const during = await get(port, '/health');
    expect(during).toEqual({ status: 503, body: '{"ready":false}' });
    finish();
    await stopping;
    await expect(get(port, '/health')).rejects.toThrow();
  });

  it('bucketq worker serves metrics on BUCKETQ_METRICS_PORT', async () => {
    await db.pool.query('create table effects (id bigserial primary key, group_name text, msg_id bigint, key text, key_seq bigint, consumer text)');
    await bq.createTopic('w.t', { buckets: 2 });
    await bq.createGroup('w.g', 'w.t', { startAt: 'earliest' });
    await bq.sendBatch('w.t', Array.from({ length: 5 }, (_, i) => ({ payload: { i }, key: `k${i % 2}` })));
    const port = await findFreePort();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli.ts', 'worker', '--group', 'w.g', '--handler', 'test/fixtures/effect-handler.ts', '--database-url', db.connectionString, '--heartbeat-ms', '100'],
      { env: { ...process.env, BUCKETQ_METRICS_PORT: String(port), LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await waitFor(
        'the worker to process 5 messages',
        async () => {
          if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
          const m = await get(port, '/metrics').catch(() => undefined);
          return m !== undefined && sample(m.body, 'bucketq_messages_processed_total{group="w.g",topic="w.t"}') === 5;
        },
        30_000,
      );
      const health = await get(port, '/health');
      expect(health.status).toBe(200);
      expect(JSON.parse(health.body)).toMatchObject({ ready: true, group: 'w.g', ownedBuckets: [0, 1] });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });

  it('listens on loopback by default; metricsHost (or --metrics-host, BUCKETQ_METRICS_HOST) chooses the interface', async () => {
    await bq.createTopic('i.t', { buckets: 1 });
    await bq.createGroup('i.g', 'i.t');
    const local = await bq.consume({ group: 'i.g', handler: () => {}, metricsPort: await findFreePort() }, quiet);
    consumers.push(local);
    const outside = Object.values(os.networkInterfaces())
      .flat()
      .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address;
    try {
      expect(local.metricsHost).toBe('127.0.0.1');
      expect((await get(local.metricsPort!, '/health')).status).toBe(200);
      if (outside) {
        // Another address of this machine: nothing listens there.
        await expect(fetch(`http://${outside}:${local.metricsPort}/health`)).rejects.toThrow();
      }
    } finally {
      await local.stop();
    }
    const all = await bq.consume({ group: 'i.g', handler: () => {}, metricsPort: await findFreePort(), metricsHost: '0.0.0.0' }, quiet);
    consumers.push(all);
    try {
      expect(all.metricsHost).toBe('0.0.0.0');
      if (outside) expect((await fetch(`http://${outside}:${all.metricsPort}/health`)).status).toBe(200);
    } finally {
      await all.stop();
    }
    await expect(bq.consume({ group: 'i.g', handler: () => {}, metricsPort: await findFreePort(), metricsHost: '203.0.113.7' }, quiet)).rejects.toThrow(
      /cannot serve metrics on port \d+: the host is not an address of this machine; set metricsHost \(--metrics-host\).*\(metricsHost 203\.0\.113\.7\)/,
    );
    await expect(bq.consume({ group: 'i.g', handler: () => {}, metricsPort: 1, metricsHost: '' }, quiet)).rejects.toThrow(/metricsHost must not be empty/);
    expect(parseWorkerFlags([], { BUCKETQ_METRICS_HOST: '0.0.0.0' }).metricsHost).toBe('0.0.0.0');
    expect(parseWorkerFlags(['--metrics-host', '::1'], { BUCKETQ_METRICS_HOST: '0.0.0.0' }).metricsHost).toBe('::1');
  });

  it('rejects a bad metricsPort and reports a port in use', async () => {
    await bq.createTopic('p.t', { buckets: 1 });
    await bq.createGroup('p.g', 'p.t');
    await expect(bq.consume({ group: 'p.g', handler: () => {}, metricsPort: 70000 }, quiet)).rejects.toThrow(/metricsPort must be from 0 \(off\) to 65535/);
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      await expect(bq.consume({ group: 'p.g', handler: () => {}, metricsPort: port }, quiet)).rejects.toThrow(/cannot serve metrics on port \d+: the port is in use/);
      // Nothing was left behind: the group has no member.
      const members = await db.pool.query("select count(*)::int as n from bucketq.consumers where group_name = 'p.g'");
      expect(members.rows[0].n).toBe(0);
    } finally {
      await new Promise((r) => busy.close(r));
    }
  });
});
