// Summaries: medians and spread per metric, ratios, the terminal table, the JSON file
// per run and bench/RESULTS.md.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fmt, type SuiteResult, type WorkloadResult } from './suite.js';
import type { Subject } from './lib/common.js';

const HIDDEN = new Set(['seconds', 'handled', 'sent', 'sessionTimeoutMs']);
const atMost = (n: number) => (r: Row) => (r.stats.bucketq?.median == null ? null : r.stats.bucketq.median <= n);
const atLeast = (n: number) => (r: Row) => (r.stats.bucketq?.median == null ? null : r.stats.bucketq.median >= n);
const SUBJECTS: Subject[] = ['bucketq', 'graphile-worker', 'bare'];

export interface Stat {
  median: number | null;
  min: number | null;
  max: number | null;
  n: number;
}

export function stat(values: (number | null | undefined)[]): Stat {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return { median: null, min: null, max: null, n: 0 };
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  return { median, min: xs[0]!, max: xs[xs.length - 1]!, n: xs.length };
}

/** The targets of DESIGN.md, checked against the medians. */
const TARGETS: Record<string, { text: string; met: (r: Row) => boolean | null }> = {
  'e2e/completedPerSec': { text: '>= 2x gw', met: (r) => (r.vsGraphile === null ? null : r.vsGraphile >= 2) },
  'drain/msgsPerSec': { text: '>= 2x gw', met: (r) => (r.vsGraphile === null ? null : r.vsGraphile >= 2) },
  'fifo/msgsPerSec': { text: '>= 3x gw', met: (r) => (r.vsGraphile === null ? null : r.vsGraphile >= 3) },
  'fifo/violations': { text: '0', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max === 0) },
  'fifo-retry/violations': { text: '0', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max === 0) },
  'ingest/msgsPerSec': { text: '>= 0.7x bare', met: (r) => (r.vsBare === null ? null : r.vsBare >= 0.7) },
  'latency/p50Ms': { text: '< 0.5 ms', met: (r) => (r.stats.bucketq?.median == null ? null : r.stats.bucketq.median < 0.5) },
  'latency/p99Ms': { text: '< 2 ms', met: (r) => (r.stats.bucketq?.median == null ? null : r.stats.bucketq.median < 2) },
  'hotkey/msgsPerSec': { text: '>= 10,000', met: (r) => (r.stats.bucketq?.median == null ? null : r.stats.bucketq.median >= 10_000) },
  'hotkey/violations': { text: '0', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max === 0) },
  'failover/recoveryOverSessionTimeout': { text: '<= 2', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max <= 2) },
  'failover/lost': { text: '0', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max === 0) },
  'failover/duplicates': { text: '0', met: (r) => (r.stats.bucketq?.max == null ? null : r.stats.bucketq.max === 0) },
  'fanout-cost/msgsPerSec': { text: '>= 0.7x bare', met: (r) => (r.vsBare === null ? null : r.vsBare >= 0.7) },
  'fanout-cost/groups10Over1': { text: '>= 0.9', met: atLeast(0.9) },
  'churn/updDelPer1000': { text: '<= 50', met: atMost(50) },
  'soak/lastOverFirst': { text: '>= 0.9', met: atLeast(0.9) },
  'soak/updDelPer1000': { text: '<= 50', met: atMost(50) },
  'soak-pinned/lastOverFirst': { text: '>= 0.9', met: atLeast(0.9) },
  'soak-pinned/updDelPer1000': { text: '<= 50', met: atMost(50) },
};

function targetCell(r: Row): string {
  const t = TARGETS[`${r.workload}/${r.metric}`];
  if (!t) return '';
  const met = t.met(r);
  return `${t.text} ${met === null ? '?' : met ? 'met' : 'MISSED'}`;
}

export interface Row {
  workload: string;
  metric: string;
  primary: boolean;
  unit: string;
  higherIsBetter: boolean;
  stats: Partial<Record<Subject, Stat>>;
  vsGraphile: number | null;
  vsBare: number | null;
  failures: Partial<Record<Subject, number>>;
}

