// Where the CLI gets its database: --database-url, else DATABASE_URL, else the PG*
// variables as psql reads them (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...;
// node-pg reads them itself when it is given no connection string), else (demo only) a
// private embedded server that lives as long as the command.
import { startEmbeddedPostgres } from '../db/embedded.js';
import { CliError } from './cli-error.js';

export interface CliDatabase {
  /** A connection string; '' means: node-pg's defaults and the PG* environment variables. */
  connectionString: string;
  /** Human-readable origin, for the command's output. */
  description: string;
  release(): Promise<void>;
}

/** The PG* variables that select a server, as psql reads them. */
export const PG_ENV = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'PGSSLMODE', 'PGPASSFILE', 'PGSERVICE'] as const;

export const NO_DATABASE_HELP = 'pass --database-url URL, set DATABASE_URL, or set PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE as for psql';

export async function resolveDatabase(
  databaseUrl: string | undefined,
  opts: { allowEmbedded: boolean },
  env: NodeJS.ProcessEnv = process.env,
): Promise<CliDatabase> {
  const url = databaseUrl || env.DATABASE_URL;
  if (url) return { connectionString: url, description: redact(url), release: async () => {} };
  if (!opts.allowEmbedded && PG_ENV.some((name) => env[name])) {
    return { connectionString: '', description: describePgEnv(env), release: async () => {} };
  }
  if (!opts.allowEmbedded) throw new CliError(`no database: ${NO_DATABASE_HELP}`);
  const server = await startEmbeddedPostgres();
  return {
    connectionString: server.connectionString,
    description: `embedded Postgres on port ${server.port} (temporary, removed on exit)`,
    release: () => server.stop(),
  };
}

/** What node-pg connects to from the PG* variables (its defaults where one is unset); no password. */
export function describePgEnv(env: NodeJS.ProcessEnv = process.env): string {
  const user = env.PGUSER || env.USER || 'postgres';
  const host = env.PGHOST || env.PGHOSTADDR || 'localhost';
  return `postgres://${user}@${host}:${env.PGPORT || '5432'}/${env.PGDATABASE || user} (from the PG* environment variables)`;
}

/** Hides the password when echoing a connection string. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(connection string)';
  }
}
