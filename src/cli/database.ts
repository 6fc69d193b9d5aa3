// Where the CLI gets its database: --database-url, else DATABASE_URL, else a private
// embedded server that lives as long as the command.
import { startEmbeddedPostgres } from '../db/embedded.js';
import { CliError } from './cli-error.js';

export interface CliDatabase {
  connectionString: string;
  /** Human-readable origin, for the command's output. */
  description: string;
  release(): Promise<void>;
}

export async function resolveDatabase(databaseUrl: string | undefined, opts: { allowEmbedded: boolean }): Promise<CliDatabase> {
  const url = databaseUrl ?? process.env.DATABASE_URL;
  if (url) return { connectionString: url, description: redact(url), release: async () => {} };
  if (!opts.allowEmbedded) {
    throw new CliError('no database: pass --database-url or set DATABASE_URL');
  }
  const server = await startEmbeddedPostgres();
  return {
    connectionString: server.connectionString,
    description: `embedded Postgres on port ${server.port} (temporary, removed on exit)`,
    release: () => server.stop(),
  };
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
