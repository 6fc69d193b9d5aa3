// Shared types and helpers for the workloads.
import { performance } from 'node:perf_hooks';
import { BucketqSystem, BUCKETQ_DEFAULTS, type BucketqBenchOptions } from '../systems/bucketq.js';
import { GraphileSystem, GRAPHILE_DEFAULTS, type GraphileBenchOptions } from '../systems/graphile.js';
import type { QueueSystem, SystemSetup } from '../systems/types.js';
import { freshDatabase, functionStats, WaitSampler, type BenchDatabase, type FunctionStat } from './db.js';

export type Subject = 'bucketq' | 'graphile-worker' | 'bare';

export interface Sizes {
  label: 'tiny' | 'short' | 'full';
  ingest: { messages: number; batch: number };
  /** ingest-single: messages sent one statement each. */
  ingestSingle: { messages: number };
  drain: { messages: number; sendBatch: number };
  e2e: { seconds: number; warmupSeconds: number; producerBatch: number; producers: number };
  latency: { seconds: number; rate: number };
  fifo: { keys: number; perKey: number; failEvery: number };
  hotkey: { messages: number };
  fanout: { messages: number; groups: number };
  scaling: { messages: number; workers: number[] };
  failover: { sessionTimeoutMs: number; rate: number; warmupMs: number; windowMs: number };
  /** minutes: --soak-minutes overrides; intervalSec: one reading per interval (60: per minute). */
  soak: { minutes: number; intervalSec: number; warmupSeconds: number; producers: number; producerBatch: number; maxBacklog: number };
  fanoutCost: { messages: number; batch: number; groups: number[] };
  churn: { messages: number; batch: number; workers: number; maxBacklog?: number };
  keys: number;
  /** FIFO and hot-key drains stop here and report the rate so far. */
  maxDrainMs: number;
}

export const SIZES: Record<Sizes['label'], Sizes> = {
  tiny: {
    label: 'tiny',
    ingest: { messages: 400, batch: 100 },
    ingestSingle: { messages: 100 },
    drain: { messages: 400, sendBatch: 200 },
    e2e: { seconds: 1, warmupSeconds: 0.3, producerBatch: 50, producers: 1 },
    latency: { seconds: 1, rate: 200 },
    fifo: { keys: 20, perKey: 10, failEvery: 4 },
    hotkey: { messages: 200 },
    fanout: { messages: 200, groups: 3 },
    scaling: { messages: 400, workers: [1, 2] },
    failover: { sessionTimeoutMs: 1000, rate: 200, warmupMs: 800, windowMs: 10_000 },
    soak: { minutes: 0.05, intervalSec: 1, warmupSeconds: 0.3, producers: 1, producerBatch: 50, maxBacklog: 2000 },
    fanoutCost: { messages: 400, batch: 100, groups: [1, 3, 10] },
    churn: { messages: 1000, batch: 500, workers: 2 },
    keys: 50,
    maxDrainMs: 3000,
  },
  short: {
    label: 'short',
    ingest: { messages: 50_000, batch: 1000 },
    ingestSingle: { messages: 5_000 },
    drain: { messages: 20_000, sendBatch: 2000 },
    e2e: { seconds: 8, warmupSeconds: 2, producerBatch: 100, producers: 2 },
    latency: { seconds: 8, rate: 500 },
    fifo: { keys: 200, perKey: 20, failEvery: 7 },
    // 20,000: bucketq drained 5,000 in 0.55 s, 0.12 to 0.15 s of it before the first
    // message was handled (the worker's start: connections, their warm-up, join); at
    // 50,000 it ran at 18,000 to 22,000 msg/s. graphile-worker is cut at maxDrainMs.
    hotkey: { messages: 20_000 },
    fanout: { messages: 10_000, groups: 3 },
    // 40,000: a drain of 10,000 took bucketq's 4 processes 0.4 s, too short to tell them apart.
    scaling: { messages: 40_000, workers: [1, 2, 4] },
    failover: { sessionTimeoutMs: 2000, rate: 300, warmupMs: 2000, windowMs: 10_000 },
    soak: { minutes: 2, intervalSec: 60, warmupSeconds: 5, producers: 2, producerBatch: 100, maxBacklog: 20_000 },
    fanoutCost: { messages: 30_000, batch: 1000, groups: [1, 3, 10] },
    churn: { messages: 20_000, batch: 500, workers: 2 },
    keys: 1000,
    maxDrainMs: 10_000,
  },
  full: {
    label: 'full',
    ingest: { messages: 200_000, batch: 1000 },
    ingestSingle: { messages: 20_000 },
    drain: { messages: 100_000, sendBatch: 2000 },
    e2e: { seconds: 30, warmupSeconds: 5, producerBatch: 100, producers: 2 },
    latency: { seconds: 30, rate: 500 },
    fifo: { keys: 1000, perKey: 50, failEvery: 10 },
    hotkey: { messages: 50_000 },
    fanout: { messages: 50_000, groups: 3 },
    scaling: { messages: 100_000, workers: [1, 2, 4] },
    failover: { sessionTimeoutMs: 3000, rate: 500, warmupMs: 3000, windowMs: 20_000 },
    soak: { minutes: 10, intervalSec: 60, warmupSeconds: 5, producers: 2, producerBatch: 100, maxBacklog: 50_000 },
    fanoutCost: { messages: 100_000, batch: 1000, groups: [1, 3, 10] },
    churn: { messages: 100_000, batch: 500, workers: 2 },
    keys: 1000,
    maxDrainMs: 60_000,
  },
};

