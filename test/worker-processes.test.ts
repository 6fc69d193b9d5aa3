// Real worker processes (`bucketq worker`) against a private Postgres that this file
// restarts: SIGKILL, SIGSTOP/SIGCONT, SIGTERM and a server restart, checked against
// Guarantees 1-4 and 6 through an effects table the handler writes in the ack's
// transaction (test/fixtures/effect-handler.ts). The effects table has no unique
// constraint, so a duplicated effect would be visible.
//
// BUCKETQ_CHAOS_MESSAGES sets the size of the chaos run (default 4,000).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../src/db/embedded.js';
import { migrate } from '../src/migrate.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HANDLER = 'test/fixtures/effect-handler.ts';
const BUCKETS = 16;
const SESSION_TIMEOUT_MS = 1500;
const LEASE_TIMEOUT_MS = 5000;
const HEARTBEAT_MS = 300;
const CHAOS_MESSAGES = Number(process.env.BUCKETQ_CHAOS_MESSAGES ?? 4000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let server: EmbeddedPostgresHandle;
let url: string;
let pool: pg.Pool;

// ---------------------------------------------------------------------------------
// Postgres

/**
 * Crash Postgres (SIGQUIT to the postmaster: immediate shutdown, nothing flushed, so the
 * next start runs crash recovery and loses asynchronously committed work such as the
 * workers' claims), stay down for `downMs`, start again.
 */
async function crashAndRestartPostgres(downMs: number): Promise<number> {
  const t0 = Date.now();
  await server.crash();
  await sleep(downMs);
  await server.restart();
  return Date.now() - t0;
}

beforeAll(async () => {
  server = await startEmbeddedPostgres();
  url = server.connectionString;
  pool = new pg.Pool({ connectionString: url, max: 8 });
  pool.on('error', () => {}); // idle clients die when the server restarts
  await migrate(pool);
  await pool.query(
    `create table effects (id bigserial primary key, group_name text, msg_id bigint, key text, key_seq bigint, consumer text)`,
  );
});

afterAll(async () => {
  await killAll();
  await pool?.end().catch(() => {});
  await server?.stop().catch(() => {});
});

afterEach(async () => {
  await Promise.all(producers.splice(0).map((p) => p.stop()));
  await killAll();
});

/** Runs a query, retrying while the server is down or restarting. */
async function q<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await pool.query<R>(text, values)).rows;
    } catch (err) {
      if (attempt >= 100 || !isConnectionError(err)) throw err;
      await sleep(100);
    }
  }
}

function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message ?? '';
  // class 08 connection exceptions, 57P01-57P03 shutdown / cannot connect now, node socket errors
  return (
    code.startsWith('08') ||
    code.startsWith('57P') ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(code) ||
    /Connection terminated|connection ended|Client has encountered a connection error|not queryable/i.test(message)
  );
}

async function createTopicAndGroup(name: string): Promise<{ topic: string; group: string }> {
  const topic = `${name}.t`;
  const group = `${name}.g`;
  await q('select bucketq.create_topic($1, $2)', [topic, BUCKETS]);
  await q(
    `select bucketq.create_group(group_name => $1, topic => $2, start_at => 'earliest',
                                 session_timeout => $3::interval, lease_timeout => $4::interval)`,
    [group, topic, `${SESSION_TIMEOUT_MS} milliseconds`, `${LEASE_TIMEOUT_MS} milliseconds`],
  );
  return { topic, group };
}

// ---------------------------------------------------------------------------------
// Producer: every message has an idempotency key, so a send_batch whose commit
// outcome is unknown (the server went away mid-call) is retried without duplicates.

const producers: Producer[] = [];