export function rows(w: WorkloadResult): Row[] {
  const metrics = new Set<string>([w.primary]);
  for (const s of Object.values(w.subjects)) for (const r of s?.runs ?? []) for (const k of Object.keys(r.metrics)) if (!HIDDEN.has(k)) metrics.add(k);
  return [...metrics].map((m) => {
    const stats: Partial<Record<Subject, Stat>> = {};
    const failures: Partial<Record<Subject, number>> = {};
    for (const s of SUBJECTS) {
      const sr = w.subjects[s];
      if (!sr) continue;
      stats[s] = stat(sr.runs.map((r) => r.metrics[m]));
      if (sr.errors.length) failures[s] = sr.errors.length;
    }
    const ratio = (a?: Stat, b?: Stat) => (a?.median != null && b?.median != null && b.median !== 0 ? a.median / b.median : null);
    return {
      workload: w.id,
      metric: m,
      primary: m === w.primary,
      unit: m === w.primary ? w.unit : '',
      higherIsBetter: w.higherIsBetter,
      stats,
      vsGraphile: ratio(stats.bucketq, stats['graphile-worker']),
      vsBare: ratio(stats.bucketq, stats.bare),
      failures,
    };
  });
}

function cell(s: Stat | undefined, failures?: number): string {
  if (!s) return '';
  if (s.median === null) return failures ? `FAILED x${failures}` : 'n/a';
  // A median of 0 has no relative spread; a count that is 0 in most repetitions and not
  // in one (order violations) must still show it.
  const worst = s.median === 0 && s.max !== null && s.max !== 0 ? ` (worst ${fmt(s.max)})` : '';
  const spread = s.n > 1 && s.median !== 0 && s.min !== null && s.max !== null ? ` ±${Math.round(((s.max - s.min) / 2 / Math.abs(s.median)) * 100)}%` : worst;
  return `${fmt(s.median)}${spread}${failures ? ` (${failures} failed)` : ''}`;
}

const ratioCell = (r: number | null) => (r === null ? '' : `${r.toFixed(2)}x`);

function tableRows(result: SuiteResult): string[][] {
  const out: string[][] = [];
  for (const w of result.workloads) {
    for (const r of rows(w)) {
      out.push([
        r.primary ? w.id : '',
        `${r.metric}${r.unit ? ` (${r.unit}${r.higherIsBetter ? ', higher is better' : ', lower is better'})` : ''}`,
        cell(r.stats.bucketq, r.failures.bucketq),
        cell(r.stats['graphile-worker'], r.failures['graphile-worker']),
        cell(r.stats.bare, r.failures.bare),
        ratioCell(r.vsGraphile),
        ratioCell(r.vsBare),
        targetCell(r),
      ]);
    }
  }
  return out;
}

const HEAD = ['workload', 'metric', 'bucketq', 'graphile-worker', 'bare SQL', 'bq / gw', 'bq / bare', 'target (bucketq)'];

