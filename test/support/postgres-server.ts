// Which Postgres the tests run against: DATABASE_URL when set; else a throwaway
// container (testcontainers) when a Docker engine answers; else the embedded Postgres.
// BUCKETQ_TEST_POSTGRES=embedded or =testcontainers forces one of the last two.
// testcontainers is loaded only when it is chosen.
import { existsSync } from 'node:fs';
import http from 'node:http';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';

export type ServerKind = 'database-url' | 'testcontainers' | 'embedded';

export interface ServerChoice {
  kind: ServerKind;
  /** Why, for the run's log line. */
  reason: string;
}

export interface RunningServer {
  kind: ServerKind;
  connectionString: string;
  /** undefined for DATABASE_URL: a server we did not start is not ours to stop. */
  stop?: () => Promise<void>;
}

const FORCED = ['embedded', 'testcontainers'];

/** The choice alone, from the environment and whether an engine answers (asked only when it matters). */
export async function chooseServer(env: NodeJS.ProcessEnv, engineAnswers: () => Promise<boolean>): Promise<ServerChoice> {
  if (env.DATABASE_URL) return { kind: 'database-url', reason: 'DATABASE_URL is set' };
  const forced = env.BUCKETQ_TEST_POSTGRES;
  if (forced) {
    if (!FORCED.includes(forced)) throw new Error(`BUCKETQ_TEST_POSTGRES must be 'embedded' or 'testcontainers', got '${forced}' (or unset it to choose by itself)`);
    return { kind: forced as ServerKind, reason: `BUCKETQ_TEST_POSTGRES=${forced}` };
  }
  if (await engineAnswers()) return { kind: 'testcontainers', reason: 'a Docker engine answers' };
  return { kind: 'embedded', reason: 'no DATABASE_URL and no Docker engine answers' };
}

/**
 * Whether a Docker engine answers GET /_ping on DOCKER_HOST (unix:// or tcp://) or the
 * default socket, within timeoutMs.
 */
export function dockerEngineAnswers(env: NodeJS.ProcessEnv = process.env, timeoutMs = 1500): Promise<boolean> {
  const host = env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  let target: http.RequestOptions;
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    if (!existsSync(socketPath)) return Promise.resolve(false);
    target = { socketPath };
  } else if (host.startsWith('tcp://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    target = { host: u.hostname, port: Number(u.port || 2375) };
  } else {
    return Promise.resolve(false); // ssh:// and others: leave them to DATABASE_URL
  }
  return new Promise((resolve) => {
    const req = http.get({ ...target, path: '/_ping', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'OK'));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export async function startServer(choice: ServerChoice, env: NodeJS.ProcessEnv = process.env): Promise<RunningServer> {
  switch (choice.kind) {
    case 'database-url':
      return { kind: choice.kind, connectionString: env.DATABASE_URL! };
    case 'embedded': {
      const server = await startEmbeddedPostgres();
      return { kind: choice.kind, connectionString: server.connectionString, stop: () => server.stop() };
    }
    case 'testcontainers': {
      const container = await (await loadTestcontainers()).start();
      return { kind: choice.kind, connectionString: container.getConnectionUri(), stop: async () => void (await container.stop()) };
    }
  }
}

const POSTGRES_IMAGE = 'postgres:18';

async function loadTestcontainers(): Promise<{ start(): Promise<{ getConnectionUri(): string; stop(): Promise<unknown> }> }> {
  let mod: typeof import('@testcontainers/postgresql');
  try {
    mod = await import('@testcontainers/postgresql');
  } catch (err) {
    throw new Error(
      `a Docker engine answers, so the tests would run Postgres in a container, but @testcontainers/postgresql cannot be loaded (${(err as Error).message}): ` +
        'run npm ci, or set BUCKETQ_TEST_POSTGRES=embedded, or DATABASE_URL',
    );
  }
  return {
    start: () =>
      new mod.PostgreSqlContainer(POSTGRES_IMAGE)
        .withCommand(['postgres', '-c', 'max_connections=200', '-c', 'max_locks_per_transaction=256'])
        .start(),
  };
}
