// The benchmark harness at a tiny size, so it cannot rot: every workload runs once for
// every system and yields a sane result. No timing assertions (figures come from
// `npm run bench`, not from tests).
import { inject, describe, expect, it } from 'vitest';
import { SIZES } from '../bench/lib/common.js';
import { runSuite, WORKLOADS, type SuiteResult } from '../bench/suite.js';
import { churnSection, resultsMarkdown, soakSection, terminalDetails } from '../bench/report.js';

describe('bench harness (tiny)', () => {
  let result: SuiteResult;

  it('runs every workload for every system', { timeout: 480_000 }, async () => {
    result = await runSuite({ adminUrl: inject('bucketqAdminUrl'), databaseSource: 'vitest', sizes: SIZES.tiny, reps: 1 });
    expect(result.workloads.map((w) => w.id)).toEqual(WORKLOADS.map((w) => w.id));
    for (const w of result.workloads) {
      const wl = WORKLOADS.find((x) => x.id === w.id)!;
      for (const subject of wl.subjects) {
        const runs = w.subjects[subject];
        expect(runs?.errors, `${w.id} / ${subject} failed`).toEqual([]);
        expect(runs?.runs, `${w.id} / ${subject}`).toHaveLength(1);
      }
    }
  });

  it('produces positive figures and zero order violations, losses and duplicates for bucketq', () => {
    expect(result).toBeDefined();
    for (const w of result.workloads) {
      for (const [subject, runs] of Object.entries(w.subjects)) {
        const m = runs!.runs[0]!.metrics;
        const primary = m[w.primary];
        // graphile-worker cannot report a failover time while a killed worker's jobs stay locked.
        if (w.id === 'failover' && subject === 'graphile-worker' && primary === null) {
          expect(m.stranded, 'graphile-worker failover without a time must have stranded jobs').toBeGreaterThan(0);
          continue;
        }
        expect(primary, `${w.id} / ${subject}: ${w.primary}`).toBeTypeOf('number');
        // Churn may reach zero (the point of issue 14). So may graphile-worker's failover time
        // when the killed worker held no job: the survivors never stopped, and their first
        // effect after the kill can land within the 0.1 ms the figure is rounded to.
        // Every other primary is a rate or a time.
        if (w.id === 'churn' || (w.id === 'failover' && subject === 'graphile-worker')) expect(primary, `${w.id} / ${subject}: ${w.primary}`).toBeGreaterThanOrEqual(0);
        else expect(primary, `${w.id} / ${subject}: ${w.primary}`).toBeGreaterThan(0);
        for (const [k, v] of Object.entries(m)) {
          if (v !== null) expect(Number.isFinite(v), `${w.id} / ${subject}: ${k} = ${v}`).toBe(true);
        }
        if (subject === 'bucketq') for (const k of w.zeroForBucketq) expect(m[k], `${w.id} / bucketq: ${k}`).toBe(0);
      }
    }
  });

  it('soaks: a reading per interval with the tables of each system, and the pin held to the end', () => {
    for (const id of ['soak', 'soak-pinned']) {
      const w = result.workloads.find((x) => x.id === id)!;
      for (const [subject, table] of [['bucketq', 'inbox'], ['graphile-worker', '_private_jobs']] as const) {
        const run = w.subjects[subject]!.runs[0]!;
        const intervals = run.extra!.intervals as { completedPerSec: number; tables: Record<string, { deadTup: number; updDel: number; tableMB: number; indexMB: number }> }[];
        expect(intervals.length, `${id} / ${subject}`).toBe(Math.round((SIZES.tiny.soak.minutes * 60) / SIZES.tiny.soak.intervalSec));
        for (const i of intervals) {
          expect(i.tables[table], `${id} / ${subject}: ${table}`).toBeDefined();
          expect(i.tables[table]!.tableMB).toBeGreaterThanOrEqual(0);
        }
        expect(run.metrics.lastOverFirst, `${id} / ${subject}`).toBeTypeOf('number');
        if (subject === 'bucketq') {
          // Partitioned tables are summed over their partitions.
          expect(intervals.at(-1)!.tables.message!.tableMB + intervals.at(-1)!.tables.message!.indexMB).toBeGreaterThan(0);
        }
        if (id === 'soak-pinned') expect(run.metrics.pinHeld, `${id} / ${subject}`).toBe(1);
      }
    }
    expect(result.figures?.[0]?.values.bucketq).toBeTypeOf('number');
    expect(result.figures?.[0]?.values['graphile-worker']).toBeTypeOf('number');
    expect(soakSection(result, false)).toContain('soak-pinned / graphile-worker');
    // Each interval has the machine's CPU beside it (Linux: /proc/stat, /proc/pressure/cpu).
    if (process.platform === 'linux') {
      const soak = result.workloads.find((x) => x.id === 'soak')!.subjects.bucketq!.runs[0]!;
      for (const r of soak.extra!.intervals as { machine: { busyPct: number; stealPct: number; processesPct: Record<string, number> } | null }[]) {
        expect(r.machine?.busyPct).toBeGreaterThan(0);
        expect(r.machine!.busyPct).toBeLessThanOrEqual(100);
        expect(r.machine!.stealPct).toBeGreaterThanOrEqual(0);
        // Postgres's backends served the workers, and this process ran them.
        expect(r.machine!.processesPct.backends).toBeGreaterThan(0);
        expect(r.machine!.processesPct['bench process']).toBeGreaterThan(0);
      }
      expect(soakSection(result, false)).toContain('CPU busy / steal / pressure %');
      expect(soakSection(result, false)).toMatch(/pg \d/);
    }
  });

  it('fan-out cost: 1, 3 and 10 groups, and the bare INSERT', () => {
    const w = result.workloads.find((x) => x.id === 'fanout-cost')!;
    for (const s of ['bucketq', 'graphile-worker'] as const) {
      const m = w.subjects[s]!.runs[0]!.metrics;
      for (const k of ['msgsPerSec_1g', 'msgsPerSec_3g', 'msgsPerSec_10g', 'groups10Over1']) expect(m[k], `${s}: ${k}`).toBeGreaterThan(0);
    }
    expect(w.subjects.bare!.runs[0]!.metrics.msgsPerSec).toBeGreaterThan(0);
  });

  it('churn: per-table breakdown from settled statistics, the key counter apart', () => {
    const w = result.workloads.find((x) => x.id === 'churn')!;
    const bq = w.subjects.bucketq!.runs[0]!;
    const tables = bq.extra!.tables as Record<string, { ins: number; upd: number; del: number }>;
    // Every message was inserted into the log once (partitions summed).
    expect(tables.message!.ins).toBe(SIZES.tiny.churn.messages);
    expect(bq.metrics).toHaveProperty('per1000_topic_key_notCounted');
    expect(bq.metrics.statsSettled).toBe(1);
    const gw = w.subjects['graphile-worker']!.runs[0]!;
    const jobs = (gw.extra!.tables as Record<string, { ins: number; del: number }>)._private_jobs!;
    expect(jobs.ins).toBe(SIZES.tiny.churn.messages);
    expect(jobs.del).toBe(SIZES.tiny.churn.messages);
    expect(churnSection(result, false)).toContain('churn / bucketq');
    expect(terminalDetails(result)).toContain('pinned against unpinned');
  });

  it('RESULTS.md keeps the other size\'s last whole suite beside a newer run of some workloads of it', () => {
    // As after the short soaks alone (09:50) following a whole short suite (09:11), then a full run.
    const some = (ids: string[], label: 'short' | 'full', at: string): SuiteResult =>
      ({ ...result, startedAt: at, sizes: { ...result.sizes, label }, workloads: result.workloads.filter((w) => ids.includes(w.id)) });
    const md = resultsMarkdown(some(['ingest', 'drain'], 'full', '3'), 'results/3-full.json', [
      { result: some(['soak', 'soak-pinned'], 'short', '2'), jsonFile: 'results/2-short.json' },
      { result: some(['ingest', 'soak', 'latency'], 'short', '1'), jsonFile: 'results/1-short.json' },
    ]);
    expect(md).toContain('## Latest short-size run\n\n2, ');
    expect(md).toContain('## Earlier short-size run, for workloads that run did not have (ingest, latency)\n\n1, ');
    // The soaks' minutes stay too.
    expect(md).toContain('### soak-pinned / bucketq: per');
  });
});
