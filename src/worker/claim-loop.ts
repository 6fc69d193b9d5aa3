// The claim loop: waits for work (a NOTIFY, a retry falling due, a rebalance, the poll
// timer), claims ready messages in the buckets this consumer owns and hands them to the
// batch executor, never running more than `concurrency` transactions at once.
//
// Claim modes ('batch' transactions): 'lease' writes a lease per message and commits it
// before the handlers run; 'lock' claims inside the batch's own transaction by row lock
// (nothing written); 'auto' leases while claims come back partly full and locks while
// they come back full. 'message' transactions always lease.
import { FencedError } from '../errors.js';
import { isRetryableConflict } from './failures.js';
import { beginAndClaimLocked, claim, type ClaimedMessage } from '../queries/consume.js';
import type { BatchExecutor, HeldBatch } from './batch-executor.js';
import { beginSql, checkout } from './connection.js';
import type { Membership } from './membership.js';
import type { ConsumeOptions } from './options.js';
import { runsOf } from './runs.js';
import type { Runtime } from './runtime.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const bucketsOf = (messages: readonly ClaimedMessage[]): number[] => [...new Set(messages.map((m) => m.bucket))];

/** Work in flight: the buckets it keeps claims out of (undefined: all), and whether a claim has passed over them. */
interface Holding {
  readonly buckets: number[] | undefined;
  passedOver: boolean;
}

/** Batches may hold their messages by row lock in their own transaction (claim_locked). */
export function mayClaimLocked(opts: ConsumeOptions): boolean {
  return opts.transaction === 'batch' && (opts.claimMode ?? 'auto') !== 'lease';
}

export class ClaimLoop {
  private inflightCount = 0;
  private slotFreed: (() => void) | undefined;
  /** The last claim came back full, so more is probably ready. */
  private backlog = false;
  /**
   * Work in flight, with the buckets it keeps other claims out of. A batch that ends
   * wakes the loop for its buckets only if a claim that looked in them ran while it was
   * in flight (that claim passed over them, and they may have received messages
   * meanwhile: their NOTIFY came and went), or for all if it may have held others back.
   */
  private readonly holding = new Set<Holding>();
  private loop: Promise<void> = Promise.resolve();
  /** Transactions allowed at once: concurrency, or fewer while connections are still warming. */
  private allowed: number;

  constructor(
    private readonly rt: Runtime,
    private readonly membership: Membership,
    private readonly executor: BatchExecutor,
  ) {
    this.allowed = rt.opts.concurrency;
  }

  /** Transactions (batches, or runs of messages) being handled now. */
  get inflight(): number {
    return this.inflightCount;
  }

  /**
   * While the consumer's other connections warm (warm-up.ts), run only as many
   * transactions at once as there are warm connections: one, then one more as each is
   * done, and `concurrency` once all are. Resolves then.
   */
  warming(others: Promise<void>[]): Promise<void> {
    this.allowed = 1;
    for (const warm of others) void warm.then(() => this.allow(this.allowed + 1));
    return Promise.all(others).then(() => this.allow(this.rt.opts.concurrency));
  }

  private allow(n: number): void {
    this.allowed = Math.min(this.rt.opts.concurrency, n);
    const r = this.slotFreed;
    this.slotFreed = undefined;
    r?.();
  }

  start(): void {
    this.loop = this.run().catch((err) => this.rt.log.fatal({ err }, 'claim loop crashed'));
  }

  /** Let a loop waiting for a free slot see that the consumer stops; resolves when it has ended. */
  finish(): Promise<void> {
    this.slotFreed?.();
    return this.loop;
  }