class Producer {
  readonly ids = new Set<string>();
  retries = 0;
  private batch = 0;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly topic: string,
    private readonly keyOf: (i: number) => string,
  ) {
    producers.push(this);
  }

  /** Ends a run() after the batch in flight (afterEach calls it when a test failed). */
  stop(): Promise<void> {
    this.stopped = true;
    return this.running.catch(() => {});
  }

  get sent(): number {
    return this.ids.size;
  }

  async send(count: number): Promise<string[]> {
    const b = ++this.batch;
    const start = this.ids.size;
    const payloads = Array.from({ length: count }, (_, i) => JSON.stringify({ b, i }));
    const keys = Array.from({ length: count }, (_, i) => this.keyOf(start + i));
    const idem = Array.from({ length: count }, (_, i) => `${this.topic}:${b}:${i}`);
    for (let attempt = 1; ; attempt++) {
      try {
        const { rows } = await pool.query<{ id: string }>(
          'select id::text as id from bucketq.send_batch($1, $2::jsonb[], $3::text[], null, $4::text[]) as id',
          [this.topic, payloads, keys, idem],
        );
        if (rows.length !== count) throw new Error(`send_batch returned ${rows.length} ids for ${count} payloads`);
        const before = this.ids.size;
        for (const r of rows) this.ids.add(r.id);
        if (this.ids.size !== before + count) throw new Error(`send_batch returned ids already seen (batch ${b})`);
        return rows.map((r) => r.id);
      } catch (err) {
        if (attempt >= 200 || !isConnectionError(err)) throw err;
        this.retries++;
        await sleep(50);
      }
    }
  }

  /**
   * `batches` sends of `size` messages, one every `everyMs`, until stop() is called.
   * With `until`, keeps sending past `batches` while `until()` is false, up to
   * `maxBatches` sends in all and `maxMs` since the start.
   */
  run(
    batches: number,
    size: number,
    everyMs: number,
    more?: { until: () => boolean; maxBatches: number; maxMs: number },
  ): Promise<void> {
    const t0 = Date.now();
    const goOn = (i: number) =>
      i < batches || (more !== undefined && !more.until() && i < more.maxBatches && Date.now() - t0 < more.maxMs);
    this.running = (async () => {
      for (let i = 0; goOn(i) && !this.stopped; i++) {
        const t = Date.now();
        await this.send(size);
        await sleep(Math.max(0, everyMs - (Date.now() - t)));
      }
    })();
    return this.running;
  }
}

// ---------------------------------------------------------------------------------
// Worker processes

const workers: Worker[] = [];

class Worker {
  readonly proc: ChildProcess;
  out = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly joined: Promise<void>;
  killedByTest = false;
  private onJoined!: () => void;

