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
  const soak = by('soak');
  const pinned = by('soak-pinned');
  if (soak && pinned) {
    const values: CrossFigure['values'] = {};
    for (const s of ['bucketq', 'graphile-worker'] as const) {
      const a = median(pinned, s, 'completedPerSec');
      const b = median(soak, s, 'completedPerSec');
      values[s] = a !== null && b !== null && b !== 0 ? a / b : null;
    }
    out.push({ figure: 'soak-pinned / soak: completedPerSec, pinned against unpinned', values, target: { text: '>= 0.9x', min: 0.9 } });
  }
  const e2e = by('e2e');
  const aged = by('e2e-aged');
  if (e2e && aged) {
    const values: CrossFigure['values'] = {};
    for (const s of ['bucketq', 'graphile-worker'] as const) {
      const a = median(aged, s, 'completedPerSec');
      const b = median(e2e, s, 'completedPerSec');
      values[s] = a !== null && b !== null && b !== 0 ? a / b : null;
    }
    out.push({ figure: 'e2e-aged / e2e: completedPerSec, a week-old topic against a new one', values, target: { text: '>= 0.9x', min: 0.9 } });
  }
  return out;
}
