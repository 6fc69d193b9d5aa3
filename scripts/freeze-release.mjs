#!/usr/bin/env node
// Freezes this release's SQL for the upgrade test (test/upgrade.test.ts): writes
// test/fixtures/release-<version>/bundle.json with the numbered migrations and the
// function and view files exactly as src/generated/migrations.ts embeds them (the same
// reader, the same definitions hash), plus the commit they came from. Run it at each
// release, from a clean tree:   node scripts/freeze-release.mjs [version]
// (version defaults to package.json's). The test upgrades from the newest fixture.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDefinitions, readMigrations } from './sql-files.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const version = process.argv[2] ?? JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
if (!/^\d+\.\d+\.\d+([-.][0-9A-Za-z.-]+)?$/.test(version)) {
  console.error(`freeze-release: "${version}" is not a version like 1.2.3`);
  process.exit(1);
}

// What the package embeds must be what sql/ holds, or the fixture would freeze neither.
execFileSync(process.execPath, [join(root, 'scripts', 'embed-sql.mjs'), '--check'], { stdio: 'inherit' });
const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
const dirty = git('status', '--porcelain', '--', 'sql') !== '';

const migrations = readMigrations(join(root, 'sql'));
const bundle = {
  release: version,
  commit: git('rev-parse', 'HEAD') + (dirty ? ' (with uncommitted changes under sql/)' : ''),
  frozenBy: 'scripts/freeze-release.mjs',
  latestVersion: migrations.at(-1)?.version ?? 0,
  migrations,
  definitions: readDefinitions(join(root, 'sql')),
};
const file = join(root, 'test', 'fixtures', `release-${version}`, 'bundle.json');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, JSON.stringify(bundle, null, 2) + '\n');
console.log(`wrote ${relative(root, file)}: migrations 1..${bundle.latestVersion}, ${bundle.definitions.files.length} definition files, hash ${bundle.definitions.hash.slice(0, 12)}`);
