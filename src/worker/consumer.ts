// The worker runtime: joins a group, heartbeats (which rebalances buckets), claims
// ready messages in the buckets it owns, runs the handler inside the transaction
// that acks, and nacks failures so they are retried with backoff.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Logger } from 'pino';
import { createLogger } from '../log.js';
import { FencedError, StaleLeaseError } from '../errors.js';
import {
  ack,
  beginAndClaimLocked,
  claim,
  nack,
  recordAttempt,
  type ClaimedMessage,
  type LockedClaim,
  type NackResult,
} from '../queries/consume.js';
import { groupSettings, heartbeat, join, leave, type GroupSettings } from '../queries/lobby.js';
import { ConsumerMetrics, MetricsServer } from './metrics.js';
import { type ConsumeOptions, type ConsumeOptionsInput, type HandlerContext, parseConsumeOptions } from './options.js';
import { Wakeup } from './wakeup.js';

export interface ConsumerStats {
  processed: number;
  failed: number;
  deadLettered: number;
  fenced: number;
  rebalances: number;
}

export interface StopOptions {
  /** How long in-flight handlers may run before they are aborted. Default 30 s. */
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function defaultConsumerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export class Consumer {
  readonly consumerId: string;
  readonly group: string;
  readonly stats: ConsumerStats = { processed: 0, failed: 0, deadLettered: 0, fenced: 0, rebalances: 0 };
  /** Resolves when the consumer has stopped and left the group. */
  readonly stopped: Promise<void>;

  private owned = new Map<number, string>(); // bucket -> epoch
  private running = true;
  private inflight = 0;
  private slotFreed: (() => void) | undefined;
  private readonly abort = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private stopping: Promise<void> | undefined;
  private resolveStopped!: () => void;
  private loop: Promise<void> = Promise.resolve();
  /** Prometheus metrics, when started with metricsPort. */
  readonly metrics: ConsumerMetrics | undefined;
  private metricsServer: MetricsServer | undefined;
  private joined = false;
  /** The last claim came back full, so more is probably ready. */
  private backlog = false;
  /**
   * Claims run on a connection of their own with synchronous_commit off: a claim's
   * commit does not wait for its WAL flush. Crash-safe: a lease lost with the WAL is a
   * lease the ack will not find (the message is delivered again, the ack and its effects
   * roll back), and an ack that commits flushes the WAL of the claim before it.
   */
  private readonly claimPool: pg.Pool;

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
      options: [config.options, '-c synchronous_commit=off'].filter(Boolean).join(' '),
    });
    this.claimPool.on('error', () => {}); // a dropped idle client is replaced on next use
    this.consumerId = opts.consumerId ?? defaultConsumerId();
    this.group = opts.group;
    this.stopped = new Promise((r) => (this.resolveStopped = r));
    if (opts.metricsPort) this.metrics = new ConsumerMetrics(opts.group, settings.topic);
  }

  /** The port serving /metrics and /health, or undefined without metricsPort. */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  private async startMetricsServer(): Promise<void> {
    if (!this.metrics || !this.opts.metricsPort) return;
    const port = this.opts.metricsPort;
    try {
      this.metricsServer = await MetricsServer.start(port, this.metrics.registry, () =>
        this.joined && this.running
          ? { ready: true, group: this.group, topic: this.settings.topic, consumerId: this.consumerId, ownedBuckets: [...this.owned.keys()].sort((a, b) => a - b) }
          : { ready: false },
      );
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new Error(`cannot serve metrics on port ${port}${code === 'EADDRINUSE' ? ': the port is in use; pick another metricsPort (--metrics-port)' : `: ${(err as Error).message}`}`, { cause: err });
    }
    this.log.info({ port: this.metricsServer.port }, 'serving /metrics and /health');
  }

  /** bucketq_lag_messages from bucketq.groups (metrics only). */
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
    return this.owned;
  }

  static async start(
    db: { pool?: pg.Pool | undefined; connectionString?: string | undefined },
    input: ConsumeOptionsInput,
    logger?: Logger,
  ): Promise<Consumer> {
    const opts = parseConsumeOptions(input);
    const ownsPool = !db.pool;
    const pool =
      db.pool ?? new pg.Pool({ connectionString: db.connectionString, max: opts.concurrency + 2, keepAlive: true });
    if (ownsPool) pool.on('error', () => {}); // a dropped idle client is replaced on next use
    const log = (logger ?? createLogger()).child({ group: opts.group });
    let consumer: Consumer | undefined;
    try {
      const settings = await groupSettings(pool, opts.group);
      const wakeup = new Wakeup(log);
      consumer = new Consumer(pool, ownsPool, opts, settings, wakeup, log.child({ consumer: opts.consumerId }));
      await consumer.startMetricsServer();
      if (opts.listen) {
        const listenConfig = db.connectionString ?? (pool as unknown as { options: pg.ClientConfig }).options;
        await wakeup.listen(typeof listenConfig === 'string' ? listenConfig : connectionStringOf(listenConfig), settings.topic);
      }
      await consumer.begin();
      return consumer;
    } catch (err) {
      await consumer?.metricsServer?.close();
      await consumer?.claimPool.end().catch(() => {});
      if (ownsPool) await pool.end().catch(() => {});
      throw err;
    }
  }

  private async begin(): Promise<void> {
    if (this.lockMode) await this.claimPool.query('select 1'); // connected before the first batch records its attempt
    const owned = await join(this.pool, this.group, this.consumerId, this.opts.meta ?? { host: hostname(), pid: process.pid });
    this.applyOwnership(owned);
    this.joined = true;
    this.log.info({ consumerId: this.consumerId, buckets: [...this.owned.keys()] }, 'joined group');
    await this.refreshLag();
    const interval = this.opts.heartbeatIntervalMs ?? Math.max(50, Math.floor(this.settings.sessionTimeoutMs / 3));
    let nextMaintenance = Date.now() + this.opts.maintenanceIntervalMs;
    const tick = async () => {
      if (!this.running) return;
      await this.beat();
      if (this.opts.maintenanceIntervalMs > 0 && Date.now() >= nextMaintenance) {
        nextMaintenance = Date.now() + this.opts.maintenanceIntervalMs;
        await this.maintain();
      }
      if (this.running) schedule();
    };
    // The tick in flight is kept so that stop() can wait for it before leaving.
    const schedule = () => {
      this.heartbeatTimer = setTimeout(() => (this.ticking = tick()), interval);
    };
    schedule();
    this.loop = this.claimLoop().catch((err) => this.log.fatal({ err }, 'claim loop crashed'));
  }

  private async beat(): Promise<void> {
    try {
      this.applyOwnership(await heartbeat(this.pool, this.group, this.consumerId));
    } catch (err) {
      if (err instanceof FencedError) {
        if (!this.running) return; // stopping: our own leave may have come first
        // Not a member any more (removed after a long pause): start a new session.
        this.log.warn({ err }, 'no longer a member of the group; joining again');
        try {
          this.applyOwnership(await join(this.pool, this.group, this.consumerId, this.opts.meta));
        } catch (joinErr) {
          this.log.error({ err: joinErr }, 'rejoin failed; retrying on the next heartbeat');
        }
      } else {
        this.log.warn({ err }, 'heartbeat failed; retrying on the next tick');
      }
    }
    await this.refreshLag();
  }

  private async maintain(): Promise<void> {
    try {
      const { rows } = await this.pool.query<{ topic: string; action: string; detail: string }>(
        'select topic, action, detail from bucketq.maintain(wait => false)',
      );
      for (const r of rows) this.log.info(r, 'maintenance');
    } catch (err) {
      this.log.warn({ err }, 'maintenance failed; retried at the next interval');
    }
  }

  private applyOwnership(rows: { bucket: number; epoch: string }[]): void {
    const next = new Map(rows.map((r) => [r.bucket, r.epoch]));
    const gained = rows.filter((r) => this.owned.get(r.bucket) !== r.epoch);
    const lost = [...this.owned.keys()].filter((b) => !next.has(b));
    if (gained.length || lost.length) {
      this.stats.rebalances++;
      this.metrics?.onRebalance();
      this.log.info(
        { gained: gained.map((r) => `${r.bucket}@${r.epoch}`), lost, owned: next.size },
        'bucket ownership changed',
      );
      this.wakeup.wake();
    }
    this.owned = next;
    this.metrics?.onOwned(next.size);
  }

  private async claimLoop(): Promise<void> {
    const batchSize = this.opts.transaction === 'batch' ? this.opts.batchSize : Math.min(this.opts.batchSize, this.opts.concurrency);
    while (this.running) {
      if (this.inflight >= this.opts.concurrency) {
        await new Promise<void>((r) => (this.slotFreed = r));
        continue;
      }
      if (this.owned.size === 0) {
        await this.wakeup.wait(this.opts.pollIntervalMs);
        continue;
      }
      if (this.claimsLocked) {
        // Each batch claims in its own transaction, so claims can overlap: while the
        // last claim came back full (a backlog), the next starts at once; otherwise we
        // wait for its answer, and for a wake-up if it found nothing.
        const claimed = this.startLockedBatch(batchSize);
        if (!this.backlog) {
          const n = await claimed;
          if (n === 0) await this.wakeup.wait(this.opts.pollIntervalMs);
        }
        continue;
      }
      let messages: ClaimedMessage[];
      try {
        const free = this.opts.concurrency - this.inflight;
        messages = await claim(this.claimPool, this.group, this.consumerId, {
          max: this.opts.transaction === 'batch' ? batchSize : Math.min(batchSize, free),
          leaseTimeout: this.opts.leaseTimeoutMs === undefined ? undefined : `${this.opts.leaseTimeoutMs} milliseconds`,
          maxPerKey: this.opts.maxPerKey ?? batchSize,
        });
      } catch (err) {
        if (!this.running) break;
        await this.afterClaimError(err);
        continue;
      }
      this.backlog = messages.length >= batchSize;
      if (messages.length === 0) {
        await this.wakeup.wait(this.opts.pollIntervalMs);
        continue;
      }
      if (this.opts.transaction === 'batch') {
        this.track(this.processBatch(messages));
      } else {
        // A key's run is handled in order, one transaction per message; runs in parallel.
        for (const run of runsOf(messages)) this.track(this.processInOrder(run));
      }
    }
  }

  private async afterClaimError(err: unknown): Promise<void> {
    if (err instanceof FencedError) {
      await this.beat(); // our session expired: rejoin before claiming again
    } else {
      this.log.warn({ err }, 'claim failed; retrying');
      await sleep(Math.min(this.opts.pollIntervalMs, 1000));
    }
  }

  /** Batches may hold their messages by row lock in their own transaction (claim_locked). */
  private get lockMode(): boolean {
    return this.opts.transaction === 'batch' && (this.opts.claimMode ?? 'auto') !== 'lease';
  }

  /**
   * Whether the next claim locks: always with claimMode 'lock'; with 'auto' while the
   * last claim came back full. A lease costs a write and a commit per batch, a locked
   * claim a round trip to record its attempt: under a backlog the lease is the dearer,
   * when messages trickle in the extra round trip is latency.
   */
  private get claimsLocked(): boolean {
    if (!this.lockMode) return false;
    return (this.opts.claimMode ?? 'auto') === 'lock' || this.backlog;
  }

  /**
   * One batch claimed by row lock and processed, as tracked work. Resolves once the
   * claim answered: with how many messages it took (0 on error or nothing ready).
   */
  private startLockedBatch(batchSize: number): Promise<number> {
    let answered!: (n: number) => void;
    const claimed = new Promise<number>((r) => (answered = r));
    this.track(
      (async () => {
        let held: HeldBatch;
        try {
          held = await this.beginLockedClaim(batchSize);
        } catch (err) {
          this.backlog = false;
          answered(0);
          if (this.running) await this.afterClaimError(err);
          return;
        }
        const n = held.claim.messages.length;
        this.backlog = n >= batchSize;
        answered(n);
        if (n > 0) await this.processLockedBatch(held);
      })(),
    );
    return claimed;
  }

  /**
   * Open the batch's transaction and claim in it (one round trip). With nothing to
   * claim the transaction commits at once (claim_locked may have settled crashed
   * attempts or made retries ready: that must stay done).
   */
  private async beginLockedClaim(batchSize: number): Promise<HeldBatch> {
    const { client, release } = await this.checkout();
    try {
      const claimed = await beginAndClaimLocked(client, this.beginSql(), this.group, this.consumerId, {
        max: batchSize,
        maxPerKey: this.opts.maxPerKey ?? batchSize,
      });
      if (claimed.messages.length === 0) {
        await client.query('commit');
        release();
      }
      return { client, release, claim: claimed };
    } catch (err) {
      let broken: Error | undefined;
      await client.query('rollback').catch((e: Error) => (broken = e));
      release(broken);
      throw err;
    }
  }

  private track(work: Promise<void>): void {
    this.inflight++;
    void work
      .catch((err) => this.log.error({ err }, 'unexpected error processing messages'))
      .finally(() => {
        this.inflight--;
        const r = this.slotFreed;
        this.slotFreed = undefined;
        r?.();
        this.wakeup.wake(); // an ack may have made the key's next message ready
      });
  }

  private context(client: pg.ClientBase, m: ClaimedMessage): HandlerContext {
    return {
      client,
      attempt: m.attempt,
      signal: this.abort.signal,
      group: this.group,
      consumerId: this.consumerId,
      log: this.log,
    };
  }

  private async runHandler(client: pg.ClientBase, m: ClaimedMessage): Promise<void> {
    const done = this.metrics?.handlerStarted(m.sentAt, m.attempt);
    try {
      await this.opts.handler(m, this.context(client, m));
    } finally {
      done?.();
    }
  }

  /**
   * A checked-out client gets an error listener while we hold it: the server ending the
   * connection mid-transaction (restart, idle_in_transaction timeout) must fail the
   * next query, not crash the process with an unhandled 'error' event.
   */
  private async checkout(): Promise<{ client: pg.PoolClient; release: (err?: Error) => void }> {
    const client = await this.pool.connect();
    let lost: Error | undefined;
    const onError = (err: Error) => {
      lost = err;
      this.log.warn({ err }, 'database connection lost mid-transaction');
    };
    client.on('error', onError);
    return {
      client,
      release: (err?: Error) => {
        client.off('error', onError);
        client.release(err ?? lost);
      },
    };
  }

  /** begin and the idle limit: a worker frozen inside a transaction must not hold row
   * locks forever (past its lease the message is delivered again anyway). */
  private beginSql(): string {
    const limit = Math.max(1000, this.settings.sessionTimeoutMs, this.opts.leaseTimeoutMs ?? this.settings.leaseTimeoutMs);
    return `begin; set local idle_in_transaction_session_timeout = ${Math.round(limit)}`;
  }

  /**
   * One transaction for the whole batch, a savepoint per message, one batched ack. The
   * transaction opens when a handler first uses its client; if none does, the ack runs
   * alone (one statement, atomic by itself): claim and ack are the only round trips.
   */
  private async processBatch(messages: ClaimedMessage[]): Promise<void> {
    const { client, release } = await this.checkout();
    let done: ClaimedMessage[] = [];
    let failed: { m: ClaimedMessage; err: unknown }[] = [];
    const tx = new LazyTransaction(client, this.beginSql());
    let broken: Error | undefined;
    try {
      ({ done, failed } = await this.runHandlers(messages, tx)); // after abort, the rest is released by leave()
      if (done.length) await ack(client, this.group, done, { strict: true });
      if (tx.began) await client.query('commit');
      this.stats.processed += done.length;
      this.metrics?.onProcessed(done.length);
    } catch (err) {
      if (tx.began) await client.query('rollback').catch((e: Error) => (broken = e));
      if (err instanceof StaleLeaseError || err instanceof FencedError || isRetryableConflict(err)) {
        // Some lease in the batch is gone. Redo message by message: each one whose
        // lease still holds commits, the others roll back alone.
        this.stats.fenced++;
        this.metrics?.onFenced();
        this.log.warn({ err, messages: messages.length }, 'batch ack refused; retrying message by message');
        release(broken);
        await this.processInOrder(done);
        await this.nackAll(failed);
        return;
      }
      release(broken ?? (err as Error));
      throw err;
    }
    release();
    await this.nackAll(failed);
  }

  /**
   * A batch claimed by row lock: its transaction is open and holds the messages. The
   * handlers run in it (a savepoint per message, when a handler queries), then one ack
   * and one nack, then commit. Meanwhile the attempt is recorded from the claim
   * connection, so that a crash here still counts it.
   */
  private async processLockedBatch({ client, release, claim: claimed }: HeldBatch): Promise<void> {
    const { messages, xact } = claimed;
    // Recorded before any handler runs: a message that kills the process at once (the
    // usual poison) must still count its attempt, or it would be retried forever.
    await recordAttempt(
      this.claimPool,
      this.group,
      this.consumerId,
      xact!,
      runsOf(messages).map((run) => run[0]!.msgId),
    ).catch((err: unknown) => this.log.warn({ err }, 'recording the attempt failed; a crash now would not count it'));
    let done: ClaimedMessage[] = [];
    let failed: { m: ClaimedMessage; err: unknown }[] = [];
    const tx = new LazyTransaction(client, null);
    let nacked: NackResult[] = [];
    let broken: Error | undefined;
    try {
      ({ done, failed } = await this.runHandlers(messages, tx)); // after abort, the rest is ready again when we commit
      if (done.length) await ack(client, this.group, done, { consumerId: this.consumerId, strict: true });
      if (failed.length) {
        nacked = await nack(client, this.group, failed.map(({ m, err }) => ({ msgId: m.msgId, leaseToken: null, error: describe(err) })), {
          consumerId: this.consumerId,
          strict: true,
        });
      }
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch((e: Error) => (broken = e));
      if (err instanceof StaleLeaseError || err instanceof FencedError || isRetryableConflict(err)) {
        // Rolled back: the messages are ready again for whoever owns their buckets.
        this.stats.fenced++;
        this.metrics?.onFenced();
        this.log.warn(
          { err, msgIds: messages.map((m) => m.msgId) },
          'batch ack refused; effects rolled back, the messages will be delivered again',
        );
        release(broken);
        return;
      }
      release(broken ?? (err as Error));
      throw err;
    }
    release();
    this.stats.processed += done.length;
    this.metrics?.onProcessed(done.length);
    this.reportNacks(failed, nacked);
  }

  /**
   * A batch's handlers in order, each in its savepoint. After a message of a key fails,
   * the rest of its run is not handled: the nack puts it back behind the failed one.
   * Stops early when the consumer aborts.
   */
  private async runHandlers(
    messages: ClaimedMessage[],
    tx: LazyTransaction,
  ): Promise<{ done: ClaimedMessage[]; failed: { m: ClaimedMessage; err: unknown }[] }> {
    const done: ClaimedMessage[] = [];
    const failed: { m: ClaimedMessage; err: unknown }[] = [];
    const failedKeys = new Set<string>();
    for (const m of messages) {
      if (this.abort.signal.aborted) break;
      if (m.key !== null && failedKeys.has(m.key)) continue;
      try {
        await this.runHandler(tx.next(), m);
        done.push(m);
      } catch (err) {
        await tx.rollbackMessage();
        // Aborted by a stop that ran out of time: not a failed attempt, so no nack (no
        // attempt used, no backoff). leave() voids its lease uncounted; a locked batch
        // commits without it, which unlocks it uncounted too.
        if (this.abort.signal.aborted) break;
        failed.push({ m, err });
        if (m.key !== null) failedKeys.add(m.key);
      }
    }
    return { done, failed };
  }

  /** One transaction per message, in the given order; a key stops at its first failure. */
  private async processInOrder(messages: ClaimedMessage[]): Promise<void> {
    const failedKeys = new Set<string>();
    for (const m of messages) {
      if (this.abort.signal.aborted) break;
      if (m.key !== null && failedKeys.has(m.key)) continue;
      if (!(await this.processInOwnTransaction(m)) && m.key !== null) failedKeys.add(m.key);
    }
  }

  /** true when the message was acked. */
  private async processInOwnTransaction(m: ClaimedMessage, retries = 3): Promise<boolean> {
    const { client, release } = await this.checkout();
    let handlerError: unknown;
    let retry = false;
    let acked = false;
    let broken: Error | undefined;
    const tx = new LazyTransaction(client, this.beginSql(), false); // no handler query: the ack alone
    try {
      try {
        await this.runHandler(tx.next(), m);
      } catch (err) {
        handlerError = err;
        throw err;
      }
      await ack(client, this.group, [m], { strict: true });
      if (tx.began) await client.query('commit');
      acked = true;
      this.stats.processed++;
      this.metrics?.onProcessed(1);
    } catch (err) {
      if (tx.began) await client.query('rollback').catch((e: Error) => (broken = e));
      if (handlerError === undefined) {
        if (err instanceof StaleLeaseError || err instanceof FencedError) {
          this.stats.fenced++;
          this.metrics?.onFenced();
          this.log.warn({ msgId: m.msgId, bucket: m.bucket, err }, 'ack refused (lease lost or fenced); effects rolled back');
        } else if (isRetryableConflict(err) && retries > 0) {
          retry = true;
        } else {
          this.log.error({ msgId: m.msgId, err }, 'ack failed; the lease will expire and the message be delivered again');
          broken ??= err as Error;
        }
      }
    } finally {
      release(broken);
    }
    // Deadlock or serialization failure: Postgres undid everything; run it again.
    if (retry) return this.processInOwnTransaction(m, retries - 1);
    if (handlerError !== undefined && !this.abort.signal.aborted) await this.nackAll([{ m, err: handlerError }]); // aborted: see runHandlers
    return acked;
  }

  private async nackAll(failed: { m: ClaimedMessage; err: unknown }[]): Promise<void> {
    if (failed.length === 0) return;
    try {
      const results = await nack(
        this.pool,
        this.group,
        failed.map(({ m, err }) => ({ msgId: m.msgId, leaseToken: m.leaseToken, error: describe(err) })),
        { strict: false },
      );
      this.reportNacks(failed, results);
    } catch (err) {
      this.stats.failed += failed.length;
      this.metrics?.onFailed(failed.length);
      this.log.error({ err }, 'nack failed; the leases will expire and the messages be delivered again');
    }
  }

  private reportNacks(failed: { m: ClaimedMessage; err: unknown }[], results: NackResult[]): void {
    if (failed.length === 0) return;
    this.stats.failed += failed.length;
    this.metrics?.onFailed(failed.length);
    for (const r of results) {
      const f = failed.find((x) => x.m.msgId === r.msgId);
      if (r.status === 'dead') {
        this.stats.deadLettered++;
        this.metrics?.onDeadLettered();
        this.log.error({ msgId: r.msgId, attempt: f?.m.attempt, err: f?.err }, 'message dead-lettered');
      } else if (r.status === 'retry') {
        this.metrics?.onRetried();
        if (r.retryAt) this.wakeup.wakeAt(r.retryAt);
        this.log.warn({ msgId: r.msgId, attempt: f?.m.attempt, retryAt: r.retryAt, err: f?.err }, 'handler failed; will retry');
      }
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
    clearTimeout(this.heartbeatTimer);
    this.wakeup.wake();
    this.slotFreed?.();
    const deadline = Date.now() + timeoutMs;
    while (this.inflight > 0 && Date.now() < deadline) await sleep(10);
    if (this.inflight > 0) {
      this.log.warn({ inflight: this.inflight }, 'stop timeout: aborting in-flight handlers');
      this.abort.abort(new Error('consumer stopping'));
      const hardDeadline = Date.now() + 5000;
      while (this.inflight > 0 && Date.now() < hardDeadline) await sleep(10);
    }
    await this.loop;
    await this.ticking.catch(() => {}); // a heartbeat after the leave would find us gone
    try {
      const released = await leave(this.pool, this.group, this.consumerId);
      this.log.info({ released }, 'left group');
    } catch (err) {
      this.log.warn({ err }, 'leave failed; the buckets move after the session timeout');
    }
    await this.wakeup.close();
    await this.metricsServer?.close();
    await this.claimPool.end().catch(() => {});
    if (this.ownsPool) await this.pool.end().catch(() => {});
    this.resolveStopped();
  }
}

