// The embedded Postgres from a checkout in a private directory (mode 700, as root's
// home or `mktemp -d`), run as root: Postgres refuses root, so it runs as the OS user
// `postgres`, who cannot enter that directory. It must still start (from a copy of
// the binaries that user can reach), or say why not and what to do.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firstBlockedDir } from '../src/db/embedded/access.js';
import { platformPackage } from '../src/db/embedded/binaries.js';
import { privateCopy, type PrivateCopy } from './support/private-copy.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('embedded-postgres.test.ts: not running as root, so the private-directory tests are skipped (they need a server run as another OS user)');

const START_AND_QUERY = `
  const { startEmbeddedPostgres } = await import('./src/db/embedded.ts');
  const pg = (await import('pg')).default;
  const server = await startEmbeddedPostgres();
  const client = new pg.Client({ connectionString: server.connectionString });
  await client.connect();
  const { rows } = await client.query("select current_setting('data_directory') as dir, (select rolname from pg_roles where oid = 10) as owner");
  await client.end();
  await server.stop();
  console.log(JSON.stringify(rows[0]));
`;

function runIn(repo: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', START_AND_QUERY], {
    cwd: repo,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 90_000,
  });
}

describe.skipIf(!isRoot)('embedded Postgres from a checkout in a mode-700 directory, as root', () => {
  let copy: PrivateCopy;
  beforeAll(() => {
    copy = privateCopy();
  });
  afterAll(() => copy?.remove());

  it('the postgres OS user really cannot reach the copied binaries (the situation under test)', async () => {
    const { lookupUser } = await import('../src/db/embedded/os-user.js');
    const user = await lookupUser('postgres');
    if (!user) return; // created by the first start below; the next test covers the rest
    const binDir = path.join(copy.repo, 'node_modules', platformPackage(), 'native', 'bin');
    expect(await firstBlockedDir(binDir, user)).toBe(copy.home);
  });

  it('starts, answers queries and removes its data directory on stop', () => {
    const r = runIn(copy.repo);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { dir } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { dir: string };
    expect(dir.startsWith(os.tmpdir())).toBe(true);
    expect(spawnSync('test', ['-e', dir]).status).not.toBe(0);
  });

  it('with a TMPDIR the postgres user cannot enter either, fails saying so and naming the fixes', () => {
    const tmp = path.join(copy.home, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const r = runIn(copy.repo, { TMPDIR: tmp });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`cannot reach its binaries in ${copy.repo}`);
    expect(r.stderr).toMatch(/does not let the OS user 'postgres' in/);
    expect(r.stderr).toContain('Set TMPDIR to a directory every user can enter');
    expect(r.stderr).toContain('DATABASE_URL');
    expect(r.stderr).not.toContain('EACCES');
  });
});

describe('firstBlockedDir', () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'bucketq-access-'));
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  const stranger = { name: 'stranger', uid: 54321, gid: 54321, groups: [54321] };

  it('names the first directory another user may not search, and undefined once it may', async () => {
    const inner = path.join(base, 'a', 'b');
    mkdirSync(inner, { recursive: true });
    chmodSync(base, 0o700);
    chmodSync(path.join(base, 'a'), 0o755);
    expect(await firstBlockedDir(inner, stranger)).toBe(base);
    chmodSync(base, 0o711);
    expect(await firstBlockedDir(inner, stranger)).toBeUndefined();
    chmodSync(path.join(base, 'a'), 0o750);
    expect(await firstBlockedDir(inner, stranger)).toBe(path.join(base, 'a'));
    expect(await firstBlockedDir(inner, { ...stranger, uid: 0 })).toBeUndefined();
  });

  it('counts a missing directory as blocked', async () => {
    expect(await firstBlockedDir(path.join(base, 'missing', 'x'), { name: 'root', uid: 0, gid: 0, groups: [0] })).toBe(path.join(base, 'missing'));
  });
});

describe('startEmbeddedPostgres', () => {
  it('crash() stops the server at once, restart() brings it back with its data, stop() removes it', async () => {
    const { startEmbeddedPostgres } = await import('../src/db/embedded.js');
    const pg = (await import('pg')).default;
    const server = await startEmbeddedPostgres();
    const query = async (sql: string) => {
      const c = new pg.Client({ connectionString: server.connectionString });
      c.on('error', () => {});
      await c.connect();
      try {
        return (await c.query(sql)).rows as Record<string, unknown>[];
      } finally {
        await c.end().catch(() => {});
      }
    };
    try {
      await query('create table kept (x int); insert into kept values (42)');
      const [{ dir }] = (await query(`select current_setting('data_directory') as dir`)) as [{ dir: string }];
      await server.crash();
      await expect(query('select 1')).rejects.toThrow(/ECONNREFUSED/);
      await server.restart();
      expect(await query('select x from kept')).toEqual([{ x: 42 }]);
      await server.stop();
      expect(spawnSync('test', ['-e', dir]).status).not.toBe(0);
    } finally {
      await server.stop();
    }
  });
});
