// Whether another OS user can reach a path: every directory on the way must let it
// search (x). Root's home and `mktemp -d` directories are mode 700, so a checkout there
// is out of reach of the `postgres` user the embedded server runs as.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Stats } from 'node:fs';
import type { OsUser } from './os-user.js';

export const R = 4;
export const W = 2;
export const X = 1;

/** The permission bits (R, W, X) that apply to `user` on a file with these stats. */
export function allowed(st: Pick<Stats, 'uid' | 'gid' | 'mode'>, user: OsUser, bits: number): boolean {
  if (user.uid === 0) return true;
  const shift = st.uid === user.uid ? 6 : user.groups.includes(st.gid) || st.gid === user.gid ? 3 : 0;
  return ((st.mode >> shift) & bits) === bits;
}

/**
 * The first directory on the way to `target` (inclusive when it is a directory) that
 * `user` may not search, or undefined when it can reach `target`. A missing path
 * counts as blocked at its first missing part.
 */
export async function firstBlockedDir(target: string, user: OsUser): Promise<string | undefined> {
  const abs = path.resolve(target);
  const parts = abs.split(path.sep).filter(Boolean);
  let dir: string = path.sep;
  for (let i = 0; i <= parts.length; i++) {
    let st: Stats;
    try {
      st = await stat(dir);
    } catch {
      return dir;
    }
    if (!st.isDirectory()) return undefined; // reached a file: its own bits are checked by the caller
    if (!allowed(st, user, X)) return dir;
    if (i < parts.length) dir = path.join(dir, parts[i]!);
  }
  return undefined;
}

/** A sentence describing why `user` cannot reach `target` through `blocked`. */
export async function describeBlocked(blocked: string, user: OsUser): Promise<string> {
  const st = await stat(blocked).catch(() => undefined);
  if (!st) return `${blocked} does not exist`;
  return `${blocked} (mode ${(st.mode & 0o777).toString(8)}, owner uid ${st.uid}) does not let the OS user '${user.name}' in`;
}
