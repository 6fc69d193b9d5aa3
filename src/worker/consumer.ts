// The worker runtime: joins a group, heartbeats (which rebalances buckets), claims
// ready messages in the buckets it owns, runs the handler inside the transaction
// that acks, and nacks failures so they are retried with backoff.
//
// This file assembles the parts and owns start and stop:
//   membership.ts        lobby and ownership (join, heartbeat, leave, owned buckets)
//   claim-loop.ts        wake-ups, claim modes, concurrency
//   batch-executor.ts    handlers, and the one settle path every batch ends through
//   lazy-transaction.ts  the handler's transaction, opened on first use
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Logger } from 'pino';
import { preparedStatementsOffByEnv, preparesStatements, withoutPreparedStatements } from '../db/prepared.js';
import { createLogger } from '../log.js';
import { groupSettings, type GroupSettings } from '../queries/lobby.js';
import { fireDueSchedules } from '../queries/schedules.js';
import { BatchExecutor } from './batch-executor.js';
import { ClaimLoop } from './claim-loop.js';
import { Membership } from './membership.js';
import { Periodic } from './periodic.js';
import { ConsumerMetrics, MetricsServer } from './metrics.js';
import { type ConsumeOptions, type ConsumeOptionsInput, parseConsumeOptions } from './options.js';
import { traceHandler } from '../tracing.js';
import type { ConsumerStats, Runtime } from './runtime.js';
import { Wakeup } from './wakeup.js';
import { warmConnections } from './warm-up.js';

export type { ConsumerStats } from './runtime.js';

export interface StopOptions {
  /**
   * How long in-flight handlers may run before they are aborted (their signals aborted,
   * their messages not nacked: no attempt used, handed back on leave). stop() returns about this long after it was called, at most
   * a second more. Default 30 s.
   */
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Metrics are served to this machine only unless metricsHost says otherwise. */
const DEFAULT_METRICS_HOST = '127.0.0.1';

/** Why listen() failed, and what to change. */
function listenProblem(err: unknown): string {
  const code = (err as { code?: string }).code;
  if (code === 'EADDRINUSE') return 'the port is in use; pick another metricsPort (--metrics-port)';
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return "the host is not an address of this machine; set metricsHost (--metrics-host) to one of its addresses, '127.0.0.1' (this machine only) or '0.0.0.0' (all interfaces)";
  }
  if (code === 'EACCES') return 'permission denied (ports below 1024 need privileges); pick a port from 1024 up (--metrics-port)';
  return (err as Error).message;
}

/** The lag count for metrics runs at most once per this many times its own duration. */
const LAG_SPACING = 10;

/** After stop's timeout aborts the handlers, how long their batches get to end. */
const STOP_GRACE_MS = 1000;

