// Workload 4: a steady rate of single sends, one transaction each; latency from the
// send's commit (its promise resolving) to the handler starting, in the same process.
import { now, percentile, round, sleep, throughputKey, waitFor, withSystem, type RunContext, type RunResult, type Subject, type Workload } from '../lib/common.js';
import { PAD } from '../systems/types.js';
import type { BucketqBenchOptions } from '../systems/bucketq.js';

export const latency: Workload = {
  id: 'latency',
  title: 'Latency at a steady rate (send commit -> handler start)',
  primary: 'p50Ms',
  unit: 'ms',
  higherIsBetter: false,
  subjects: ['bucketq', 'graphile-worker'],
  run: (subject, ctx) => runLatency(subject, ctx),
};

/**
 * The same on a topic of 256 buckets, all owned by the one consumer: each wake-up's
 * claim has 256 buckets to consider for the one that was sent to (claims skip those
 * their session last found idle and nothing was sent to since: _log_quiet). bucketq
 * only; figure: latency-256 / latency (p50).
 */
export const WIDE_BUCKETS = 256;
export const latencyWide: Workload = {
  id: 'latency-256',
  title: `Latency at a steady rate on a topic of ${WIDE_BUCKETS} buckets (one consumer owns them all)`,
  primary: 'p50Ms',
  unit: 'ms',
  higherIsBetter: false,
  subjects: ['bucketq'],
  run: (subject, ctx) => runLatency(subject, ctx, { buckets: WIDE_BUCKETS }),
};

/**
 * The same on a cluster of many topics a week old: 30 other topics, each with a week of
 * daily partitions (empty), beside the measured one. A claim's generic plans over the
 * whole log would lock and prune every topic's partitions (some 280) at each call; each
 * topic's own copy of the claim path reads only its own. bucketq only; figure:
 * latency-topics / latency (p50).
 */
export const OTHER_TOPICS = 30;
export const latencyTopics: Workload = {
  id: 'latency-topics',
  title: `Latency at a steady rate beside ${OTHER_TOPICS} other topics a week old (7 daily partitions each)`,
  primary: 'p50Ms',
  unit: 'ms',
  higherIsBetter: false,
  subjects: ['bucketq'],
  run: (subject, ctx) => runLatency(subject, ctx, { otherTopics: OTHER_TOPICS, otherTopicDays: 7 }),
};

function runLatency(subject: Subject, ctx: RunContext, bq: Partial<BucketqBenchOptions> = {}): Promise<RunResult> {
  const { seconds, rate } = ctx.sizes.latency;
  // The first second is a warm-up at the same rate, for both systems: connections'
  // first statements (plan caches, PL/pgSQL compilation) are not steady-state latency.
  const warmup = rate;
  const total = Math.round(seconds * rate) + warmup;
  return withSystem(subject, ctx, { groups: ['g1'] }, async (sys) => {
    const committed = new Float64Array(total).fill(NaN);
    const started = new Float64Array(total).fill(NaN);
    let handled = 0;
    const workers = await sys.consume({
      g1: (p) => {
        started[p.s] = now();
        handled++;
      },
    });
    await sleep(300); // let the workers settle (join, first empty claim, LISTEN)
    let inflight = 0;
    let maxInflight = 0;
    const sends: Promise<void>[] = [];
    const t0 = now();
    const interval = 1000 / rate;
    for (let i = 0; i < total; i++) {
      // Timers only (sends start within about 1 ms of their slot; the latency is
      // measured from each send's own commit): a busy-wait here burned a core of the
      // 2 and allocated some 250 MB/s of promises in the process whose consumers are
      // measured, which added about 0.5 ms to the p95 of both systems' handlers.
      const due = t0 + i * interval;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      inflight++;
      maxInflight = Math.max(maxInflight, inflight);
      const key = throughputKey(subject, `k${i % ctx.sizes.keys}`);
      sends.push(
        sys.sendOne({ key, payload: { k: key, s: i, d: PAD } }).then(() => {
          committed[i] = now();
          inflight--;
        }),
      );
      if (i % 50 === 0) ctx.progress(`${i}/${total} sent, ${handled} handled`);
    }
    await Promise.all(sends);
    const achievedRate = (total / (now() - t0)) * 1000;
    await waitFor('all latency messages handled', () => handled >= total, 30_000);
    await workers.stop();
    const lat: number[] = [];
    let negative = 0;
    for (let i = warmup; i < total; i++) {
      const d = started[i]! - committed[i]!;
      if (d < 0) negative++;
      lat.push(Math.max(0, d));
    }
    lat.sort((a, b) => a - b);
    return {
      metrics: {
        p50Ms: round(percentile(lat, 50)!, 3),
        p95Ms: round(percentile(lat, 95)!, 3),
        p99Ms: round(percentile(lat, 99)!, 3),
        maxMs: round(lat[lat.length - 1]!, 3),
        achievedRate: round(achievedRate, 1),
        handlerBeforeCommitSeen: negative,
      },
      extra: { rate, seconds, warmupMessages: warmup, maxInflightSends: maxInflight, ...bq },
    };
  }, bq);
}
