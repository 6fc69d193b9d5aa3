// Wake-ups for the claim loop: NOTIFY on a dedicated LISTEN connection (pg-listen
// reconnects it), a poll timer as the fallback, and an explicit wake after every
// reconnect so nothing sent while we were deaf waits for the next poll.
//
// A send whose messages all went to one bucket names it in the payload ("topic:3",
// see send_batch): the next claim then looks at that bucket alone, and a consumer that
// does not own it does not claim at all. Any other wake-up (a send to several buckets,
// a batch's end, a rebalance, a retry falling due, the poll timer) claims in every
// bucket the consumer owns.
import * as pgListenModule from 'pg-listen';
import type { Options, Subscriber } from 'pg-listen';
import type pg from 'pg';
import type { Logger } from 'pino';

// pg-listen is CommonJS with `exports.default`: under ESM the function sits one level down.
type CreateSubscriber = (config: pg.ClientConfig, options?: Options) => Subscriber;
const loaded = pgListenModule as unknown as { default: CreateSubscriber | { default: CreateSubscriber } };
const createSubscriber: CreateSubscriber = typeof loaded.default === 'function' ? loaded.default : loaded.default.default;

export const NOTIFY_CHANNEL = 'bucketq';

/**
 * A notification's payload: the topic, and the bucket when the statement's messages all
 * went to one ("orders:3"; topic names have no colon). undefined for another topic.
 */
export function parseWakePayload(payload: unknown, topic: string): { bucket: number | undefined } | undefined {
  if (typeof payload !== 'string') return undefined;
  if (payload === topic) return { bucket: undefined };
  const colon = payload.lastIndexOf(':');
  if (colon < 0 || payload.slice(0, colon) !== topic) return undefined;
  const bucket = Number(payload.slice(colon + 1));
  return Number.isInteger(bucket) && bucket >= 0 ? { bucket } : { bucket: undefined };
}

export class Wakeup {
  private waiter: (() => void) | undefined;
  private pending = false;
  /**
   * What the wake-ups since the last claim asked for: some buckets, or all of them
   * (null). Starts at all: the first claim looks everywhere.
   */
  private scope: Set<number> | null = null;
  private subscriber: Subscriber | undefined;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor(private readonly log: Logger) {}

  /**
   * Start listening for sends to the topic `topic()` names. Until it names one (the
   * consumer is still reading its group's settings), every notification wakes the loop:
   * the first claim looks everywhere anyway.
   */
  async listen(connectionString: string, topic: () => string | undefined): Promise<void> {
    const subscriber = createSubscriber(
      { connectionString, keepAlive: true },
      {
        parse: (payload: string) => payload, // our payloads are topic names, not JSON
        paranoidChecking: 10_000,
        retryInterval: (attempt: number) => Math.min(5000, 100 * 2 ** attempt),
        retryTimeout: 24 * 3600 * 1000, // keep trying: the poll covers the gap meanwhile
      },
    );
    subscriber.notifications.on(NOTIFY_CHANNEL, (payload: unknown) => {
      const ours = topic();
      if (ours === undefined) return this.wake();
      const wake = parseWakePayload(payload, ours);
      if (wake === undefined) return;
      if (wake.bucket === undefined) this.wake();
      else this.wakeBuckets([wake.bucket]);
    });
    subscriber.events.on('reconnect', (attempt: number) => this.log.warn({ attempt }, 'LISTEN connection lost, reconnecting'));
    subscriber.events.on('connected', () => this.wake());
    subscriber.events.on('error', (err: Error) => this.log.error({ err }, 'LISTEN connection failed; relying on polling'));
    try {
      await subscriber.connect();
      await subscriber.listenTo(NOTIFY_CHANNEL);
    } catch (err) {
      // Closed at once: pg-listen otherwise reconnects a connection that never opened,
      // for retryTimeout (a day), and keeps the process alive.
      await subscriber.close().catch(() => {});
      throw err;
    }
    this.subscriber = subscriber;
  }

  /** Wake up and claim in every owned bucket. */
  wake(): void {
    this.scope = null;
    this.signal();
  }

  /** Wake up to claim in these buckets (none: no wake-up). */
  wakeBuckets(buckets: readonly number[]): void {
    if (buckets.length === 0) return;
    for (const b of buckets) this.scope?.add(b);
    this.signal();
  }

  /**
   * The buckets the next claim should look at, from the wake-ups since the last call:
   * those named, or undefined for all (any other wake-up, or none: a claim the loop
   * makes of its own accord, after a full one, looks everywhere).
   */
  takeScope(): number[] | undefined {
    const s = this.scope;
    this.scope = new Set();
    return s === null || s.size === 0 ? undefined : [...s].sort((a, b) => a - b);
  }

  private signal(): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w();
    } else {
      this.pending = true;
    }
  }

  /** Wake up at `at` (a retry falls due then; no NOTIFY announces it). */
  wakeAt(at: Date): void {
    const due = Math.ceil(at.getTime() / 10) * 10; // one timer per 10 ms slot
    if (this.timers.has(due)) return;
    const timer = setTimeout(() => {
      this.timers.delete(due);
      this.wake();
    }, Math.max(0, due - Date.now()) + 5);
    timer.unref();
    this.timers.set(due, timer);
  }

  /** Resolves on the next wake-up, or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.scope = null; // the poll: everywhere
        resolve();
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.wake();
    const s = this.subscriber;
    this.subscriber = undefined;
    if (s) await s.close().catch(() => {});
  }
}
