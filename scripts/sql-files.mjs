// Reads sql/ the way the package embeds it (scripts/embed-sql.mjs) and a frozen release
// records it (scripts/freeze-release.mjs): the numbered migrations in order, and the
// function and view files with the hash migrate() stores in bucketq.definitions.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const MIGRATION_FILE = /^(\d{6})_([A-Za-z0-9_-]+)\.sql$/;
const DEFINITION_FILE = /^[a-z_][a-z0-9_]*\.sql$/;
// Functions first (views call some of them), each folder in name order.
const DEFINITION_DIRS = ['functions', 'views'];

export function readMigrations(sqlDir) {
  // schema.sql is generated for readers (npm run schema), not applied.
  const files = existsSync(sqlDir) ? readdirSync(sqlDir).filter((f) => f.endsWith('.sql') && f !== 'schema.sql') : [];
  const migrations = files.map((file) => {
    const match = MIGRATION_FILE.exec(file);
    if (!match) {
      throw new Error(`sql/${file}: migration files must be named NNNNNN_name.sql (6 digits, then a name of letters, digits, _ or -)`);
    }
    return { version: Number(match[1]), name: match[2], sql: readFileSync(join(sqlDir, file), 'utf8') };
  });
  migrations.sort((a, b) => a.version - b.version);
  // Versions must be 1, 2, 3, ...: a gap usually means a file was renamed or lost.
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`sql/: expected migration version ${i + 1}, found ${m.version} (${m.name}); versions must be contiguous from 1`);
    }
  });
  return migrations;
}

export function readDefinitions(sqlDir) {
  const files = [];
  for (const dir of DEFINITION_DIRS) {
    const full = join(sqlDir, dir);
    if (!existsSync(full)) continue;
    for (const file of readdirSync(full).sort()) {
      if (!DEFINITION_FILE.test(file)) {
        throw new Error(`sql/${dir}/${file}: definition files are named after the object they define, e.g. sql/${dir}/claim.sql (lower case, digits, _)`);
      }
      const sql = readFileSync(join(full, file), 'utf8');
      const object = file.slice(0, -'.sql'.length);
      // One object per file, and the file named after it: a reader finds `ack` in ack.sql.
      const kind = dir === 'functions' ? 'function' : 'view';
      const defined = [...sql.matchAll(new RegExp(`^create or replace ${kind} bucketq\\.(\\w+)`, 'gim'))].map((m) => m[1]);
      if (defined.length === 0 || defined.some((name) => name !== object)) {
        throw new Error(`sql/${dir}/${file}: must define ${kind} bucketq.${object} (with "create or replace ${kind}") and nothing else; found ${defined.join(', ') || 'none'}`);
      }
      files.push({ path: `${dir}/${file}`, sql });
    }
  }
  const hash = createHash('sha256');
  for (const f of files) hash.update(f.path).update('\0').update(f.sql).update('\0');
  return { hash: hash.digest('hex'), files };
}