  private async run(): Promise<void> {
    const { rt } = this;
    const { opts } = rt;
    const batchSize = opts.transaction === 'batch' ? opts.batchSize : Math.min(opts.batchSize, opts.concurrency);
    while (rt.running()) {
      if (this.inflightCount >= this.allowed) {
        await new Promise<void>((r) => (this.slotFreed = r));
        continue;
      }
      if (this.membership.buckets.size === 0) {
        await rt.wakeup.wait(opts.pollIntervalMs);
        continue;
      }
      // Woken only by sends to some buckets: claim in those we own (none: nothing to do).
      // After a full claim, everywhere.
      const scope = rt.wakeup.takeScope();
      const buckets = this.backlog ? undefined : scope?.filter((b) => this.membership.buckets.has(b));
      if (buckets !== undefined && buckets.length === 0) {
        await rt.wakeup.wait(opts.pollIntervalMs);
        continue;
      }
      // Woken only for buckets whose batch is still in flight here: a claim would find
      // nothing in them (one batch per bucket at a time) and cost a round trip, often
      // _log_claim's long way, while sends to other buckets wait for it. Their batch's
      // end wakes the loop for them.
      if (buckets !== undefined && this.passOverInFlight(buckets)) {
        await rt.wakeup.wait(opts.pollIntervalMs);
        continue;
      }
      if (this.claimsLocked) {
        // Each batch claims in its own transaction, so claims can overlap: while the
        // last claim came back full (a backlog), the next starts at once; otherwise we
        // wait for its answer, and for a wake-up if it found nothing.
        const claimed = this.startLockedBatch(batchSize, buckets);
        if (!this.backlog) {
          const n = await claimed;
          if (n < batchSize) await rt.wakeup.wait(opts.pollIntervalMs);
        }
        continue;
      }
      let messages: ClaimedMessage[];
      const free = this.allowed - this.inflightCount;
      const max = opts.transaction === 'batch' ? batchSize : Math.min(batchSize, free);
      this.noteClaim(buckets);
      try {
        messages = await claim(rt.claimPool, rt.group, rt.consumerId, {
          max,
          buckets,
          leaseTimeout: opts.leaseTimeoutMs === undefined ? undefined : `${opts.leaseTimeoutMs} milliseconds`,
          maxPerKey: opts.maxPerKey ?? batchSize,
          payloadAsText: opts.parsePayload !== undefined,
        });
      } catch (err) {
        if (!rt.running()) break;
        await this.afterClaimError(err);
        continue;
      }
      this.backlog = messages.length >= batchSize;
      if (messages.length === 0) {
        await rt.wakeup.wait(opts.pollIntervalMs);
        continue;
      }
      const mayHoldBack = this.mayHoldBack(messages, max);
      if (opts.transaction === 'batch') {
        this.track(this.executor.processBatch(messages), mayHoldBack, bucketsOf(messages));
      } else {
        // A key's run is handled in order, one transaction per message; runs in parallel.
        for (const run of runsOf(messages)) this.track(this.executor.processInOrder(run), mayHoldBack, bucketsOf(run));
      }
      // A claim that came back partly full took everything it could reach: the next
      // claim waits for a wake-up (a NOTIFY, a batch's end, a retry falling due) instead of
      // coming back empty at once.
      if (messages.length < max) await rt.wakeup.wait(opts.pollIntervalMs);
    }
  }

  /**
   * Whether the end of a batch may make messages ready that no NOTIFY announces: a full
   * claim (more is waiting), retries (messages of their keys wait behind them), runs cut
   * by a max_per_key below the batch size (the rest waits behind them).
   */
  private mayHoldBack(messages: ClaimedMessage[], max: number): boolean {
    const { opts } = this.rt;
    if (messages.length >= max) return true;
    if (opts.maxPerKey !== undefined && opts.maxPerKey < max) return true;
    return messages.some((m) => m.attempt > 1);
  }

  private async afterClaimError(err: unknown): Promise<void> {
    if (err instanceof FencedError) {
      await this.membership.beat(); // our session expired: rejoin before claiming again
    } else if (isRetryableConflict(err)) {
      // A deadlock or serialization failure rolled the claim back; the other side went
      // on. Claim again soon: waiting out the poll interval stalled a FIFO run with
      // retries for a whole second (one run in five, on a deadlock between two claims'
      // row locks on the inbox).
      this.rt.log.warn({ err }, 'claim rolled back by a conflict (deadlock or serialization failure); claiming again');
      await sleep(Math.min(this.rt.opts.pollIntervalMs, 5 + Math.random() * 20));
    } else {
      this.rt.log.warn({ err }, 'claim failed; retrying');
      await sleep(Math.min(this.rt.opts.pollIntervalMs, 1000));
    }
  }

  /**
   * Whether the next claim locks: always with claimMode 'lock'; with 'auto' while the
   * last claim came back full. A lease costs a write and a commit per batch, a locked
   * claim a round trip to record its attempt: under a backlog the lease is the dearer,
   * when messages trickle in the extra round trip is latency.
   */
  private get claimsLocked(): boolean {
    if (!mayClaimLocked(this.rt.opts)) return false;
    return (this.rt.opts.claimMode ?? 'auto') === 'lock' || this.backlog;
  }

