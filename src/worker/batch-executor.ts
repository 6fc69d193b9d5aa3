// The batch executor: runs the handlers of a claimed batch (or of one message, in
// 'message' transactions) and ends the transaction. Every way a batch can end goes
// through settle(): committed with its ack (and, for a locked batch, its nack), refused
// because a lease or bucket was lost (fencing: roll back, count it, redo or let the
// messages go), a conflict Postgres asks us to retry, or broken by an unexpected error.
// Failed handlers are nacked on that same path, so no ending forgets them.
import type pg from 'pg';
import { ack, nack, recordAttempt, type ClaimedMessage, type LockedClaim, type NackResult } from '../queries/consume.js';
import { PayloadValidationError } from '../errors.js';
import { jitteredRetryDelay } from './backoff.js';
import { beginSql, checkout, type HeldConnection } from './connection.js';
import { describe, isFenced, isRetryableConflict, logged, type Failure } from './failures.js';
import { LazyTransaction, TransactionLostError } from './lazy-transaction.js';
import type { HandlerContext } from './options.js';
import { runsOf } from './runs.js';
import type { Runtime } from './runtime.js';

/** A batch claimed by row lock, with the open transaction that holds it. */
export interface HeldBatch extends HeldConnection {
  claim: LockedClaim;
}

/**
 * How a transaction's messages are held, which decides how it ends:
 * 'batch'   leased messages, one transaction (savepoint per message), failures nacked after it
 * 'locked'  messages held by claim_locked in this transaction: ack and nack inside it
 * 'message' one leased message in its own transaction
 */
type Shape = 'batch' | 'locked' | 'message';

/** A transaction whose handlers have run, ready to end. */
interface Ending {
  shape: Shape;
  conn: HeldConnection;
  tx: LazyTransaction;
  messages: ClaimedMessage[];
  done: ClaimedMessage[];
  failed: Failure[];
  /** Something broke before the ack (the connection, a savepoint): end with this error. */
  broke?: { err: unknown };
  /** 'message' only: how many more times a deadlock or serialization failure may redo it. */
  retriesLeft?: number;
}

/** committed: the ack committed; retry: a conflict, run the message again; ended: anything else. */
type Settled = 'committed' | 'retry' | 'ended';

/** A handler ran past its deadline: its message fails with this error (and is nacked). */
export class HandlerTimeoutError extends Error {
  constructor(msgId: string, timeoutMs: number) {
    super(`handler for message ${msgId} timed out after ${timeoutMs} ms (handlerTimeoutMs); its signal was aborted and its transaction rolled back`);
    this.name = 'HandlerTimeoutError';
  }
}

/** How long a cancelled query of a handler given up on may take to end. */
const CANCEL_WAIT_MS = 5000;

export class BatchExecutor {
  /** Handlers running now, each with the function that gives up on it. */
  private readonly running = new Set<(reason: unknown) => void>();

  constructor(private readonly rt: Runtime) {
    // A hard stop gives up on every running handler: each one's message fails with the
    // stop's reason, its signal is aborted, and its batch ends through settle().
    rt.abort.signal.addEventListener('abort', () => {
      for (const giveUp of [...this.running]) giveUp(rt.abort.signal.reason);
    });
  }

  /** Was this handler cut off by stop() running out of time (not by its own deadline)? */
  private stoppedBy(err: unknown): boolean {
    return this.rt.abort.signal.aborted && err === this.rt.abort.signal.reason;
  }

  /** The longest one handler may run: handlerTimeoutMs, else the lease timeout. */
  private get handlerTimeoutMs(): number {
    const { opts, settings } = this.rt;
    return opts.handlerTimeoutMs ?? opts.leaseTimeoutMs ?? settings.leaseTimeoutMs;
  }

  /**
   * One transaction for the whole batch, a savepoint per message, one batched ack. The
   * transaction opens when a handler first uses its client; if none does, the ack runs
   * alone (one statement, atomic by itself): claim and ack are the only round trips.
   */
  async processBatch(messages: ClaimedMessage[]): Promise<void> {
    const conn = await checkout(this.rt);
    const tx = new LazyTransaction(conn.client, beginSql(this.rt));
    const ending: Ending = { shape: 'batch', conn, tx, messages, done: [], failed: [] };
    try {
      Object.assign(ending, await this.runHandlers(messages, tx)); // after abort, the rest is released by leave()
    } catch (err) {
      ending.broke = { err };
    }
    await this.settle(ending);
  }