export function terminalTable(result: SuiteResult): string {
  const body = tableRows(result);
  const widths = HEAD.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i >= 2 && i < 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(HEAD), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

export function markdownTable(result: SuiteResult): string {
  const body = tableRows(result);
  return [`| ${HEAD.join(' | ')} |`, `|${HEAD.map((_, i) => (i >= 2 && i < 7 ? '---:' : '---')).join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const count = (n: number | null | undefined) => (n == null ? 'n/a' : Math.round(n).toLocaleString('en-US'));

/** A plain table: aligned text for the terminal, or markdown. Columns from `right` on are right-aligned. */
function table(head: string[], body: string[][], md: boolean, right = 1): string {
  if (md) return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i >= right ? '---:' : '---')).join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i >= right ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

interface SoakIntervalRow {
  atSec: number;
  completedPerSec: number;
  sentPerSec: number;
  backlog: number;
  /** Absent in results from before it was recorded. */
  machine?: { busyPct: number; stealPct: number; pressurePct: number | null; processesPct?: Record<string, number> } | null;
  tables: Record<string, { deadTup: number; liveTup: number; updDel: number; tableMB: number; indexMB: number; autovacuums: number }>;
}

/**
 * The soaks' readings per interval (a minute at the short and full sizes), per system
 * (first repetition): throughput, then every table that moved (rows updated or deleted,
 * dead tuples, or size).
 */
export function soakSection(result: SuiteResult, md: boolean): string {
  const out: string[] = [];
  for (const w of result.workloads.filter((x) => x.id === 'soak' || x.id === 'soak-pinned')) {
    for (const s of SUBJECTS) {
      const run = w.subjects[s]?.runs[0];
      const rowsIn = run?.extra?.intervals as SoakIntervalRow[] | undefined;
      if (!run || !rowsIn?.length) continue;
      const e = run.extra as { intervalSec: number; maxBacklog: number; producers: number; producerBatch: number; updDelExcludes?: string | readonly string[] };
      // Tables that moved: rows updated or deleted, dead tuples or size changed since the start.
      const start = (run.extra?.start ?? {}) as SoakIntervalRow['tables'];
      const tables = Object.keys(rowsIn.at(-1)!.tables).filter((t) => {
        const first = start[t];
        const last = rowsIn.at(-1)!.tables[t]!;
        return rowsIn.some((r) => (r.tables[t]?.updDel ?? 0) > 0) || !first || first.deadTup !== last.deadTup || first.tableMB + first.indexMB !== last.tableMB + last.indexMB;
      });
      const body: string[][] = [];
      // The machine's CPU busy / stolen / pressure in %, where recorded.
      const machine = (r: SoakIntervalRow) =>
        r.machine ? `${r.machine.busyPct} / ${r.machine.stealPct} / ${r.machine.pressurePct ?? '-'}` : '-';
      // Who used it, in % of all cores: Postgres's client backends, the bench's own process
      // (producers, in-process workers), autovacuum, checkpointer, WAL writer, the rest.
      const SHORT: Record<string, string> = { backends: 'pg', 'bench process': 'bench', autovacuum: 'av', checkpointer: 'ckpt', walwriter: 'walw', 'background writer': 'bgw', 'io worker': 'io', 'other postgres': 'pg other' };
      const byProcess = (r: SoakIntervalRow) =>
        r.machine?.processesPct
          ? Object.entries(r.machine.processesPct).filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${SHORT[k] ?? k} ${v}`).join(', ')
          : '-';
      for (const r of rowsIn) {
        tables.forEach((t, i) => {
          const x = r.tables[t]!;
          body.push([
            i === 0 ? String(r.atSec) : '',
            i === 0 ? fmt(r.completedPerSec) : '',
            i === 0 ? count(r.backlog) : '',
            i === 0 ? machine(r) : '',
            i === 0 ? byProcess(r) : '',
            t,
            count(x.deadTup),
            count(x.updDel),
            count(x.liveTup),
            x.tableMB.toFixed(1),
            x.indexMB.toFixed(1),
            String(x.autovacuums),
          ]);
        });
        if (!tables.length) body.push([String(r.atSec), fmt(r.completedPerSec), count(r.backlog), machine(r), byProcess(r), '', '', '', '', '', '', '']);
      }
      const m = run.metrics;
      out.push(
        `${md ? '### ' : ''}${w.id} / ${s}: per ${e.intervalSec} s; ${e.producers} producers x ${e.producerBatch}, held back while ${fmt(e.maxBacklog)} are in flight. ` +
          `completed/s ${fmt(m.completedPerSec)}; last/first interval ${fmt(m.lastOverFirst)}x; updated+deleted per 1,000 completed ${fmt(m.updDelPer1000)}${e.updDelExcludes ? ` (${[e.updDelExcludes].flat().join(' and ')} aside)` : ''}` +
          `${m.pinHeld ? `; pinned xmin age at the end ${fmt(m.pinXminAge)}` : ''}`,
        '',
        table(['t (s)', 'completed/s', 'backlog', 'CPU busy / steal / pressure %', 'CPU by process %', 'table', 'n_dead_tup', 'upd+del', 'n_live_tup', 'table MB', 'index MB', 'autovacuums'], body, md, 1),
        '',
      );
    }
  }
  return out.join('\n');
}

