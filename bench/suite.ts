// Runs the workloads: for each workload, `reps` rounds; in each round every subject
// once, in an order that rotates between rounds (interleaved), each in a fresh database.
import os from 'node:os';
import { SIZES, type RunContext, type RunResult, type Sizes, type Subject, type Workload } from './lib/common.js';
import { buildTemplates, dropTemplates, machineInfo, serverSettings, withAdmin } from './lib/db.js';
import { BUCKETQ_DEFAULTS } from './systems/bucketq.js';
import { GRAPHILE_DEFAULTS, GRAPHILE_FIFO_CONFIGS, GRAPHILE_VERSION } from './systems/graphile.js';
import { BARE_OPTIONS } from './baseline.js';
import { drain } from './workloads/drain.js';
import { e2e, e2eAged, e2eUnkeyed } from './workloads/e2e.js';
import { failover } from './workloads/failover.js';
import { fanout } from './workloads/fanout.js';
import { fifo, fifoRetry } from './workloads/fifo.js';
import { hotkey } from './workloads/hotkey.js';
import { ingest, ingestFloor, ingestSingle, ingestUnkeyed } from './workloads/ingest.js';
import { latency, latencyTopics, latencyWide } from './workloads/latency.js';
import { scaling } from './workloads/scaling.js';
import { soak, soakPinned } from './workloads/soak.js';
import { fanoutCost } from './workloads/fanout-cost.js';
import { churn } from './workloads/churn.js';
import { crossFigures, type CrossFigure } from './figures.js';

export const WORKLOADS: Workload[] = [ingest, ingestUnkeyed, ingestFloor, ingestSingle, drain, e2e, e2eAged, e2eUnkeyed, latency, latencyWide, latencyTopics, fifo, fifoRetry, hotkey, fanout, scaling, failover, fanoutCost, churn, soak, soakPinned];

export interface SubjectRuns {
  runs: RunResult[];
  errors: string[];
}

export interface WorkloadResult {
  id: string;
  title: string;
  primary: string;
  unit: string;
  higherIsBetter: boolean;
  zeroForBucketq: string[];
  subjects: Partial<Record<Subject, SubjectRuns>>;
}

export interface SuiteResult {
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  sizes: Sizes;
  reps: number;
  machine: ReturnType<typeof machineInfo>;
  postgres: Record<string, string>;
  databaseSource: string;
  systems: Record<string, unknown>;
  workloads: WorkloadResult[];
  /** Figures across workloads (soak pinned against unpinned), from the medians. */
  figures?: CrossFigure[];
}

export interface SuiteOptions {
  adminUrl: string;
  databaseSource: string;
  sizes?: Sizes;
  reps?: number;
  only?: string[];
  /** Run only these subjects (a trial: ratios need both systems, so saved runs keep all). */
  subjects?: Subject[];
  /** Progress line: [step/steps] workload subject rep: detail */
  onProgress?: (line: string) => void;
  /** Called after each run with a summary line. */
  onRun?: (line: string) => void;
}

export async function runSuite(o: SuiteOptions): Promise<SuiteResult> {
  const sizes = o.sizes ?? SIZES.short;
  const reps = o.reps ?? 3;
  const unknown = (o.only ?? []).filter((id) => !WORKLOADS.some((w) => w.id === id));
  if (unknown.length) throw new Error(`unknown workload(s) ${unknown.join(', ')}; known: ${WORKLOADS.map((w) => w.id).join(', ')}`);
  const selected = o.only?.length ? WORKLOADS.filter((w) => o.only!.includes(w.id)) : WORKLOADS;
  const started = new Date();
  const machine = machineInfo();
  const postgres = await serverSettings(o.adminUrl);
  await buildTemplates(o.adminUrl);
  const repsOf = (w: Workload) => Math.min(reps, w.maxReps ?? reps);
  const runsOf = (w: Workload) => w.subjects.filter((s) => !o.subjects?.length || o.subjects.includes(s)).length;
  const totalSteps = selected.reduce((n, w) => n + runsOf(w) * repsOf(w), 0);
  let step = 0;
  const results: WorkloadResult[] = [];
  try {
    for (const w of selected) {
      const wr: WorkloadResult = {
        id: w.id,
        title: w.title,
        primary: w.primary,
        unit: w.unit,
        higherIsBetter: w.higherIsBetter,
        zeroForBucketq: w.zeroForBucketq ?? [],
        subjects: {},
      };
      const wReps = repsOf(w);
      for (let rep = 0; rep < wReps; rep++) {
        const order = rotate(w.subjects, rep).filter((s) => !o.subjects?.length || o.subjects.includes(s));
        for (const subject of order) {
          step++;
          const prefix = `[${step}/${totalSteps}] ${w.id} ${subject} rep ${rep + 1}/${wReps}`;
          const ctx: RunContext = { adminUrl: o.adminUrl, sizes, progress: (d) => o.onProgress?.(`${prefix}: ${d}`) };
          o.onProgress?.(`${prefix}: starting`);
          const slot = (wr.subjects[subject] ??= { runs: [], errors: [] });
          try {
            await settle(o.adminUrl);
            const r = await w.run(subject, ctx);
            slot.runs.push(r);
            o.onRun?.(`${prefix}: ${w.primary} = ${fmt(r.metrics[w.primary])} ${w.unit}`);
          } catch (err) {
            const msg = err instanceof Error ? err.stack ?? err.message : String(err);
            slot.errors.push(msg);
            o.onRun?.(`${prefix}: FAILED ${msg.split('\n')[0]}`);
          }
        }
      }
      results.push(wr);
    }
  } finally {
    await dropTemplates(o.adminUrl).catch(() => {});
  }
  const finished = new Date();
  machine.loadavgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  return {
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSec: Math.round((finished.getTime() - started.getTime()) / 1000),
    sizes,
    reps,
    machine,
    postgres,
    databaseSource: o.databaseSource,
    systems: {
      bucketq: { ...BUCKETQ_DEFAULTS, keys: 'keyed messages in every workload', processWorkers: 'bucketq worker CLI (node --import tsx src/cli.ts worker)' },
      'graphile-worker': {
        version: GRAPHILE_VERSION,
        ...GRAPHILE_DEFAULTS,
        keys: 'plain jobs (no queue name) except fifo, fifo-retry and hotkey, where the key is the job queue name',
        fifoConfigs: GRAPHILE_FIFO_CONFIGS,
      },
      bare: BARE_OPTIONS,
    },
    workloads: results,
    figures: crossFigures(results),
  };
}

/**
 * Every run starts from a clean server: a CHECKPOINT writes out what earlier runs left
 * dirty, so that no run pays for the writes of the one before it (measured: bucketq's
 * latency p50 0.44 ms alone, 0.84 ms right after the full drain and e2e runs). Needs
 * superuser or pg_checkpoint; without, runs go on unsettled.
 */
async function settle(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, (c) => c.query('checkpoint')).catch(() => {});
}

function rotate<T>(xs: T[], n: number): T[] {
  const k = n % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