/** Deadlock or serialization failure: Postgres rolled us back; a retry may succeed. */
function isRetryableConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

function describe(err: unknown): string {
  if (err instanceof Error) return (err.stack ?? `${err.name}: ${err.message}`).slice(0, 4000);
  return String(err).slice(0, 4000);
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

/** A batch claimed by row lock, with the open transaction that holds it. */
interface HeldBatch {
  client: pg.PoolClient;
  release: (err?: Error) => void;
  claim: LockedClaim;
}

/** Consecutive messages of one key (a claimed run) together; unkeyed ones alone. */
function runsOf(messages: ClaimedMessage[]): ClaimedMessage[][] {
  const runs: ClaimedMessage[][] = [];
  for (const m of messages) {
    const last = runs.at(-1);
    if (m.key !== null && last !== undefined && last[0]!.key === m.key) last.push(m);
    else runs.push([m]);
  }
  return runs;
}

/**
 * The batch's transaction and a savepoint per message, opened only when a handler uses
 * its client: a handler that writes nothing (or only elsewhere) costs no round trip.
 * begin and the savepoint are queued right before the handler's first query (pg sends
 * a connection's queries in order), and the previous message's savepoint is released
 * in the same round trip.
 */
class LazyTransaction {
  began = false;
  private taken = false; // the current message's savepoint exists
  private open = false; // an earlier message's savepoint is still open
  /** What handlers get: the client, with begin (and a savepoint) queued before a first query. */
  private readonly handlerClient: pg.ClientBase;

  constructor(
    private readonly client: pg.PoolClient,
    /** null: the transaction is open already. */
    private readonly beginSql: string | null,
    /** One savepoint per message (batch mode); off when the transaction holds one message. */
    private readonly savepoints = true,
  ) {
    this.began = beginSql === null;
    const take = () => this.take();
    this.handlerClient = new Proxy(client, {
      get(target, prop) {
        if (prop === 'query') {
          return (...args: unknown[]) => {
            take();
            return (target.query as (...a: unknown[]) => unknown)(...args);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** The client for the next message's handler. */
  next(): pg.ClientBase {
    this.taken = false;
    return this.handlerClient;
  }

  private take(): void {
    if (this.taken) return;
    this.taken = true;
    const statements = [];
    if (!this.began && this.beginSql !== null) statements.push(this.beginSql);
    if (this.savepoints) {
      if (this.open) statements.push('release savepoint bucketq_message');
      statements.push('savepoint bucketq_message');
      this.open = true;
    }
    this.began = true;
    // A failure here fails the handler's own query, which follows on this connection.
    if (statements.length) this.client.query(statements.join('; ')).catch(() => {});
  }

  /** Undo what the current message's handler wrote (nothing to undo if it wrote nothing). */
  async rollbackMessage(): Promise<void> {
    if (this.taken) await this.client.query('rollback to savepoint bucketq_message');
  }
}
