// What every workload needs from a queue system.
import type pg from 'pg';

export type SystemName = 'bucketq' | 'graphile-worker';

/** One message. `payload` carries the key and per-key sequence too, so both systems see the same width. */
export interface BenchMessage {
  key: string | null;
  payload: BenchPayload;
}
export interface BenchPayload {
  k: string | null;
  s: number;
  d: string;
}

export type BenchHandler = (payload: BenchPayload) => void | Promise<void>;

export interface RunningWorkers {
  stop(): Promise<void>;
}

export interface SystemSetup {
  /** bucketq: consumer groups on the topic; graphile-worker: task identifiers (one job per message per group). */
  groups: string[];
  /** graphile-worker: put keyed messages in the job queue named after the key (serial per key). */
  fifo?: boolean;
}

export interface QueueSystem {
  readonly name: SystemName;
  /** Connection string of the system's database. */
  readonly url: string;
  /** Recorded in the results: every option that shapes the figures. */
  readonly options: Record<string, unknown>;
  setup(s: SystemSetup): Promise<void>;
  /** One statement for the whole batch (autocommit, or inside `client`'s transaction). */
  sendBatch(msgs: BenchMessage[], client?: pg.ClientBase): Promise<void>;
  /** One message, one transaction. */
  sendOne(msg: BenchMessage): Promise<void>;
  /** In-process workers: one handler per group. */
  consume(handlers: Record<string, BenchHandler>): Promise<RunningWorkers>;
  /** Messages (jobs) not yet completed, all groups. */
  backlog(): Promise<number>;
  /**
   * backlog() === 0, as cheaply as the system can tell: what a drain's end is polled
   * with (every 20 to 50 ms while the workers run, so on the measured machine).
   */
  caughtUp(): Promise<boolean>;
  /** A client of the system's own pool (caller releases it). */
  connect(): Promise<pg.PoolClient>;
  close(): Promise<void>;
}

export const PAD = 'x'.repeat(96);
export const message = (key: string | null, seq: number): BenchMessage => ({ key, payload: { k: key, s: seq, d: PAD } });