export interface RunContext {
  adminUrl: string;
  sizes: Sizes;
  /** A line for the progress display. */
  progress(detail: string): void;
}

/** What one (workload, subject, repetition) produced. `metrics[primary]` feeds the table. */
export interface RunResult {
  metrics: Record<string, number | null>;
  extra?: Record<string, unknown>;
  waits?: Record<string, number>;
  functions?: FunctionStat[];
}

export interface Workload {
  id: string;
  title: string;
  /** The metric shown in the table and used for ratios. */
  primary: string;
  unit: string;
  higherIsBetter: boolean;
  subjects: Subject[];
  /** Metrics that must be exactly zero for bucketq (checked by the harness test). */
  zeroForBucketq?: string[];
  /** At most this many repetitions per suite run, whatever --reps says (the soaks take minutes). */
  maxReps?: number;
  run(subject: Subject, ctx: RunContext): Promise<RunResult>;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = () => performance.now();

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 5): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!(await cond())) {
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const round = (x: number, digits = 0) => Math.round(x * 10 ** digits) / 10 ** digits;

export function makeSystem(
  subject: 'bucketq' | 'graphile-worker',
  url: string,
  bq: Partial<BucketqBenchOptions> = {},
  gw: Partial<GraphileBenchOptions> = {},
): QueueSystem {
  return subject === 'bucketq' ? new BucketqSystem(url, { ...BUCKETQ_DEFAULTS, ...bq }) : new GraphileSystem(url, { ...GRAPHILE_DEFAULTS, ...gw });
}

/**
 * A fresh database for the subject, the system set up in it, a wait-event sampler
 * running, and function statistics collected at the end.
 */
export async function withSystem(
  subject: Subject,
  ctx: RunContext,
  setup: SystemSetup,
  fn: (sys: QueueSystem, db: BenchDatabase) => Promise<RunResult>,
  bq: Partial<BucketqBenchOptions> = {},
  gw: Partial<GraphileBenchOptions> = {},
): Promise<RunResult> {
  if (subject === 'bare') throw new Error('the bare baseline has no queue system');
  const db = await freshDatabase(ctx.adminUrl, subject === 'bucketq' ? 'bucketq' : 'graphile');
  const sys = makeSystem(subject, db.url, bq, gw);
  try {
    await sys.setup(setup);
    const result = await fn(sys, db);
    await sys.close();
    // Function statistics need a second to flush; not worth it at the tiny size.
    if (ctx.sizes.label !== 'tiny') result.functions ??= await functionStats(db.url).catch(() => []);
    result.extra = { ...result.extra, options: sys.options };
    return result;
  } finally {
    await sys.close().catch(() => {});
    await db.drop();
  }
}

/** Samples wait events in `db` while fn runs. */
export async function sampled<T>(ctx: RunContext, db: BenchDatabase, fn: () => Promise<T>): Promise<{ value: T; waits: Record<string, number> }> {
  const s = new WaitSampler(ctx.adminUrl, db.name);
  await s.start();
  try {
    const value = await fn();
    return { value, waits: await s.stop() };
  } catch (err) {
    await s.stop();
    throw err;
  }
}

/** keys x perKey messages, round-robin over keys so each key's sequence ascends. */
export function keyedMessages(total: number, keys: number, offset = 0) {
  const seq = new Map<string, number>();
  const out = [];
  for (let i = 0; i < total; i++) {
    const key = `k${(offset + i) % keys}`;
    const s = (seq.get(key) ?? 0) + 1;
    seq.set(key, s);
    out.push({ key, payload: { k: key, s, d: 'x'.repeat(96) } });
  }
  return out;
}

/** The key each subject uses in throughput workloads: bucketq keyed (its normal use), graphile-worker plain jobs (its fastest). */
export function throughputKey(subject: Subject, key: string): string | null {
  return subject === 'bucketq' ? key : null;
}

export function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

/**
 * Per-key order checker for handlers: a message must start after the previous one of
 * its key (seq + 1) and while no other message of its key is in flight.
 */
export class OrderChecker {
  private last = new Map<string, number>();
  private inflight = new Set<string>();
  violations = 0;
  outOfOrder = 0;
  overlapping = 0;
  /**
   * Of outOfOrder: a message at or below the highest seq its key had reached, so handled
   * again from an earlier point. A batch that rolled back (or a lease that expired) is
   * handled again like this, its effects undone; a second batch of the key running ahead
   * of an uncommitted first looks the same here, so this stays a violation.
   */
  repeated = 0;
  seen = 0;
  /** fail: this attempt throws after its start was checked (a retry must come before the key's next message). */
  async handle(key: string | null, seq: number, fail = false): Promise<void> {
    this.seen++;
    if (key === null) return;
    const prev = this.last.get(key) ?? 0;
    if (seq !== prev + 1) {
      this.violations++;
      this.outOfOrder++;
      if (seq <= prev) this.repeated++;
    }
    if (seq > prev) this.last.set(key, seq);
    if (this.inflight.has(key)) {
      this.violations++;
      this.overlapping++;
    }
    this.inflight.add(key);
    // Yield once, so that two messages of one key running at the same time would overlap here.
    await new Promise((r) => setImmediate(r));
    this.inflight.delete(key);
    if (fail) {
      if (this.last.get(key) === seq) this.last.set(key, seq - 1);
      throw new Error(`injected failure: key ${key} seq ${seq}`);
    }
  }
}
