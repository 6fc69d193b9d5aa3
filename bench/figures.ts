// Figures that compare two workloads' medians (kept in the JSON as `figures` and shown
// under the table): the pinned soak against the unpinned one, per system.
import type { Subject } from './lib/common.js';
import type { WorkloadResult } from './suite.js';

export interface CrossFigure {
  figure: string;
  /** Per system: the ratio, or null when a side is missing. */
  values: Partial<Record<Subject, number | null>>;
  /** Target for bucketq (DESIGN.md), when there is one. */
  target?: { text: string; min: number };
}

function median(w: WorkloadResult | undefined, s: Subject, metric: string): number | null {
  const xs = (w?.subjects[s]?.runs ?? []).map((r) => r.metrics[metric]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (!xs.length) return null;
  const m = Math.floor(xs.length / 2);
  return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
}

export function crossFigures(workloads: WorkloadResult[]): CrossFigure[] {
  const by = (id: string) => workloads.find((w) => w.id === id);
  const out: CrossFigure[] = [];
  /** Each system's median `metric` in workload `a` over that in `b` (target >= 0.9x unless told otherwise). */
  const ratio = (a: string, b: string, figure: string, metric = 'completedPerSec', target: CrossFigure['target'] | null = { text: '>= 0.9x', min: 0.9 }) => {
    const wa = by(a);
    const wb = by(b);
    if (!wa || !wb) return;
    const values: CrossFigure['values'] = {};
    for (const s of ['bucketq', 'graphile-worker'] as const) {
      if (!wa.subjects[s] || !wb.subjects[s]) continue;
      const x = median(wa, s, metric);
      const y = median(wb, s, metric);
      values[s] = x !== null && y !== null && y !== 0 ? x / y : null;
    }
    out.push({ figure, values, ...(target ? { target } : {}) });
  };
  ratio('soak-pinned', 'soak', 'soak-pinned / soak: completedPerSec, pinned against unpinned');
  ratio('e2e-aged', 'e2e', 'e2e-aged / e2e: completedPerSec, a week-old topic against a new one');
  // What bucketq's per-key counter costs (no target: DESIGN.md's are on the keyed runs).
  ratio('ingest', 'ingest-unkeyed', 'ingest / ingest-unkeyed: msgsPerSec, keyed sends against unkeyed ones', 'msgsPerSec', null);
  ratio('latency-256', 'latency', 'latency-256 / latency: p50Ms, a topic of 256 buckets against one of 16 (lower is better)', 'p50Ms', null);
  ratio('latency-topics', 'latency', 'latency-topics / latency: p50Ms, beside 30 other topics a week old against alone (lower is better)', 'p50Ms', null);
  ratio('e2e', 'e2e-unkeyed', 'e2e / e2e-unkeyed: completedPerSec, keyed against unkeyed (graphile-worker: plain jobs both times)', 'completedPerSec', null);
  return out;
}
