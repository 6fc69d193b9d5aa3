// Lobby and ownership: join the group, heartbeat (each heartbeat is also the rebalance:
// it claims this consumer's fair share and releases its surplus), leave. Keeps the
// buckets owned now with their epochs; a change wakes the claim loop, since a gained
// bucket may hold ready messages that no NOTIFY will announce.
import { hostname } from 'node:os';
import { FencedError } from '../errors.js';
import { heartbeat, join, leave, type OwnedBucket } from '../queries/lobby.js';
import type { Runtime } from './runtime.js';

export class Membership {
  private owned = new Map<number, string>(); // bucket -> epoch
  private timer: NodeJS.Timeout | undefined;
  /** The heartbeat in flight, kept so that stop() can wait for it before leaving. */
  private ticking: Promise<void> = Promise.resolve();
  /** Joined once; /health reports ready from then until the consumer stops. */
  joined = false;

  // Nothing else rides on the heartbeat's timer: whatever waits on it delays the next
  // beat, and a session that misses its timeout loses its buckets (periodic.ts).
  constructor(private readonly rt: Runtime) {}

  /** Buckets owned now, with their epochs. */
  get buckets(): ReadonlyMap<number, string> {
    return this.owned;
  }

  async join(): Promise<void> {
    const { rt } = this;
    this.apply(await join(rt.pool, rt.group, rt.consumerId, rt.opts.meta ?? { host: hostname(), pid: process.pid }));
    this.joined = true;
    rt.log.info({ consumerId: rt.consumerId, buckets: [...this.owned.keys()] }, 'joined group');
  }

  /** Heartbeat every intervalMs until stopHeartbeat(). */
  startHeartbeat(intervalMs: number): void {
    const tick = async () => {
      if (!this.rt.running()) return;
      await this.beat();
      if (this.rt.running()) schedule();
    };
    const schedule = () => {
      this.timer = setTimeout(() => (this.ticking = tick()), intervalMs);
    };
    schedule();
  }

  /** No more heartbeats; resolves once the one in flight (if any) has finished. */
  async stopHeartbeat(): Promise<void> {
    clearTimeout(this.timer);
    // A heartbeat after the leave would find us gone: wait for it.
    await this.ticking.catch(() => {});
  }

  /** One heartbeat now (also when a claim finds our session expired). */
  async beat(): Promise<void> {
    const { rt } = this;
    try {
      this.apply(await heartbeat(rt.pool, rt.group, rt.consumerId));
    } catch (err) {
      if (err instanceof FencedError) {
        if (!rt.running()) return; // stopping: our own leave may have come first
        // Not a member any more (removed after a long pause): start a new session.
        rt.log.warn({ err }, 'no longer a member of the group; joining again');
        try {
          this.apply(await join(rt.pool, rt.group, rt.consumerId, rt.opts.meta));
        } catch (joinErr) {
          rt.log.error({ err: joinErr }, 'rejoin failed; retrying on the next heartbeat');
        }
      } else {
        rt.log.warn({ err }, 'heartbeat failed; retrying on the next tick');
      }
    }
  }

  /** Release the buckets and leave the group (call after stopHeartbeat). */
  async leave(): Promise<void> {
    const { rt } = this;
    try {
      const released = await leave(rt.pool, rt.group, rt.consumerId);
      rt.log.info({ released }, 'left group');
    } catch (err) {
      rt.log.warn({ err }, 'leave failed; the buckets move after the session timeout');
    }
  }

  private apply(rows: OwnedBucket[]): void {
    const { rt } = this;
    const next = new Map(rows.map((r) => [r.bucket, r.epoch]));
    const gained = rows.filter((r) => this.owned.get(r.bucket) !== r.epoch);
    const lost = [...this.owned.keys()].filter((b) => !next.has(b));
    if (gained.length || lost.length) {
      rt.stats.rebalances++;
      rt.metrics?.onRebalance();
      rt.log.info({ gained: gained.map((r) => `${r.bucket}@${r.epoch}`), lost, owned: next.size }, 'bucket ownership changed');
      rt.wakeup.wake();
    }
    this.owned = next;
    rt.metrics?.onOwned(next.size);
  }
}