  /**
   * A batch claimed by row lock: its transaction is open and holds the messages. The
   * handlers run in it (a savepoint per message, when a handler queries), then one ack
   * and one nack, then commit. Meanwhile the attempt is recorded from the claim
   * connection, so that a crash here still counts it. Resolves true when the batch
   * rolled back: its messages are ready again.
   */
  async processLockedBatch(held: HeldBatch): Promise<boolean> {
    const { rt } = this;
    const { messages, xact } = held.claim;
    // Recorded before any handler runs: a message that kills the process at once (the
    // usual poison) must still count its attempt, or it would be retried forever.
    await recordAttempt(
      rt.claimPool,
      rt.group,
      rt.consumerId,
      xact!,
      runsOf(messages).map((run) => run[0]!.msgId),
    ).catch((err: unknown) => rt.log.warn({ err }, 'recording the attempt failed; a crash now would not count it'));
    const tx = new LazyTransaction(held.client, null);
    const ending: Ending = { shape: 'locked', conn: held, tx, messages, done: [], failed: [] };
    try {
      Object.assign(ending, await this.runHandlers(messages, tx)); // after abort, the rest is ready again when we commit
    } catch (err) {
      ending.broke = { err };
    }
    return (await this.settle(ending)) !== 'committed';
  }

  /** One transaction per message, in the given order; a key stops at its first failure. */
  async processInOrder(messages: ClaimedMessage[]): Promise<void> {
    const failedKeys = new Set<string>();
    for (const m of messages) {
      if (this.rt.abort.signal.aborted) break;
      if (m.key !== null && failedKeys.has(m.key)) continue;
      if (!(await this.processInOwnTransaction(m)) && m.key !== null) failedKeys.add(m.key);
    }
  }

  /** true when the message was acked. */
  private async processInOwnTransaction(m: ClaimedMessage, retriesLeft = 3): Promise<boolean> {
    const conn = await checkout(this.rt);
    const tx = new LazyTransaction(conn.client, beginSql(this.rt), false); // no handler query: the ack alone
    const ending: Ending = { shape: 'message', conn, tx, messages: [m], done: [], failed: [], retriesLeft };
    try {
      await this.runHandler(tx, m);
      ending.done.push(m);
    } catch (err) {
      // whatever was thrown, undefined included; a stop's abort is no failure (see runHandlers)
      if (!this.stoppedBy(err)) ending.failed.push({ m, err });
    }
    const settled = await this.settle(ending);
    // Deadlock or serialization failure: Postgres undid everything; run it again.
    if (settled === 'retry') return this.processInOwnTransaction(m, retriesLeft - 1);
    return settled === 'committed';
  }

  /**
   * A batch's handlers in order, each in its savepoint. After a message of a key fails,
   * the rest of its run is not handled: the nack puts it back behind the failed one.
   * Stops early when the consumer aborts.
   */
  private async runHandlers(messages: ClaimedMessage[], tx: LazyTransaction): Promise<{ done: ClaimedMessage[]; failed: Failure[] }> {
    const done: ClaimedMessage[] = [];
    const failed: Failure[] = [];
    const failedKeys = new Set<string>();
    for (const m of messages) {
      if (this.rt.abort.signal.aborted) break;
      if (m.key !== null && failedKeys.has(m.key)) continue;
      try {
        await this.runHandler(tx, m);
        done.push(m);
      } catch (err) {
        if (err instanceof TransactionLostError) {
          failed.push({ m, err }); // the batch's transaction is gone: settle() closes it
          break;
        }
        await tx.rollbackMessage();
        // Aborted by a stop that ran out of time: not a failed attempt, so no nack (no
        // attempt used, no backoff). leave() voids its lease uncounted; a locked batch
        // commits without it, which unlocks it uncounted too.
        if (this.stoppedBy(err)) break;
        failed.push({ m, err });
        if (m.key !== null) failedKeys.add(m.key);
      }
    }
    return { done, failed };
  }

