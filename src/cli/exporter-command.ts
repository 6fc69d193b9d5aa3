// `bucketq exporter [--port 9465] [--host 127.0.0.1]`: Prometheus metrics of the whole
// database (bucketq.metrics()), independent of the workers. Runs until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { Option } from 'commander';
import pg from 'pg';
import { z } from 'zod';
import { startExporter } from '../exporter.js';
import { intFlag, validate } from './args.js';
import { CliError } from './cli-error.js';
import { databaseUrl, runs } from './command.js';
import { resolveDatabase } from './database.js';

const schema = z.object({
  port: intFlag('--port', 0, 65535),
  host: z.string().trim().min(1, '--host must not be empty (127.0.0.1, 0.0.0.0, ...)').optional(),
});

export function registerExporter(program: Command): void {
  program
    .command('exporter')
    .summary('serve lag, oldest age, dead letters, consumers per group and bucket to Prometheus')
    .description(
      'serve bucketq.metrics() (lag and oldest message age per group and bucket, dead letters, consumers, paused groups, topic sizes) and process metrics on GET /metrics for Prometheus, once for the database and whether or not workers run; GET /health answers 200 while the database does. A bucketq_monitor login is enough',
    )
    .addOption(new Option('--port <n>', 'port to listen on (default 9465; 0 picks a free one)').env('BUCKETQ_EXPORTER_PORT'))
    .addOption(new Option('--host <addr>', 'address to bind (default 127.0.0.1; 0.0.0.0 for all interfaces, e.g. in a container)').env('BUCKETQ_EXPORTER_HOST'))
    .action(
      runs(async (flags: { port?: string; host?: string }, cmd: Command) => {
        const o = validate('exporter', schema, flags);
        const db = await resolveDatabase(databaseUrl(cmd), { allowEmbedded: false });
        const pool = new pg.Pool({ connectionString: db.connectionString, max: 2, application_name: 'bucketq exporter' });
        pool.on('error', () => {}); // a dropped idle connection is replaced on the next scrape
        try {
          const { rows } = await pool.query<{ ok: boolean }>(`select to_regprocedure('bucketq.metrics()') is not null as ok`);
          if (!rows[0]?.ok) throw new CliError(`exporter: this database has no bucketq.metrics() (${db.description}): run \`bucketq migrate\` first`);
          const exporter = await startExporter({ pool, port: o.port ?? 9465, host: o.host ?? '127.0.0.1' });
          console.log(`bucketq exporter: ${exporter.url} on ${db.description} (Ctrl-C to stop)`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
          });
          await exporter.close();
          return 0;
        } finally {
          await pool.end();
          await db.release();
        }
      }),
    );
}