/** Churn per table (first repetition): rows inserted, updated and deleted per 1,000 messages. */
export function churnSection(result: SuiteResult, md: boolean): string {
  const w = result.workloads.find((x) => x.id === 'churn');
  if (!w) return '';
  const out: string[] = [];
  for (const s of SUBJECTS) {
    const run = w.subjects[s]?.runs[0];
    const t = run?.extra?.tables as Record<string, { ins: number; upd: number; del: number }> | undefined;
    if (!run || !t) continue;
    const e = run.extra as { messages: number; batch: number; workers: number; notCounted: string[] };
    const per = (n: number) => ((n / e.messages) * 1000).toFixed(1);
    const body = Object.entries(t)
      .filter(([, d]) => d.ins || d.upd || d.del)
      .map(([name, d]) => [name, per(d.ins), per(d.upd), per(d.del), per(d.upd + d.del), e.notCounted.includes(name) ? 'no' : 'yes']);
    out.push(
      `${md ? '### ' : ''}churn / ${s}: ${fmt(e.messages)} messages in sends of ${e.batch}, ${e.workers} worker processes; per 1,000 messages: ${fmt(run.metrics.updDelPer1000)} rows updated or deleted${run.metrics.statsSettled ? '' : ' (statistics did not settle: a lower bound)'}`,
      '',
      table(['table', 'inserted', 'updated', 'deleted', 'upd+del', 'counted'], body, md, 1),
      '',
    );
  }
  return out.join('\n');
}

/** Figures across workloads (pinned against unpinned soak). */
export function figuresSection(result: SuiteResult): string {
  return (result.figures ?? [])
    .map((f) => {
      const v = Object.entries(f.values).map(([s, x]) => `${s} ${x == null ? 'n/a' : `${x.toFixed(2)}x`}`).join(', ');
      const b = f.values.bucketq;
      return `- ${f.figure}: ${v}${f.target ? `; target (bucketq) ${f.target.text} ${b == null ? '?' : b >= f.target.min ? 'met' : 'MISSED'}` : ''}`;
    })
    .join('\n');
}

/** Everything printed after the main table. */
export function terminalDetails(result: SuiteResult): string {
  return [figuresSection(result), churnSection(result, false), soakSection(result, false)].filter(Boolean).join('\n\n');
}

export async function writeJson(result: SuiteResult, dir: string, ext = '.json'): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${result.startedAt.replace(/[:.]/g, '-')}-${result.sizes.label}${ext}`);
  await writeFile(file, JSON.stringify(result, null, 2) + '\n');
  return file;
}

/** Saved runs of a suite size in dir, newest first (at most `max`). */
export async function savedRuns(dir: string, label: string, max = 10): Promise<{ result: SuiteResult; jsonFile: string }[]> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith(`-${label}.json`)).sort().reverse().slice(0, max);
  return Promise.all(files.map(async (f) => ({ result: JSON.parse(await readFile(path.join(dir, f), 'utf8')) as SuiteResult, jsonFile: path.join(dir, f) })));
}

const SOAK_INTRO = 'Soak per interval, first repetition. n_dead_tup, n_live_tup and sizes at the end of the interval; upd+del and autovacuums during it (pg_stat_user_tables, partitions summed into their table; counters lag up to a second or so).';

/** Sections for the workloads `shown` lacks, each from the newest of `runs` (newest first) that has it. */
function earlierSections(shown: string[], runs: { result: SuiteResult; jsonFile: string }[], which: string): string[] {
  const covered = new Set(shown);
  const lines: string[] = [];
  for (const p of runs) {
    const rest = p.result.workloads.filter((w) => !covered.has(w.id));
    if (!rest.length) continue;
    for (const w of rest) covered.add(w.id);
    const heading = `Earlier ${p.result.sizes.label}-size run, for workloads ${which} did not have (${rest.map((w) => w.id).join(', ')})`;
    lines.push('', ...otherRunSection({ result: { ...p.result, workloads: rest, figures: undefined }, jsonFile: p.jsonFile }, heading));
  }
  return lines;
}

/** A shorter section for the newest run of the other suite size, kept beside the latest. */
function otherRunSection({ result, jsonFile }: { result: SuiteResult; jsonFile: string }, heading = `Latest ${result.sizes.label}-size run`): string[] {
  const only = result.workloads.map((w) => w.id).join(', ');
  const soak = soakSection(result, true);
  return [
    `## ${heading}`,
    '',
    `${result.startedAt}, ${result.reps} repetition${result.reps === 1 ? '' : 's'} per system (${only}; ${result.durationSec} s); graphile-worker ${(result.systems['graphile-worker'] as { version?: string } | undefined)?.version ?? '?'}; raw data: [${path.basename(jsonFile)}](results/${path.basename(jsonFile)}). Same server settings as above unless the JSON says otherwise.`,
    '',
    markdownTable(result),
    '',
    // (The soaks' minutes are what those runs are for.)
    ...(soak ? [SOAK_INTRO, '', soak] : []),
    '```json',
    JSON.stringify(result.sizes),
    '```',
    '',
  ];
}