  /**
   * Runs the handler until it settles or its deadline (handlerTimeoutMs) passes, or the
   * consumer stops hard. Giving up aborts the handler's signal, cuts it off from the
   * transaction (cancelling a query it is running) and fails its message with the
   * reason: JavaScript cannot end the handler itself, but it can no longer touch the
   * transaction, and its buckets move on.
   */
  private async runHandler(tx: LazyTransaction, m: ClaimedMessage): Promise<void> {
    const { rt } = this;
    const client = tx.next();
    const done = rt.metrics?.handlerStarted(m.sentAt, m.attempt);
    // The handler's signal is made when it first reads it (most never do): an
    // AbortSignal per message (an EventTarget, costly to make and to collect), a
    // context literal and a race per message were a quarter of the worker's CPU with a
    // no-op handler (19 us a message, 13.6 without). Given up on first, it is made
    // aborted.
    let controller: AbortController | undefined;
    let givenUpWith: { reason: unknown } | undefined;
    const signal = (): AbortSignal => {
      if (!controller) {
        controller = new AbortController();
        if (givenUpWith) controller.abort(givenUpWith.reason);
      }
      return controller.signal;
    };
    // Settles with the handler, or rejects when it is given up on (timeout, hard stop),
    // whichever comes first; the first reason wins.
    let giveUp!: (reason: unknown) => void;
    const settled = new Promise<void>((resolve, reject) => {
      giveUp = (reason) => {
        givenUpWith ??= { reason };
        controller?.abort(reason);
        reject(reason);
      };
      if (rt.abort.signal.aborted) giveUp(rt.abort.signal.reason);
      const handled = (async () => rt.opts.handler(this.parsed(m), this.context(client, m, signal)))();
      // (a handler given up on may still fail later: this listens, and nobody waits)
      handled.then(() => resolve(), reject);
    });
    this.running.add(giveUp);
    const timeoutMs = this.handlerTimeoutMs;
    const timer = setTimeout(() => giveUp(new HandlerTimeoutError(m.msgId, timeoutMs)), timeoutMs);
    try {
      await settled;
    } catch (err) {
      if (givenUpWith && err === givenUpWith.reason) {
        // Given up on: nothing of it may reach the transaction from now on.
        rt.log.warn({ msgId: m.msgId, err: logged(err) }, 'handler given up on; its message fails');
        await tx.abandon((fn, pid) => this.signalBackend(fn, pid), CANCEL_WAIT_MS);
      }
      throw err;
    } finally {
      clearTimeout(timer);
      this.running.delete(giveUp);
      done?.();
    }
  }

  /** The message with its payload made by parsePayload from its JSON text (claimed as text then). */
  private parsed(m: ClaimedMessage): ClaimedMessage {
    const parse = this.rt.opts.parsePayload;
    return parse ? { ...m, payload: parse(m.payload as string) } : m;
  }

  /**
   * Cancel what a backend of ours is running (a timed-out handler's query), or end it.
   * Sent on the claim connection: the pool may be exhausted by the very handlers that hang.
   */
  private async signalBackend(fn: 'cancel' | 'terminate', pid: number): Promise<void> {
    await this.rt.claimPool.query(fn === 'cancel' ? 'select pg_cancel_backend($1)' : 'select pg_terminate_backend($1)', [pid]);
  }

  private context(client: pg.ClientBase, m: ClaimedMessage, signal: () => AbortSignal): HandlerContext {
    const { rt } = this;
    return new LazySignalContext(client, m.attempt, rt.group, rt.consumerId, rt.log, signal);
  }

  /**
   * The one way a transaction of handled messages ends. Acks what succeeded (a locked
   * batch also nacks what failed, inside its transaction) and commits; with nothing to
   * keep it rolls back. If the ack is refused, rolls back and counts the fencing; then
   * failures of leased messages are nacked, whatever became of the rest.
   */
  private async settle(e: Ending): Promise<Settled> {
    const { rt } = this;
    const { client, release } = e.conn;
    const locked = e.shape === 'locked';
    const lost = [e.broke?.err, ...e.failed.map((f) => f.err)].find((x) => x instanceof TransactionLostError);
    if (lost) {
      // A hung handler's query holds the connection: nothing more can be sent on it.
      // Closing it ends the transaction (Postgres rolls it back); leased messages are
      // nacked from the pool, locked ones are ready again with their attempt counted.
      release(lost as Error);
      rt.log.error({ err: logged(lost), messages: e.messages.length }, 'transaction lost with a hung handler; its messages will be delivered again');
      if (!locked) {
        if (e.shape === 'batch') await this.processInOrder(e.done); // their acks went with the transaction
        await this.nackLeased(e.failed);
      }
      return 'ended';
    }
    if (!e.broke && e.done.length === 0 && !locked) {
      // Nothing to acknowledge: undo whatever the failed handlers wrote.
      let broken: Error | undefined;
      if (e.tx.began) await client.query('rollback').catch((x: Error) => (broken = x));
      release(broken);
      await this.nackLeased(e.failed);
      return 'ended';
    }
    let nacked: NackResult[] = [];
    try {
      if (e.broke) throw e.broke.err;
      if (e.done.length) await ack(client, rt.group, e.done, locked ? { consumerId: rt.consumerId, strict: true } : { strict: true });
      if (locked && e.failed.length) {
        nacked = await nack(client, rt.group, this.nackItems(e.failed), {
          consumerId: rt.consumerId,
          strict: true,
        });
      }
      if (e.tx.began) await client.query('commit');
    } catch (err) {
      let broken: Error | undefined;
      if (e.tx.began) await client.query('rollback').catch((x: Error) => (broken = x));
      return this.afterRollback(e, err, broken);
    }
    release();
    rt.stats.processed += e.done.length;
    rt.metrics?.onProcessed(e.done.length);
    if (locked) this.reportNacks(e.failed, nacked);
    else await this.nackLeased(e.failed);
    return 'committed';
  }

