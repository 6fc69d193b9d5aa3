// Every code block of README.md is checked: TypeScript blocks type-check under --strict
// against the package's own types (as `import ... from 'bucketq'`), SQL blocks run on a
// fresh database in order, after the setup the README tells a newcomer to do first.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeBlocks } from './support/readme.js';
import { ROOT } from './support/private-copy.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const README = path.join(ROOT, 'README.md');
const blocks = codeBlocks(README);
const tsBlocks = blocks.filter((b) => b.lang === 'ts' || b.lang === 'typescript');
const sqlBlocks = blocks.filter((b) => b.lang === 'sql');

/** Type errors of each snippet, compiled as modules of a project that depends on bucketq ('' when none). */
function typeErrors(snippets: Record<string, string>): Record<string, string> {
  const files = new Map(Object.entries(snippets).map(([name, code]) => [path.join(ROOT, '.readme-check', `${name}.mts`), code]));
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: ['node'],
    baseUrl: ROOT,
    paths: { bucketq: ['src/index.ts'] },
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (f, lang, ...rest) => (files.has(f) ? ts.createSourceFile(f, files.get(f)!, lang) : getSourceFile.call(host, f, lang, ...rest));
  host.fileExists = (f) => files.has(f) || fileExists.call(host, f);
  host.readFile = (f) => files.get(f) ?? readFile.call(host, f);
  const program = ts.createProgram([...files.keys()], options, host);
  const format = { getCanonicalFileName: (f: string) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
  return Object.fromEntries(
    [...files.keys()].map((f) => [path.basename(f, '.mts'), ts.formatDiagnostics(ts.getPreEmitDiagnostics(program, program.getSourceFile(f)), format)]),
  );
}

const NEWCOMER_MISTAKES = `import { BucketQ } from 'bucketq';
const bq = new BucketQ({ connectionString: process.env.DATABASE_URL });
await bq.consume({ group: 'g', handler: async (message) => { console.log(message.payload.amount); } });`;

let errors: Record<string, string>;
beforeAll(() => {
  errors = typeErrors({ ...Object.fromEntries(tsBlocks.map((b) => [`readme-${b.line}`, b.code])), 'newcomer-mistakes': NEWCOMER_MISTAKES });
});

describe('README.md TypeScript blocks', () => {
  it('has some', () => expect(tsBlocks.length).toBeGreaterThan(1));

  it.each(tsBlocks.map((b) => [b.line, b] as const))('the block at line %i compiles under --strict', (line, block) => {
    expect(errors[`readme-${line}`], block.code).toBe('');
  });

  it('the check catches what a newcomer would hit (TS2322, TS18046)', () => {
    expect(errors['newcomer-mistakes']).toContain('TS2322');
    expect(errors['newcomer-mistakes']).toContain('TS18046');
  });
});

describe('README.md SQL blocks', () => {
  const databases: FreshDatabase[] = [];
  afterAll(async () => {
    await Promise.all(databases.map((d) => d.drop()));
  });

  it('tells to run `npx bucketq migrate` before the first SQL block', () => {
    const firstSql = blocks.indexOf(sqlBlocks[0]!);
    const before = blocks.slice(0, firstSql).filter((b) => b.lang === 'sh');
    expect(before.some((b) => /npx bucketq migrate/.test(b.code))).toBe(true);
  });

  it('run in order on a fresh database after `bucketq migrate`', async () => {
    const db = await freshDatabase({ empty: true });
    databases.push(db);
    // Without the migration the quick start fails as a newcomer saw it.
    await expect(db.pool.query(sqlBlocks[0]!.code)).rejects.toThrow(/schema "bucketq" does not exist/);

    const migrate = spawnSync(process.execPath, ['bin/bucketq.js', 'migrate'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: db.connectionString },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(migrate.stderr).toBe('');
    expect(migrate.status).toBe(0);
    for (const block of sqlBlocks) {
      await expect(db.pool.query(block.code), `README.md:${block.line}`).resolves.toBeDefined();
    }
    const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from bucketq.lag`);
    expect(rows[0]!.n).toBeGreaterThan(0);
  });
});