async function endWithin(pool: pg.Pool, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([pool.end().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export function defaultConsumerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export class Consumer {
  readonly consumerId: string;
  readonly group: string;
  readonly stats: ConsumerStats = { processed: 0, failed: 0, deadLettered: 0, fenced: 0, rebalances: 0 };
  /** Resolves when the consumer has stopped and left the group. */
  readonly stopped: Promise<void>;
  /** Prometheus metrics, when started with metricsPort. */
  readonly metrics: ConsumerMetrics | undefined;

  private running = true;
  private readonly abort = new AbortController();
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  private metricsServer: MetricsServer | undefined;
  /**
   * Claims run on a connection of their own with synchronous_commit off: a claim's
   * commit does not wait for its WAL flush. Crash-safe: a lease lost with the WAL is a
   * lease the ack will not find (the message is delivered again, the ack and its effects
   * roll back), and an ack that commits flushes the WAL of the claim before it.
   */
  private readonly claimPool: pg.Pool;
  private readonly membership: Membership;
  private readonly claimLoop: ClaimLoop;
  private readonly rt: Runtime;
  private lagJob: Periodic | undefined;
  private schedulesJob: Periodic | undefined;
  private maintenanceJob: Periodic | undefined;
  /** The warm-up of the connections beyond the first (warm-up.ts), which runs beside the first claims. */
  private warming: Promise<void> = Promise.resolve();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly ownsPool: boolean,
    private readonly opts: ConsumeOptions,
    private readonly settings: GroupSettings,
    private readonly wakeup: Wakeup,
    readonly log: Logger,
  ) {
    const config = (pool as unknown as { options: pg.PoolConfig }).options;
    this.claimPool = new pg.Pool({
      ...config,
      max: 1,
      idleTimeoutMillis: 0, // kept: a new backend's first claim costs 40 ms and more (warm-up.ts)
      // (and READ COMMITTED whatever the database's default: claims run only there)
      options: [config.options, '-c synchronous_commit=off', '-c default_transaction_isolation=read\\ committed'].filter(Boolean).join(' '),
    });
    this.claimPool.on('error', () => {}); // a dropped idle client is replaced on next use
    if (!preparesStatements(pool)) withoutPreparedStatements(this.claimPool);
    this.consumerId = opts.consumerId ?? defaultConsumerId();
    this.group = opts.group;
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    if (opts.metricsPort) this.metrics = new ConsumerMetrics(opts.group, settings.topic);
    const rt: Runtime = (this.rt = {
      group: this.group,
      consumerId: this.consumerId,
      opts,
      settings,
      pool,
      claimPool: this.claimPool,
      log,
      stats: this.stats,
      metrics: this.metrics,
      wakeup,
      abort: this.abort,
      running: () => this.running,
    });
    this.membership = new Membership(rt);
    this.claimLoop = new ClaimLoop(rt, this.membership, new BatchExecutor(rt));
  }

  /** The port serving /metrics and /health, or undefined without metricsPort. */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** The address the metrics server listens on, or undefined without metricsPort. */
  get metricsHost(): string | undefined {
    return this.metricsServer?.host;
  }

  private async startMetricsServer(): Promise<void> {
    if (!this.metrics || !this.opts.metricsPort) return;
    const port = this.opts.metricsPort;
    const host = this.opts.metricsHost ?? DEFAULT_METRICS_HOST;
    try {
      // /health says whether this consumer is ready and what it owns, not who it is:
      // the consumer id (host, pid) is for the database's views, not for anyone who
      // can reach the port.
      this.metricsServer = await MetricsServer.start(
        port,
        this.metrics.registry,
        () =>
          this.membership.joined && this.running
            ? { ready: true, group: this.group, topic: this.settings.topic, ownedBuckets: [...this.membership.buckets.keys()].sort((a, b) => a - b) }
            : { ready: false },
        host,
      );
    } catch (err) {
      throw new Error(`cannot serve metrics on port ${port}: ${listenProblem(err)} (metricsHost ${host})`, { cause: err });
    }
    this.log.info({ host: this.metricsServer.host, port: this.metricsServer.port }, 'serving /metrics and /health');
  }

  /**
   * bucketq_lag_messages from bucketq.groups (metrics only). The count reads the group's
   * backlog (2.6 s at ten million messages): its own timer, spaced to ten times its duration.
   */
  private async refreshLag(): Promise<void> {
    if (!this.metrics) return;
    try {
      const { rows } = await this.pool.query<{ pending: string }>('select pending from bucketq.groups where group_name = $1', [this.group]);
      if (rows[0]) this.metrics.setLag(Number(rows[0].pending));
    } catch (err) {
      this.log.warn({ err }, 'lag query for metrics failed; retrying on the next heartbeat');
    }
  }

  /** Buckets owned now, with their epochs. */
  ownedBuckets(): ReadonlyMap<number, string> {
    return this.membership.buckets;
  }

  static async start(
    db: { pool?: pg.Pool | undefined; connectionString?: string | undefined },
    input: ConsumeOptionsInput,
    logger?: Logger,
  ): Promise<Consumer> {
    const opts = parseConsumeOptions(input);
    preparedStatementsOffByEnv(); // a bad BUCKETQ_PREPARED_STATEMENTS fails the start, not the first claim
    const ownsPool = !db.pool;
    const pool =
      db.pool ?? new pg.Pool({
        connectionString: db.connectionString,
        // A handler's transaction each, the heartbeat, and the three jobs on timers of their
        // own (lag, schedules, maintenance), which must not leave the heartbeat waiting.
        max: opts.concurrency + 4,
        keepAlive: true,
        // Connections are kept once opened: one closed after a quiet spell came back cold,
        // and the first claim after it cost 40 ms and more (warm-up.ts).
        idleTimeoutMillis: 0,
      });
    if (ownsPool) pool.on('error', () => {}); // a dropped idle client is replaced on next use
    if (!opts.preparedStatements) withoutPreparedStatements(pool);
    const log = (logger ?? createLogger()).child({ group: opts.group });
    const wakeup = new Wakeup(log);
    let topic: string | undefined;
    // The LISTEN connection needs nothing of the group's: it opens beside the settings'
    // query, and is listening before the first claim (a send after that claim's snapshot
    // and before the LISTEN would wait for the poll).
    let listening: Promise<void> = Promise.resolve();
    if (opts.listen) {
      const listenConfig = db.connectionString ?? (pool as unknown as { options: pg.ClientConfig }).options;
      listening = wakeup.listen(typeof listenConfig === 'string' ? listenConfig : connectionStringOf(listenConfig), () => topic);
      listening.catch(() => {}); // awaited below
    }
    let consumer: Consumer | undefined;
    try {
      const settings = await groupSettings(pool, opts.group);
      topic = settings.topic;
      await listening;
      // Each handler run is an OpenTelemetry span (a no-op without an SDK).
      const traced = { ...opts, handler: traceHandler(opts.handler, opts.group, settings.topic) };
      consumer = new Consumer(pool, ownsPool, traced, settings, wakeup, log.child({ consumer: opts.consumerId }));
      await consumer.startMetricsServer();
      await consumer.begin();
      return consumer;
    } catch (err) {
      // Joined already (the claim connection failed, say): leave, or our buckets stay
      // ours, unclaimed, until the session times out.
      if (consumer?.membership.joined) await consumer.membership.leave();
      await listening.catch(() => {});
      await wakeup.close();
      await consumer?.metricsServer?.close();
      await consumer?.claimPool.end().catch(() => {});
      if (ownsPool) await pool.end().catch(() => {});
      throw err;
    }
  }

  private async begin(): Promise<void> {
    // The claim connection opens while we join (its warm-up needs the membership).
    const claimConnected = this.claimPool.query('select 1').catch(() => {});
    await this.membership.join();
    await claimConnected;
    // Also connects the claim connection before the first locked batch records its attempt there.
    const { others } = await warmConnections(this.rt);
    if (this.opts.transaction === 'message') {
      // A claim of message transactions takes as many messages as there are free slots,
      // and the next claim finds none of its buckets' later messages until those are
      // acked: claims while fewer connections are warm would take fewer at once.
      await Promise.all(others);
    } else {
      // The first batches run while the other connections warm. A warm-up holds its
      // buckets' cursor rows for a moment, and a claim meanwhile passes over them: claim
      // everywhere once the last is over.
      this.warming = this.claimLoop.warming(others).then(() => this.wakeup.wake());
    }
    const interval = this.opts.heartbeatIntervalMs ?? Math.max(50, Math.floor(this.settings.sessionTimeoutMs / 3));
    this.membership.startHeartbeat(interval);
    // Each on a timer of its own, so that none holds the heartbeat or another back.
    if (this.metrics) {
      // After the warm-ups: begun now, the count took the warm pool connection, and the
      // first batch opened a cold one beside those being warmed.
      const lagJob = (this.lagJob = new Periodic(interval, () => this.refreshLag(), LAG_SPACING));
      void this.warming.then(() => (this.running ? lagJob.start(true) : undefined));
    }
    if (this.opts.maintenanceIntervalMs > 0) {
      void (this.maintenanceJob = new Periodic(this.opts.maintenanceIntervalMs, () => this.maintain())).start(false);
    }
    // (Before the first claim: beside it, the firing took the warm pool connection and
    // the first batch's ack opened a cold one.)
    if (this.opts.schedules) await (this.schedulesJob = new Periodic(interval, () => this.fireSchedules())).start(true);
    this.claimLoop.start();
  }

  /** Sends the due scheduled messages of the group's topic (each slot once across all workers). */
  private async fireSchedules(): Promise<void> {
    try {
      for (const f of await fireDueSchedules(this.pool, this.group)) {
        if (f.error) this.log.warn({ schedule: f.schedule, slot: f.slot, error: f.error }, 'scheduled message not sent');
        else if (f.msgId) this.log.info({ schedule: f.schedule, slot: f.slot, msgId: f.msgId, nextAt: f.nextAt }, 'scheduled message sent');
      }
    } catch (err) {
      this.log.warn({ err }, 'firing schedules failed; retried at the next heartbeat');
    }
  }

  private async maintain(): Promise<void> {
    try {
      const { rows } = await this.pool.query<{ topic: string | null; action: string; detail: string }>(
        'select topic, action, detail from bucketq.maintain(wait => false)',
      );
      for (const r of rows) this.log.info(r, 'maintenance');
    } catch (err) {
      this.log.warn({ err }, 'maintenance failed; retried at the next interval');
    }
  }

  /**
   * Stop claiming, let in-flight work finish (up to timeoutMs, then abort it), release
   * the buckets and leave the group.
   */
  stop(options: StopOptions = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.timeoutMs ?? 30_000);
    return this.stopping;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    this.running = false;
    const heartbeatStopped = this.membership.stopHeartbeat();
    // A lag count under way is not waited for (the pool's end is bounded below); a
    // schedule firing or a maintenance pass is, as the heartbeat is.
    void this.lagJob?.stop();
    const jobsStopped = Promise.all([this.schedulesJob?.stop(), this.maintenanceJob?.stop()]);
    this.wakeup.wake();
    const loopEnded = this.claimLoop.finish();
    const deadline = Date.now() + timeoutMs;
    // A claim in flight still hands its messages to handlers: wait for the loop to end
    // before counting what is in flight, or stop could leave while they run.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([loopEnded, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    while (this.claimLoop.inflight > 0 && Date.now() < deadline) await sleep(10);
    if (this.claimLoop.inflight > 0) {
      this.log.warn({ inflight: this.claimLoop.inflight }, 'stop timeout: aborting in-flight handlers');
      // Every running handler is given up on at once (its signal aborted, its message
      // nacked); what is left is ending their transactions: a few round trips.
      this.abort.abort(new Error(`consumer stopping: the handler was still running when stop's timeoutMs (${timeoutMs} ms) ran out`));
      const graceEnd = Date.now() + STOP_GRACE_MS;
      while (this.claimLoop.inflight > 0 && Date.now() < graceEnd) await sleep(10);
      if (this.claimLoop.inflight > 0) {
        this.log.warn({ inflight: this.claimLoop.inflight }, 'stop: leaving while batches are still ending; their messages will be delivered again');
      }
    }
    await loopEnded;
    await heartbeatStopped; // a heartbeat after the leave would find us gone
    await jobsStopped;
    await this.warming;
    await this.membership.leave();
    await this.wakeup.close();
    await this.metricsServer?.close();
    // A pool ends once its connections are back; one a batch still holds must not hold stop.
    await endWithin(this.claimPool, STOP_GRACE_MS);
    if (this.ownsPool) await endWithin(this.pool, STOP_GRACE_MS);
    this.resolveStopped();
  }
}

function connectionStringOf(c: pg.ClientConfig): string {
  if (c.connectionString) return c.connectionString;
  const auth = c.user ? `${encodeURIComponent(c.user)}${c.password ? `:${encodeURIComponent(String(c.password))}` : ''}@` : '';
  return `postgres://${auth}${c.host ?? 'localhost'}:${c.port ?? 5432}/${c.database ?? ''}`;
}

/** Start a consumer: `await consume({ connectionString }, { group, handler })`. */
export function consume(
  db: { pool?: pg.Pool | undefined; connectionString?: string | undefined },
  options: ConsumeOptionsInput,
  logger?: Logger,
): Promise<Consumer> {
  return Consumer.start(db, options, logger);
}
