// `bucketq ui [--port 8080] [--host 127.0.0.1] [--database-url URL] [--read-only]`: the
// visual state debugger, a web console over the public views and functions
// (src/ui/). Runs until SIGINT/SIGTERM.
import pg from 'pg';
import { z } from 'zod';
import { createUiServer, type UiServer } from '../ui/server.js';
import type { Command } from 'commander';
import { intFlag, validate } from './args.js';
import { runs, databaseUrl } from './command.js';
import { CliError } from './cli-error.js';
import { redact, resolveDatabase } from './database.js';

const schema = z.object({
  port: intFlag('--port', 0, 65535),
  host: z.string().trim().min(1, '--host must not be empty (127.0.0.1, ::1, 0.0.0.0, ...)').optional(),
});

export interface RunningUi {
  url: string;
  ui: UiServer;
  /** Stops the server and closes the database pool. */
  stop(): Promise<void>;
}

/** Starts the console on a pool of its own; used by `bucketq ui` and the demo. */
export async function startUi(opts: { connectionString: string; port: number; host: string; readOnly: boolean; databaseLabel?: string }): Promise<RunningUi> {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: 4,
    application_name: 'bucketq ui',
    // Defence in depth for --read-only: even a bug could not write through these sessions.
    ...(opts.readOnly ? { options: '-c default_transaction_read_only=on' } : {}),
  });
  pool.on('error', () => {}); // a dropped idle connection is replaced on the next query
  try {
    const { rows } = await pool.query<{ ok: boolean }>(`select to_regclass('bucketq.message_states') is not null as ok`);
    if (!rows[0]?.ok) {
      throw new CliError(`bucketq ui: this database has no bucketq schema or an older one (${redact(opts.connectionString)}): run \`bucketq migrate\` first`);
    }
    const ui = createUiServer({ db: pool, readOnly: opts.readOnly, databaseLabel: opts.databaseLabel ?? describe(opts.connectionString) });
    const url = await ui.listen(opts.port, opts.host);
    return {
      url,
      ui,
      stop: async () => {
        await ui.close();
        await pool.end();
      },
    };
  } catch (err) {
    await pool.end();
    if ((err as { code?: string }).code === 'EADDRINUSE') throw new CliError(`bucketq ui: port ${opts.port} on ${opts.host} is in use: pick another with --port`);
    throw err;
  }
}

/** host:port/database, never the user or password. */
function describe(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'database';
  }
}

export function registerUi(program: Command): void {
  program
    .command('ui')
    .summary('web console: overview, bucket maps, messages, dead letters, rewind')
    .description('a web console: topics and groups with backlog and throughput, bucket maps, a message in every group, dead letters with replay, rewind; refreshes every second')
    .option('--port <n>', 'port to listen on (default 8080; 0 picks a free one)')
    .option('--host <addr>', 'address to bind (default 127.0.0.1: this machine only); any other needs authentication in front (see the README)')
    .option('--read-only', 'hide every action; the server refuses replay and rewind (HTTP 403) and its database sessions are read-only')
    .action(runs(async (flags: { port?: string; host?: string; readOnly?: boolean }, cmd: Command) => uiCommand(flags, databaseUrl(cmd))));
}

async function uiCommand(values: { port?: string; host?: string; readOnly?: boolean }, url: string | undefined): Promise<number> {
  const o = validate('ui', schema, { port: values.port, host: values.host });
  const db = await resolveDatabase(url, { allowEmbedded: false });
  const host = o.host ?? '127.0.0.1';
  const running = await startUi({ connectionString: db.connectionString, port: o.port ?? 8080, host, readOnly: values.readOnly ?? false });
  console.log(`bucketq ui: ${running.url}${values.readOnly ? ' (read-only)' : ''} on ${db.description}`);
  if (!isLoopback(host)) {
    console.log(`bucketq ui: listening on ${host}, not only this machine: anyone who reaches it can ${values.readOnly ? 'read every payload' : 'replay and rewind'}; put it behind authentication`);
  }
  console.log('Ctrl-C to stop');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.stop();
  await db.release();
  return 0;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
