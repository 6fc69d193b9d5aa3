// Wake-ups for the claim loop: NOTIFY on a dedicated LISTEN connection (pg-listen
// reconnects it), a poll timer as the fallback, and an explicit wake after every
// reconnect so nothing sent while we were deaf waits for the next poll.
import * as pgListenModule from 'pg-listen';
import type { Options, Subscriber } from 'pg-listen';
import type pg from 'pg';
import type { Logger } from 'pino';

// pg-listen is CommonJS with `exports.default`: under ESM the function sits one level down.
type CreateSubscriber = (config: pg.ClientConfig, options?: Options) => Subscriber;
const loaded = pgListenModule as unknown as { default: CreateSubscriber | { default: CreateSubscriber } };
const createSubscriber: CreateSubscriber = typeof loaded.default === 'function' ? loaded.default : loaded.default.default;

export const NOTIFY_CHANNEL = 'bucketq';

export class Wakeup {
  private waiter: (() => void) | undefined;
  private pending = false;
  private subscriber: Subscriber | undefined;
  private readonly timers = new Map<number, NodeJS.Timeout>();

  constructor(private readonly log: Logger) {}

  /** Start listening for sends to `topic`. */
  async listen(connectionString: string, topic: string): Promise<void> {
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
      if (payload === topic) this.wake();
    });
    subscriber.events.on('reconnect', (attempt: number) => this.log.warn({ attempt }, 'LISTEN connection lost, reconnecting'));
    subscriber.events.on('connected', () => this.wake());
    subscriber.events.on('error', (err: Error) => this.log.error({ err }, 'LISTEN connection failed; relying on polling'));
    await subscriber.connect();
    await subscriber.listenTo(NOTIFY_CHANNEL);
    this.subscriber = subscriber;
  }

  wake(): void {
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