  /** The transaction rolled back because of err: fencing, a conflict, or a real error. */
  private async afterRollback(e: Ending, err: unknown, broken: Error | undefined): Promise<Settled> {
    const { rt } = this;
    const refused = isFenced(err) || isRetryableConflict(err);
    if (e.shape === 'message') {
      if (isFenced(err)) {
        this.countFenced();
        rt.log.warn({ msgId: e.messages[0]!.msgId, bucket: e.messages[0]!.bucket, err }, 'ack refused (lease lost or fenced); effects rolled back');
        e.conn.release(broken);
        return 'ended';
      }
      if (isRetryableConflict(err) && (e.retriesLeft ?? 0) > 0) {
        e.conn.release(broken);
        return 'retry';
      }
      rt.log.error({ msgId: e.messages[0]!.msgId, err }, 'ack failed; the lease will expire and the message be delivered again');
      e.conn.release(broken ?? (err as Error));
      return 'ended';
    }
    if (!refused) {
      e.conn.release(broken ?? (err as Error));
      throw err;
    }
    this.countFenced();
    e.conn.release(broken);
    if (e.shape === 'locked') {
      // Rolled back: the messages are ready again for whoever owns their buckets.
      rt.log.warn(
        { err, msgIds: e.messages.map((m) => m.msgId) },
        'batch ack refused; effects rolled back, the messages will be delivered again',
      );
      return 'ended';
    }
    // Some lease in the batch is gone. Redo message by message: each one whose lease
    // still holds commits, the others roll back alone.
    rt.log.warn({ err, messages: e.messages.length }, 'batch ack refused; retrying message by message');
    await this.processInOrder(e.done);
    await this.nackLeased(e.failed);
    return 'ended';
  }

  private countFenced(): void {
    this.rt.stats.fenced++;
    this.rt.metrics?.onFenced();
  }

  /** Nack leased messages whose handlers failed (on the pool: their transaction is over). */
  private async nackLeased(failed: Failure[]): Promise<void> {
    const { rt } = this;
    if (failed.length === 0) return;
    try {
      const results = await nack(
        rt.pool,
        rt.group,
        this.nackItems(failed),
        { strict: false },
      );
      this.reportNacks(failed, results);
    } catch (err) {
      rt.stats.failed += failed.length;
      rt.metrics?.onFailed(failed.length);
      rt.log.error({ err }, 'nack failed; the leases will expire and the messages be delivered again');
    }
  }

  /** What nack needs per failure: its lease (null for locked messages), the error, a jittered delay. */
  private nackItems(failed: Failure[]): { msgId: string; leaseToken: string | null; error: string; retryDelay: string; permanent: boolean }[] {
    return failed.map(({ m, err }) => ({
      msgId: m.msgId,
      leaseToken: m.leaseToken,
      error: describe(err),
      retryDelay: jitteredRetryDelay(this.rt.settings, m.attempt),
      // A payload that does not match its typed topic's schema will not on a retry.
      permanent: err instanceof PayloadValidationError,
    }));
  }

  private reportNacks(failed: Failure[], results: NackResult[]): void {
    const { rt } = this;
    if (failed.length === 0) return;
    rt.stats.failed += failed.length;
    rt.metrics?.onFailed(failed.length);
    for (const r of results) {
      const f = failed.find((x) => x.m.msgId === r.msgId);
      if (r.status === 'dead') {
        rt.stats.deadLettered++;
        rt.metrics?.onDeadLettered();
        rt.log.error({ msgId: r.msgId, attempt: f?.m.attempt, err: logged(f?.err) }, 'message dead-lettered');
      } else if (r.status === 'retry') {
        rt.metrics?.onRetried();
        if (r.retryAt) rt.wakeup.wakeAt(r.retryAt);
        rt.log.warn({ msgId: r.msgId, attempt: f?.m.attempt, retryAt: r.retryAt, err: logged(f?.err) }, 'handler failed; will retry');
      } else if (r.status === 'stale') {
        // The lease ran out first (a handler outliving it, a paused process): the
        // message is someone else's now, and its new owner delivers it.
        rt.log.warn({ msgId: r.msgId, attempt: f?.m.attempt, err: logged(f?.err) }, 'nack refused (lease lost or fenced); the message will be delivered again');
      }
    }
  }
}

/** A handler's context whose signal is made on first read (a class: one shape for every message). */
class LazySignalContext implements HandlerContext {
  constructor(
    readonly client: pg.ClientBase,
    readonly attempt: number,
    readonly group: string,
    readonly consumerId: string,
    readonly log: HandlerContext['log'],
    private readonly makeSignal: () => AbortSignal,
  ) {}

  get signal(): AbortSignal {
    return this.makeSignal();
  }
}
