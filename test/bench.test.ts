// The benchmark harness at a tiny size, so it cannot rot: every workload runs once for
// every system and yields a sane result. No timing assertions (figures come from
// `npm run bench`, not from tests).
import { inject, describe, expect, it } from 'vitest';
import { SIZES } from '../bench/lib/common.js';
import { runSuite, WORKLOADS, type SuiteResult } from '../bench/suite.js';

describe('bench harness (tiny)', () => {
  let result: SuiteResult;

  it('runs every workload for every system', { timeout: 240_000 }, async () => {
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
        expect(primary, `${w.id} / ${subject}: ${w.primary}`).toBeGreaterThan(0);
        for (const [k, v] of Object.entries(m)) {
          if (v !== null) expect(Number.isFinite(v), `${w.id} / ${subject}: ${k} = ${v}`).toBe(true);
        }
        if (subject === 'bucketq') for (const k of w.zeroForBucketq) expect(m[k], `${w.id} / bucketq: ${k}`).toBe(0);
      }
    }
  });
});