  constructor(
    readonly id: string,
    group: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ) {
    this.joined = new Promise((r) => (this.onJoined = r));
    this.proc = spawn(
      process.execPath,
      [
        '--import', 'tsx', 'src/cli.ts', 'worker',
        '--group', group,
        '--handler', HANDLER,
        '--database-url', url,
        '--heartbeat-ms', String(HEARTBEAT_MS),
        '--consumer-id', id,
        ...args,
      ],
      { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (chunk: Buffer) => {
      this.out += chunk.toString();
      if (this.out.length > 400_000) this.out = this.out.slice(-300_000);
      if (this.out.includes('"msg":"joined group"')) this.onJoined();
    };
    this.proc.stdout!.on('data', collect);
    this.proc.stderr!.on('data', collect);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    workers.push(this);
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async waitJoined(timeoutMs = 15_000): Promise<void> {
    const exited = this.exited.then((e) => {
      throw new Error(`worker ${this.id} exited (${JSON.stringify(e)}) before joining:\n${this.tail()}`);
    });
    const timeout = sleep(timeoutMs).then(() => {
      throw new Error(`worker ${this.id} did not join within ${timeoutMs} ms:\n${this.tail()}`);
    });
    await Promise.race([this.joined, exited, timeout]);
  }

  signal(sig: NodeJS.Signals): void {
    if (sig === 'SIGKILL' || sig === 'SIGTERM') this.killedByTest = true;
    this.proc.kill(sig);
  }

  tail(chars = 4000): string {
    return this.out.length > chars ? `...${this.out.slice(-chars)}` : this.out;
  }
}

async function killAll(): Promise<void> {
  const live = workers.splice(0).filter((w) => w.alive);
  for (const w of live) w.signal('SIGKILL');
  await Promise.all(live.map((w) => w.exited));
}

async function startWorkers(group: string, prefix: string, n: number, args: string[] = [], env: Record<string, string> = {}) {
  const ws = Array.from({ length: n }, (_, i) => new Worker(`${prefix}-${i + 1}`, group, args, env));
  await Promise.all(ws.map((w) => w.waitJoined()));
  return ws;
}

// ---------------------------------------------------------------------------------
// Waiting and checking

async function diagnostics(group: string, ws: Worker[] = workers): Promise<string> {
  const parts: string[] = [];
  const dump = async (title: string, sql: string) => {
    try {
      parts.push(`${title}:\n${JSON.stringify(await q(sql, [group]), null, 1)}`);
    } catch (err) {
      parts.push(`${title}: query failed: ${(err as Error).message}`);
    }
  };
  await dump('groups', 'select * from bucketq.groups where group_name = $1');
  await dump('lag (non-empty buckets)', `select * from bucketq.lag where group_name = $1 and (ready + leased + delayed + waiting + dead_blocking) > 0`);
  await dump('consumers', 'select * from bucketq.consumers where group_name = $1');
  await dump('buckets', 'select bucket, owner, epoch, heartbeat_age::text, owned from bucketq.buckets where group_name = $1 order by bucket');
  await dump('dead letters', 'select msg_id, key, key_seq, attempts, last_error from bucketq.dead_letters where group_name = $1 limit 20');
  // A stall shows as waiting rows: every inbox row of their keys, and where each of the
  // keys' messages stands (what it waits behind, who last had it).
  await dump(
    'inbox rows of keys with a waiting row',
    `select i.msg_id, i.bucket, i.state, i.key_id, i.key_seq, i.attempts, i.consumer_id, i.epoch, i.available_at::text
       from bucketq.inbox i join bucketq.consumer_group g on g.group_id = i.group_id
      where g.name = $1 and i.key_id in (select w.key_id from bucketq.inbox w where w.group_id = g.group_id and w.state = 3)
      order by i.key_id, i.key_seq limit 60`,
  );
  await dump(
    'message states of keys with a waiting row',
    `select s.msg_id, s.key, s.key_seq, s.bucket, s.state, s.consumer_id, s.epoch, s.since::text, s.waiting_behind, s.attempts
       from bucketq.message_states s
      where s.group_name = $1
        and s.key in (select m.key from bucketq.inbox w join bucketq.consumer_group g on g.group_id = w.group_id
                        join bucketq.message m on m.id = w.msg_id where g.name = $1 and w.state = 3)
      order by s.key, s.key_seq desc limit 60`,
  );
  await dump(
    'latest progress rows (newest 40)',
    `select p.seq, p.bucket, p.kind, p.consumer_id, p.epoch, p.lease_token, p.leased_until::text, p.created_at::text,
            cardinality(p.msg_ids) as n, p.msg_ids[1:8] as first_ids
       from bucketq.progress p join bucketq.consumer_group g on g.group_id = p.group_id
      where g.name = $1 order by p.seq desc limit 40`,
  );
  for (const w of ws) parts.push(`--- worker ${w.id} (alive ${w.alive}, exit ${w.proc.exitCode ?? w.proc.signalCode}) ---\n${w.tail(3000)}`);
  return parts.join('\n\n');
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number, group: string, ws?: Worker[]): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n\n${await diagnostics(group, ws)}`);
    }
    await sleep(50);
  }
  return Date.now() - t0;
}

async function pending(group: string): Promise<number> {
  const rows = await q<{ pending: string }>('select sum(pending)::text as pending from bucketq.groups where group_name = $1', [group]);
  return Number(rows[0]?.pending ?? 0);
}

function drained(group: string, timeoutMs: number, ws?: Worker[]): Promise<number> {
  return waitFor(`group ${group} to drain (pending = 0)`, async () => (await pending(group)) === 0, timeoutMs, group, ws);
}

/**
 * Guarantees 1-3 on the final state: every sent message has exactly one effect and one
 * delivery record, nothing extra; per key the effects (in insertion order) run
 * key_seq 1, 2, 3, ... without a gap or repeat; nothing was dead-lettered.
 */
async function expectExactlyOnceInOrder(group: string, topic: string, sent: Set<string>): Promise<void> {
  const effects = await q<{ id: string; msg_id: string; key: string | null; key_seq: string | null; consumer: string }>(
    'select e.id::text as id, e.msg_id::text as msg_id, e.key, e.key_seq::text as key_seq, e.consumer from effects e where e.group_name = $1 order by e.id',
    [group],
  );
  const perMsg = new Map<string, typeof effects>();
  for (const e of effects) perMsg.set(e.msg_id, [...(perMsg.get(e.msg_id) ?? []), e]);
  const duplicated = [...perMsg.entries()].filter(([, es]) => es.length > 1);
  const missing = [...sent].filter((id) => !perMsg.has(id));
  const extra = [...perMsg.keys()].filter((id) => !sent.has(id));
  const duplicateDetail = async () => {
    const ids = duplicated.slice(0, 5).map(([id]) => id);
    const deliveries = await q('select msg_id, attempt, consumer_id, epoch, acked_at from bucketq.deliveries where msg_id = any($1::bigint[])', [ids]);
    return `duplicated effects: ${JSON.stringify(duplicated.slice(0, 5), null, 1)}\ntheir delivery rows: ${JSON.stringify(deliveries, null, 1)}`;
  };
  expect(duplicated.length, duplicated.length ? await duplicateDetail() : '').toBe(0);
  expect(missing, `messages without effect (of ${sent.size})`).toEqual([]);
  expect(extra, 'effects for messages never sent').toEqual([]);
  expect(effects.length).toBe(sent.size);

  // Per-key FIFO: in effect insertion order (a key's next message only becomes ready
  // after the previous ack committed, so ids are in processing order per key).
  const lastSeq = new Map<string, number>();
  const violations: string[] = [];
  for (const e of effects) {
    if (e.key === null) continue;
    const seq = Number(e.key_seq);
    const prev = lastSeq.get(e.key) ?? 0;
    if (seq !== prev + 1) violations.push(`key ${e.key}: key_seq ${seq} after ${prev} (effect ${e.id}, msg ${e.msg_id}, consumer ${e.consumer})`);
    lastSeq.set(e.key, seq);
  }
  const orderDetail = async () => {
    const key = /^key (\S+):/.exec(violations[0]!)![1]!;
    const rows = await q(
      `select e.id, e.msg_id, e.key_seq, e.consumer, d.attempt, d.epoch, d.acked_at::text
         from effects e left join bucketq.deliveries d on d.msg_id = e.msg_id
        where e.group_name = $1 and e.key = $2 order by e.id`,
      [group, key],
    );
    return `${violations.length} per-key order violations; effects of key ${key} in id order: ${JSON.stringify(rows)}`;
  };
  expect(violations.slice(0, 20), violations.length ? await orderDetail() : '').toEqual([]);

  const [d] = await q<{ n: string; distinct_n: string; wrong: string }>(
    `select count(*)::text as n, count(distinct d.msg_id)::text as distinct_n,
            count(*) filter (where not d.msg_id = any($2::bigint[]))::text as wrong
       from bucketq.deliveries d join bucketq.consumer_group g on g.group_id = d.group_id
      where g.name = $1`,
    [group, [...sent]],
  );
  expect({ rows: Number(d!.n), distinct: Number(d!.distinct_n), unknown: Number(d!.wrong) }).toEqual({
    rows: sent.size,
    distinct: sent.size,
    unknown: 0,
  });
  const [dead] = await q<{ n: string }>('select count(*)::text as n from bucketq.dead_letters where group_name = $1', [group]);
  expect(Number(dead!.n), 'dead letters').toBe(0);
  void topic;
}

/** Distinct warning and error messages in a worker's log, with counts. */
function warnings(w: Worker): Record<string, number> {
  const seen: Record<string, number> = {};
  for (const line of w.out.split('\n')) {
    if (line.startsWith('{')) {
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string };
        if ((entry.level ?? 0) >= 40 && entry.msg) seen[entry.msg] = (seen[entry.msg] ?? 0) + 1;
      } catch {
        // a partial line
      }
    } else if (/Error|error:/.test(line)) {
      seen[line.slice(0, 120)] = (seen[line.slice(0, 120)] ?? 0) + 1;
    }
  }
  return seen;
}

async function maxEffectId(): Promise<number> {
  const [r] = await q<{ m: string | null }>('select max(id)::text as m from effects');
  return Number(r?.m ?? 0);
}

async function effectsBy(group: string, consumer: string, afterId = 0): Promise<number> {
  const [r] = await q<{ n: string }>('select count(*)::text as n from effects where group_name = $1 and consumer = $2 and id > $3', [
    group,
    consumer,
    afterId,
  ]);
  return Number(r!.n);
}

async function ownersOf(group: string): Promise<Map<number, string | null>> {
  const rows = await q<{ bucket: number; owner: string | null }>(
    'select bucket, case when owned then owner end as owner from bucketq.buckets where group_name = $1',
    [group],
  );
  return new Map(rows.map((r) => [r.bucket, r.owner]));
}

// ---------------------------------------------------------------------------------

describe('worker processes', () => {
  it(`chaos: ${CHAOS_MESSAGES} keyed messages, a worker SIGKILLed every second, a Postgres crash and restart: exactly once, in order`, async () => {
    const { topic, group } = await createTopicAndGroup('chaos');
    const env = { EFFECT_DELAY_MAX_MS: '3' };
    let next = 0;
    const spawnOne = () => new Worker(`chaos-${++next}`, group, [], env);
    const live: Worker[] = [spawnOne(), spawnOne(), spawnOne()];
    await Promise.all(live.map((w) => w.waitJoined()));

    const producer = new Producer(topic, (i) => `k${i % 200}`);
    const batches = 40;
    const size = Math.ceil(CHAOS_MESSAGES / batches);
    let producing = true;
    // The producer must run into the restart (a send that fails and is retried) whatever
    // the timing: past its `batches`, it keeps sending until it has retried a send (the
    // restart starts at half of them, but may wait behind a slow kill round), bounded by
    // four times the batches and 60 s more.
    const production = producer
      .run(batches, size, 150, { until: () => producer.retries > 0, maxBatches: batches * 4, maxMs: 60_000 + batches * 150 })
      .finally(() => (producing = false));

    // Chaos: every ~second kill a random worker and start a replacement; once half the
    // messages are sent, restart Postgres (between two kill rounds, so no worker is
    // starting up while the server is down). One worker that was running before the
    // restart (the witness) is never killed after it: it must come through on its own.
    let kills = 0;
    let witness: Worker | undefined;
    let effectsBeforeRestart = 0;
    let restartMs = 0;
    let lock = Promise.resolve();
    const exclusive = (fn: () => Promise<void>) => (lock = lock.then(fn));
    const restart = (async () => {
      while (producing && producer.sent < (batches * size) / 2) await sleep(20);
      await exclusive(async () => {
        witness = live.find((w) => w.alive)!;
        effectsBeforeRestart = await maxEffectId();
        restartMs = await crashAndRestartPostgres(700);
      });
    })();
    restart.catch(() => {}); // awaited below; a failing kill round must not leave it unhandled
    let roundStart = Date.now();
    for (let round = 1; producing || kills < 5; round++) {
      await sleep(Math.max(200, 1000 - (Date.now() - roundStart)));
      roundStart = Date.now();
      await exclusive(async () => {
        const died = live.filter((w) => !w.alive && !w.killedByTest);
        if (died.length) {
          throw new Error(`workers exited on their own: ${died.map((w) => `${w.id}:\n${w.tail()}`).join('\n\n')}`);
        }
        const candidates = live.filter((w) => w !== witness);
        const victim = candidates[Math.floor(Math.random() * candidates.length)]!;
        victim.signal('SIGKILL');
        kills++;
        await victim.exited;
        live.splice(live.indexOf(victim), 1);
        const replacement = spawnOne();
        live.push(replacement);
        await replacement.waitJoined();
      });
      if (round > 20) break;
    }
    await restart;
    await production;
    const died = live.filter((w) => !w.alive && !w.killedByTest);
    expect(died.map((w) => `${w.id}:\n${w.tail()}`), 'workers that exited on their own').toEqual([]);

    const drainMs = await drained(group, Math.max(45_000, CHAOS_MESSAGES * 5), live);
    for (const w of live) expect(w.alive, `${w.id} still running:\n${w.tail()}`).toBe(true);
    console.log(
      `chaos: ${producer.sent} messages, ${kills} SIGKILLs, Postgres crash and restart took ${restartMs} ms, ` +
        `${producer.retries} send retries, drained ${drainMs} ms after the last send; ` +
        `witness ${witness!.id} warnings: ${JSON.stringify(warnings(witness!))}`,
    );
    // Every batch sent in full; at least `batches` of them (more if the restart came late).
    expect(producer.sent % size).toBe(0);
    expect(producer.sent).toBeGreaterThanOrEqual(batches * size);
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(restartMs).toBeGreaterThan(0);
    expect(producer.retries, 'the producer ran into the restart').toBeGreaterThan(0);
    await expectExactlyOnceInOrder(group, topic, producer.ids);

    // The witness came through the restart: it noticed (LISTEN reconnect) and kept
    // committing effects afterwards.
    expect(witness!.out, `witness ${witness!.id} log`).toMatch(/LISTEN connection lost/);
    expect(await effectsBy(group, witness!.id, effectsBeforeRestart), `effects by ${witness!.id} after the restart`).toBeGreaterThan(0);
  }, 150_000 + CHAOS_MESSAGES * 6);

  it('failover: a SIGKILLed worker\'s buckets are owned again within 2 x session_timeout + 1 heartbeat, and its messages flow', async () => {
    const { topic, group } = await createTopicAndGroup('failover');
    const ws = await startWorkers(group, 'fo', 3);
    // Settled: every bucket live-owned, each of the three with its fair share (at least
    // floor(16 / 3) = 5; a worker that joined last takes its share over a few heartbeats).
    await waitFor(
      'three workers sharing all buckets fairly',
      async () => {
        const owners = [...(await ownersOf(group)).values()];
        const counts = ws.map((w) => owners.filter((o) => o === w.id).length);
        return owners.every((o) => o !== null) && counts.every((n) => n >= 5);
      },
      10_000,
      group,
    );
    const victim = ws[1]!;
    const victimBuckets = [...(await ownersOf(group)).entries()].filter(([, o]) => o === victim.id).map(([b]) => b);
    expect(victimBuckets.length).toBeGreaterThanOrEqual(5);

    const t0 = Date.now();
    victim.signal('SIGKILL');
    // Probes to every bucket (200 distinct keys cover all 16), the victim's included.
    const producer = new Producer(topic, (i) => `probe-${i}`);
    const probeIds = await producer.send(200);

    let ownedMs: number | undefined;
    let processedMs: number | undefined;
    await waitFor(
      'buckets owned again and the probes processed',
      async () => {
        if (ownedMs === undefined) {
          const owners = [...(await ownersOf(group)).values()];
          if (owners.every((o) => o !== null && o !== victim.id)) ownedMs = Date.now() - t0;
        }
        if (processedMs === undefined && (await pending(group)) === 0) processedMs = Date.now() - t0;
        return ownedMs !== undefined && processedMs !== undefined;
      },
      15_000,
      group,
    );
    const bound = 2 * SESSION_TIMEOUT_MS + HEARTBEAT_MS + 500;
    console.log(
      `failover: buckets ${victimBuckets.join(',')} of ${victim.id} owned again after ${ownedMs} ms (bound ${bound} ms), ` +
        `all 200 probes processed after ${processedMs} ms (session_timeout ${SESSION_TIMEOUT_MS} ms, heartbeat ${HEARTBEAT_MS} ms)`,
    );
    expect(ownedMs!).toBeLessThanOrEqual(bound);

    // The victim's former buckets received probes, and the survivors processed them.
    const rows = await q<{ bucket: number; consumer: string }>(
      `select m.bucket, e.consumer from bucketq.message m join effects e on e.msg_id = m.id and e.group_name = $2
        where m.id = any($1::bigint[])`,
      [probeIds, group],
    );
    const probedVictimBuckets = new Set(rows.filter((r) => victimBuckets.includes(r.bucket)).map((r) => r.bucket));
    expect([...probedVictimBuckets].sort((a, b) => a - b)).toEqual([...victimBuckets].sort((a, b) => a - b));
    expect(rows.filter((r) => r.consumer === victim.id)).toEqual([]);
    await expectExactlyOnceInOrder(group, topic, producer.ids);
    expect(ws[0]!.alive && ws[2]!.alive).toBe(true);
  }, 60_000);

  // lease: the stalled message's lease expires and the new owner acks it while the
  // zombie is frozen. lock: the zombie's open transaction holds its row lock, so the
  // message waits for that transaction to end (its ack refused), then goes to whoever
  // owns the bucket, as attempt 2; its idle transactions were killed meanwhile.
  it.each(['lease', 'lock'] as const)('zombie (%s claims): a worker frozen (SIGSTOP) mid-transaction loses its buckets, cannot commit when it resumes, and rejoins', async (mode) => {
    const { topic, group } = await createTopicAndGroup(`zombie-${mode}`);
    const stoppedMs = 3 * SESSION_TIMEOUT_MS;
    // The zombie: ~200 ms per message in Postgres (always work in flight), small
    // batches, and its first message holds its transaction open in pg_sleep for longer
    // than the freeze, so that transaction is still alive, effect written, when the
    // bucket has moved and the message was processed by its new owner.
    const zombie = new Worker('zombie-z', group, ['--batch-size', '4', '--concurrency', '4', '--claim-mode', mode], {
      EFFECT_SLOW_MS: '200',
      // (A margin of 1.5 s ran out in one CI run on a loaded machine: the stall was
      // over before the check below that it is still running.)
      EFFECT_STALL_MS: String(stoppedMs + 3500),
    });
    await zombie.waitJoined();
    const others = await startWorkers(group, 'zombie-ok', 2, [], { EFFECT_DELAY_MAX_MS: '2' });
    const all = [zombie, ...others];
    // Settled first, so the stalled message is not in a bucket the zombie hands over
    // while the others join.
    await waitFor(
      'three workers sharing all buckets',
      async () => {
        const owners = [...(await ownersOf(group)).values()];
        return owners.every((o) => o !== null) && new Set(owners).size === 3;
      },
      10_000,
      group,
      all,
    );

    const producer = new Producer(topic, (i) => `k${i % 40}`);
    const production = producer.run(1000, 5, 100);

    await waitFor('the zombie to stall in a transaction', async () => /stalling msg (\d+)/.test(zombie.out), 15_000, group, all);
    const stalledMsg = /stalling msg (\d+)/.exec(zombie.out)![1]!;
    await sleep(100); // let it take a few more batches
    const heldBefore = [...(await ownersOf(group)).entries()].filter(([, o]) => o === zombie.id).map(([b]) => b);
    zombie.signal('SIGSTOP');
    const stoppedAt = Date.now();
    expect(heldBefore.length).toBeGreaterThan(0);

    // While it is frozen: its buckets move to the others. With leases, the message its
    // open transaction already wrote an effect for is processed (once) by the new owner;
    // with locks, that transaction still holds it.
    await waitFor(
      mode === 'lease'
        ? 'the zombie\'s buckets to move and its stalled message to be acked by another worker'
        : 'the zombie\'s buckets to move and messages to flow in them',
      async () => {
        const owners = [...(await ownersOf(group)).values()];
        if (!owners.every((o) => o !== null && o !== zombie.id)) return false;
        if (mode === 'lock') return (await effectsBy(group, others[0]!.id)) + (await effectsBy(group, others[1]!.id)) > 0;
        const d = await q<{ consumer_id: string }>('select consumer_id from bucketq.deliveries where msg_id = $1', [stalledMsg]);
        return d.length === 1 && d[0]!.consumer_id !== zombie.id;
      },
      stoppedMs - 300,
      group,
      all,
    );
    if (mode === 'lock') {
      expect(await q('select 1 from bucketq.deliveries where msg_id = $1', [stalledMsg]), 'held by the frozen transaction').toEqual([]);
    }
    // The zombie's transaction is still open (in pg_sleep), holding its own effect row.
    const open = await q(`select pid from pg_stat_activity where state = 'active' and query like '%pg_sleep%' and now() - query_start > interval '1 second'`);
    expect(open.length, 'the zombie\'s stalled transaction is still running').toBe(1);
    await sleep(Math.max(0, stoppedMs - (Date.now() - stoppedAt)));

    const resumeEffectId = await maxEffectId();
    const resumedAt = Date.now();
    zombie.signal('SIGCONT');
    // It comes back. Its idle transactions were killed by idle_in_transaction_session_timeout
    // meanwhile; the stalled one is still open and, once its pg_sleep ends, tries to ack
    // a message the new owner acked long ago: refused, its effects roll back.
    await waitFor(
      `the zombie's ack of the stalled message ${stalledMsg} to be refused`,
      async () =>
        zombie.out
          .split('\n')
          .some((l) => l.includes('ack refused') && (l.includes(`"msgId":"${stalledMsg}"`) || l.includes(`"${stalledMsg}"`))),
      15_000,
      group,
      all,
    );
    const [stillOpen] = await q<{ n: string }>(`select count(*)::text as n from pg_stat_activity where state = 'active' and query like '%pg_sleep%' and now() - query_start > interval '1 second'`);
    expect(Number(stillOpen!.n), 'the stalled transaction has ended').toBe(0);
    // Then it takes a fair share again and works on.
    await waitFor('the resumed zombie to own buckets again', async () => [...(await ownersOf(group)).values()].includes(zombie.id), 10_000, group, all);
    await waitFor('the resumed zombie to commit effects again', async () => (await effectsBy(group, zombie.id, resumeEffectId)) > 0, 15_000, group, all);
    await producer.stop();
    await production;
    await drained(group, 30_000, all);

    expect(zombie.alive).toBe(true);
    await expectExactlyOnceInOrder(group, topic, producer.ids);
    // The stalled message's only effect is the new owner's.
    const stalledEffects = await q<{ consumer: string }>('select consumer from effects where group_name = $1 and msg_id = $2', [group, stalledMsg]);
    if (mode === 'lease') {
      expect(stalledEffects.map((e) => e.consumer)).not.toContain(zombie.id);
    } else {
      // Held by the frozen transaction until it ended after the resume, then handled
      // again (by whoever owned the bucket then, the zombie included) and acked once.
      const [d] = await q<{ resumed_ms: number }>(
        `select extract(epoch from acked_at) * 1000 - $2::float8 as resumed_ms from bucketq.deliveries where msg_id = $1`,
        [stalledMsg, resumedAt],
      );
      expect(d!.resumed_ms).toBeGreaterThan(0);
    }
    console.log(
      `zombie: ${producer.sent} messages; frozen ${stoppedMs} ms while holding buckets ${heldBefore.join(',')}; ` +
        `stalled msg ${stalledMsg} acked by ${stalledEffects[0]?.consumer}; zombie warnings: ${JSON.stringify(warnings(zombie))}`,
    );
  }, 60_000);

  it('a poison message that SIGKILLs its worker every time is dead-lettered after max_attempts; its key and the rest flow, exactly once', async () => {
    const { topic, group } = await createTopicAndGroup('poison');
    await q('update bucketq.consumer_group set max_attempts = 3 where name = $1', [group]);
    const producer = new Producer(topic, (i) => (i % 5 === 0 ? 'poison' : `k${i % 7}`));
    await producer.send(50);
    const [poison] = await q<{ id: string }>(
      `select m.id::text as id from bucketq.message m join bucketq.topic t using (topic_id)
         join bucketq.topic_key k on k.key_id = m.key_id where t.name = $1 and k.key = 'poison' and m.key_seq = 1`,
      [topic],
    );
    const crashes: string[] = [];
    for (let i = 1; i <= 6; i++) {
      // One message per transaction: a crash counts an attempt for every message its
      // transaction held, and this test is about the poison alone.
      const w = new Worker(`poison-${i}`, group, ['--batch-size', '1', '--concurrency', '1', '--claim-mode', 'lock'], { EFFECT_POISON_KEY: 'poison' });
      await w.waitJoined();
      let outcome = 'timeout';
      for (const t0 = Date.now(); Date.now() - t0 < 20_000; await sleep(50)) {
        if (!w.alive) {
          outcome = 'crashed';
          break;
        }
        if ((await pending(group)) === 0) {
          outcome = 'drained';
          break;
        }
      }
      if (outcome === 'timeout') throw new Error(`neither drained nor crashed:\n${w.tail()}\n${await diagnostics(group, [w])}`);
      if (outcome === 'drained') {
        w.signal('SIGTERM');
        await w.exited;
        break;
      }
      crashes.push(w.tail());
    }
    expect(crashes).toHaveLength(3); // attempts 1, 2 and 3
    const dead = await q<{ attempts: number; last_error: string }>('select attempts, last_error from bucketq.dead_letter where msg_id = $1', [poison!.id]);
    expect(dead).toHaveLength(1);
    expect(dead[0]!.attempts).toBe(3);
    expect(dead[0]!.last_error).toMatch(/ended without committing/);
    // Everything else exactly once and in key order (the poison key from key_seq 2 on);
    // the poison message has no effect: each of its transactions died uncommitted.
    const effects = await q<{ msg_id: string; key: string; key_seq: string }>(
      'select msg_id::text as msg_id, key, key_seq::text as key_seq from effects where group_name = $1 order by id',
      [group],
    );
    expect(effects.map((e) => e.msg_id).sort()).toEqual([...producer.ids].filter((id) => id !== poison!.id).sort());
    const next = new Map<string, number>([['poison', 2]]);
    for (const e of effects) {
      expect(Number(e.key_seq), `key ${e.key}`).toBe(next.get(e.key) ?? 1);
      next.set(e.key, Number(e.key_seq) + 1);
    }
  }, 90_000);

  it('graceful stop: SIGTERM mid-stream exits 0, leaves the lobby, holds no lease; the rest finish exactly once', async () => {
    const { topic, group } = await createTopicAndGroup('graceful');
    const stopTimeoutMs = 5000;
    const ws = await startWorkers(group, 'gs', 3, ['--stop-timeout-ms', String(stopTimeoutMs)], { EFFECT_DELAY_MAX_MS: '3' });
    const leaving = ws[0]!;

    const producer = new Producer(topic, (i) => `k${i % 100}`);
    const production = producer.run(30, 100, 100);
    await waitFor('the leaving worker to be busy', async () => (await effectsBy(group, leaving.id)) >= 150, 10_000, group, ws);

    const t0 = Date.now();
    leaving.signal('SIGTERM');
    const exit = await Promise.race([
      leaving.exited,
      sleep(stopTimeoutMs + 10_000).then(() => ({ code: 'timeout', signal: null })),
    ]);
    const exitMs = Date.now() - t0;
    expect(exit, leaving.tail()).toEqual({ code: 0, signal: null });
    expect(exitMs, 'exit within the stop timeout').toBeLessThanOrEqual(stopTimeoutMs);
    expect(leaving.out).toMatch(/"msg":"left group"/);

    const listed = await q('select consumer_id from bucketq.consumers where group_name = $1 and consumer_id = $2', [group, leaving.id]);
    expect(listed).toEqual([]);
    const [leased] = await q<{ n: string }>(
      `select count(*)::text as n from bucketq.inbox i join bucketq.consumer_group g on g.group_id = i.group_id
        where g.name = $1 and i.consumer_id = $2 and i.state = 1`,
      [group, leaving.id],
    );
    expect(Number(leased!.n)).toBe(0);
    const owned = [...(await ownersOf(group)).values()].filter((o) => o === leaving.id);
    expect(owned).toEqual([]);

    await production;
    await drained(group, 30_000, ws);
    const effectsAfter = await q<{ n: string }>('select count(*)::text as n from effects where group_name = $1 and consumer = $2', [group, leaving.id]);
    console.log(
      `graceful stop: exited 0 after ${exitMs} ms; it had processed ${effectsAfter[0]!.n} of ${producer.sent} messages`,
    );
    await expectExactlyOnceInOrder(group, topic, producer.ids);
    expect(ws[1]!.alive && ws[2]!.alive).toBe(true);
  }, 60_000);
});
