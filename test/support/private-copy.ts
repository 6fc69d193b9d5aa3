// A copy of this checkout in a private directory (mode 700, like root's home or
// `mktemp -d`), as a user who clones the project there gets: node_modules included,
// hard-linked where the file system allows (same inodes, so the same file modes).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface PrivateCopy {
  /** The mode-700 directory. */
  home: string;
  /** The checkout inside it. */
  repo: string;
  remove(): void;
}

/** Copies the working tree (tracked and untracked files, not ignored ones) and node_modules. */
export function privateCopy(): PrivateCopy {
  const home = mkdtempSync(path.join(os.tmpdir(), 'bucketq-private-'));
  if ((statSync(home).mode & 0o777) !== 0o700) throw new Error(`mkdtemp made ${home} with mode ${(statSync(home).mode & 0o777).toString(8)}, expected 700`);
  const repo = path.join(home, 'bucketq');
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && existsSync(path.join(ROOT, f)));
  mkdirSync(repo);
  execFileSync('sh', ['-c', 'tar --null -T - -cf - | tar -C "$1" -xf -', 'sh', repo], { cwd: ROOT, input: files.join('\0') });
  try {
    execFileSync('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(repo, 'node_modules')]);
  } catch {
    execFileSync('cp', ['-a', path.join(ROOT, 'node_modules'), path.join(repo, 'node_modules')]);
  }
  return { home, repo, remove: () => rmSync(home, { recursive: true, force: true }) };
}