export function resultsMarkdown(
  result: SuiteResult,
  jsonFile: string,
  /**
   * Saved runs of the other suite size, newest first: the newest is shown whole, earlier
   * ones for the workloads it did not have (a run of some workloads only, such as the
   * soaks, must not hide that size's last whole suite).
   */
  others: { result: SuiteResult; jsonFile: string }[] = [],
  /** When this run had only some workloads: earlier saved runs of the same size, newest first, for the others. */
  previous: { result: SuiteResult; jsonFile: string }[] = [],
): string {
  const m = result.machine;
  const lines: string[] = [];
  lines.push('# Benchmark results', '');
  lines.push(`Latest run: ${result.startedAt} (${result.sizes.label} suite, ${result.reps} repetitions per system, interleaved; ${result.durationSec} s).`);
  lines.push(`Raw data: [${path.basename(jsonFile)}](results/${path.basename(jsonFile)}). Reproduce with \`npm run bench\` (short) or \`npm run bench -- --full\`.`, '');
  lines.push('## Machine', '');
  lines.push(`- CPU: ${m.cpuModel}, ${m.cpus} cores; ${m.memGiB} GiB RAM; ${m.platform}; Node ${m.node}; load average (1/5/15 min) at start ${m.loadavgAtStart.join(' ')}, at end ${m.loadavgAtEnd.join(' ')}`);
  lines.push(`- Postgres: ${result.databaseSource}; settings: ${Object.entries(result.postgres).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  lines.push(`- Every system runs in a fresh database cloned from a template on that one server; workers and producers share the machine with Postgres.`, '');
  lines.push('## Systems', '');
  for (const [k, v] of Object.entries(result.systems)) lines.push(`- **${k}**: \`${JSON.stringify(v)}\``);
  lines.push('');
  lines.push('## Figures', '');
  lines.push('Median over the repetitions, ± half the range as a share of the median. Ratios are bucketq / other (for latency and failover lower is better, so a ratio under 1 favours bucketq). Targets are those of DESIGN.md, checked against the bucketq median (against the worst repetition for counts that must be zero and for failover).', '');
  lines.push(markdownTable(result), '');
  const figs = figuresSection(result);
  if (figs) lines.push('Across workloads:', '', figs, '');
  lines.push('Notes:', '');
  lines.push('- bucketq sends keyed messages (1,000 keys) in every workload but ingest-unkeyed and e2e-unkeyed, which show what the per-key counter costs; graphile-worker runs plain jobs (its fastest path) except in fifo and hotkey, where the key is the job queue name.');
  lines.push('- fifo / fifo-retry / hotkey: graphile-worker runs in each of `GRAPHILE_FIFO_CONFIGS` (bench/systems/graphile.ts: localQueue500 = the configuration above; localQueueOff = local queue and batched completion off), each in its own database; its main lines are the configuration with the fewest order violations (the faster on a tie), and `<config>_msgsPerSec` / `<config>_violations` show each. Drains cut after `maxDrainMs` are rated on what they finished (`completedShare`).');
  lines.push('- fanout-cost: send_batch (graphile-worker: add_jobs, a job per message per group) with 1, 3 and 10 groups on the topic and nobody consuming, each in a fresh database; msgsPerSec is the 1-group figure, so bq / bare is ingest against a bare multi-row INSERT of rows as wide.');
  lines.push('- churn: rows updated or deleted (pg_stat_user_tables n_tup_upd + n_tup_del, partitions summed) per 1,000 messages from send to ack, sends of 500 while 2 worker processes consume; bucketq\'s per-key counter (topic_key, and key_counter since migration 25) shown apart, not counted; readings taken once the counters stop moving, after the writers\' connections ended.');
  lines.push('- soak / soak-pinned: e2e for the soak\'s minutes, one repetition per suite run; soak-pinned with another session idle in a REPEATABLE READ transaction throughout (it must still hold it at the end, or the run fails). Producers wait while `maxBacklog` messages are in flight (graphile-worker\'s producers otherwise outrun its consumers without bound).');
  lines.push('- violations = outOfOrder (a message did not follow its predecessor of the key) + overlapping (it started while another message of its key was still in its handler). repeated: those of outOfOrder at or below the highest seq the key had reached, i.e. handled again from an earlier point (a batch that rolled back, or an expired lease, looks like this; so does a batch that ran ahead of an uncommitted one of its key, so they stay violations).');
  lines.push('- failover: recoveryMs is the time from SIGKILL until every bucket the killed worker owned has a committed effect from another worker; takeoverMs until the last of those buckets changed owner. graphile-worker has no buckets and leaves the killed worker\'s locked jobs locked for 4 hours: it gets a recovery time only if no job is stranded at the end of the window.');
  lines.push('- latency: measured in one process, from the send\'s promise resolving (the commit acknowledged) to the handler starting; the first second (at the same rate) is a warm-up and not counted, for every system.');
  lines.push('- scaling: `bucketq worker` CLI processes / graphile-worker runner processes; the backlog is committed in one transaction once all workers are up (bucketq: buckets balanced), timed until the backlog is empty.', '');
  const churn = churnSection(result, true);
  if (churn) lines.push('## Churn per table', '', churn);
  const soak = soakSection(result, true);
  if (soak) lines.push('## Soak per interval', '', SOAK_INTRO, '', soak);
  lines.push('## Sizes', '', '```json', JSON.stringify(result.sizes, null, 2), '```', '');
  lines.push('## Where the time goes (first repetition of each run)', '');
  lines.push('Wait events: average number of active backends of that database per 100 ms sample (`CPU` = active with no wait event). Functions: top PL/pgSQL/SQL functions by total time (`track_functions = all`).', '');
  for (const w of result.workloads) {
    for (const [s, sr] of Object.entries(w.subjects)) {
      const r = sr?.runs[0];
      if (!r) continue;
      const waits = r.waits ? Object.entries(r.waits).map(([k, v]) => `${k} ${v}`).join(', ') : '';
      const fns = (r.functions ?? []).slice(0, 5).map((f) => `${f.fn} ${f.calls} calls ${f.totalMs} ms (self ${f.selfMs})`).join('; ');
      if (waits || fns) lines.push(`- ${w.id} / ${s}: ${waits ? `waits: ${waits}` : ''}${waits && fns ? '. ' : ''}${fns ? `functions: ${fns}` : ''}`);
    }
  }
  // Each workload this run did not have, from the newest earlier saved run that has it.
  lines.push(...earlierSections(result.workloads.map((w) => w.id), previous, 'this run'));
  const [other, ...earlierOthers] = others;
  if (other) {
    lines.push('', ...otherRunSection(other));
    lines.push(...earlierSections(other.result.workloads.map((w) => w.id), earlierOthers, 'that run'));
  }
  const errors = result.workloads.flatMap((w) => Object.entries(w.subjects).flatMap(([s, sr]) => (sr?.errors ?? []).map((e) => `${w.id} / ${s}: ${e.split('\n')[0]}`)));
  if (errors.length) lines.push('', '## Failed runs', '', ...errors.map((e) => `- ${e}`));
  lines.push('');
  return lines.join('\n');
}