  /**
   * One batch claimed by row lock and processed, as tracked work. Resolves once the
   * claim answered: with how many messages it took (0 on error or nothing ready).
   */
  private startLockedBatch(batchSize: number, buckets: number[] | undefined): Promise<number> {
    let answered!: (n: number) => void;
    const claimed = new Promise<number>((r) => (answered = r));
    this.noteClaim(buckets);
    let mayHoldBack = true;
    let release: (() => void) | undefined;
    this.track(
      (async () => {
        let held: HeldBatch;
        try {
          held = await this.beginLockedClaim(batchSize, buckets);
        } catch (err) {
          this.backlog = false;
          answered(0);
          if (this.rt.running()) await this.afterClaimError(err);
          return;
        }
        const n = held.claim.messages.length;
        // An empty claim has committed already: claims the loop starts from now on do
        // not run while it holds its buckets' cursors.
        if (n === 0) release?.();
        this.backlog = n >= batchSize;
        answered(n);
        // An empty claim holds nothing back: waking the loop for it made an idle consumer
        // in 'lock' mode claim in a loop (some 1,700 claims a second).
        mayHoldBack = n > 0 && this.mayHoldBack(held.claim.messages, batchSize);
        // A batch that rolled back (a conflict at its ack or commit, a lost connection)
        // left its messages ready again, announced by nothing: claim at once rather than
        // at the next poll.
        if (n > 0 && (await this.executor.processLockedBatch(held))) mayHoldBack = true;
      })(),
      () => mayHoldBack,
      // (its transaction holds the cursor rows of every bucket it looked at)
      buckets,
      (r) => (release = r),
    );
    return claimed;
  }

  /**
   * Open the batch's transaction and claim in it (one round trip). With nothing to
   * claim the transaction commits at once (claim_locked may have settled crashed
   * attempts or made retries ready: that must stay done).
   */
  private async beginLockedClaim(batchSize: number, buckets: number[] | undefined): Promise<HeldBatch> {
    const { rt } = this;
    const { client, release } = await checkout(rt);
    try {
      const claimed = await beginAndClaimLocked(client, beginSql(rt), rt.group, rt.consumerId, {
        max: batchSize,
        maxPerKey: rt.opts.maxPerKey ?? batchSize,
        buckets,
        payloadAsText: rt.opts.parsePayload !== undefined,
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

  /**
   * If every one of `buckets` has a batch of its own in flight (not one that holds all
   * buckets: a locked claim of every bucket), mark those batches as passed over (their
   * end wakes the loop for their buckets) and return true; else change nothing.
   */
  private passOverInFlight(buckets: readonly number[]): boolean {
    const held: Holding[] = [];
    for (const b of buckets) {
      const h = [...this.holding].filter((x) => x.buckets?.includes(b));
      if (h.length === 0) return false;
      held.push(...h);
    }
    for (const h of held) h.passedOver = true;
    return true;
  }

  /** A claim starts: it passes over the buckets of work in flight that it looks in. */
  private noteClaim(scope: number[] | undefined): void {
    for (const h of this.holding) {
      if (h.buckets === undefined || scope === undefined || scope.some((b) => h.buckets!.includes(b))) h.passedOver = true;
    }
  }

  /**
   * Count work in flight until it ends; its end frees a slot and wakes the loop.
   * buckets: those it keeps other claims out of (undefined: all). onRelease gets a
   * function to call if it lets go of them before its end (an empty locked claim
   * commits at once).
   */
  private track(
    work: Promise<void>,
    mayHoldBack: boolean | (() => boolean),
    buckets: number[] | undefined,
    onRelease?: (release: () => void) => void,
  ): void {
    this.inflightCount++;
    const holding: Holding = { buckets, passedOver: false };
    this.holding.add(holding);
    onRelease?.(() => this.holding.delete(holding));
    let failed = false;
    void work
      .catch((err) => {
        failed = true;
        this.rt.log.error({ err }, 'unexpected error processing messages');
      })
      .finally(() => {
        this.inflightCount--;
        this.holding.delete(holding);
        const r = this.slotFreed;
        this.slotFreed = undefined;
        r?.();
        // An ack may have made the key's next message ready (anywhere: claim in every
        // bucket), or its buckets free for messages a claim passed over while the batch
        // was in flight (claim in those).
        const holds = typeof mayHoldBack === 'function' ? mayHoldBack() : mayHoldBack;
        if (failed || holds || (holding.passedOver && buckets === undefined)) this.rt.wakeup.wake();
        else if (holding.passedOver) this.rt.wakeup.wakeBuckets(buckets!);
      });
  }
}
