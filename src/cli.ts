// The `bucketq` command line. Each subcommand lives in src/cli/.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { demoCommand } from './cli/demo.js';
import { migrateCommand } from './cli/migrate-command.js';
import { workerCommand } from './cli/worker-command.js';
import { OPS_USAGE, findOpsCommand } from './cli/ops-commands.js';
import { CliError } from './cli/cli-error.js';
import { printable } from './cli/terminal-text.js';
import { BucketqError } from './errors.js';
import { EmbeddedPostgresUnavailableError } from './db/embedded.js';

const USAGE = `usage: bucketq <command> [options]

commands:
  migrate   apply pending bucketq schema migrations (needs --database-url or DATABASE_URL)
  demo      the whole story: a producer, 3 worker processes, one SIGKILLed and replaced,
            then verify exactly-once effects, per-key order, nothing lost
            [--messages N] [--rate MSG_PER_S] [--no-kill] [--plain]
            (uses DATABASE_URL if set, else starts a temporary embedded Postgres)
  worker    consume a group with a handler module until SIGTERM/SIGINT
            --group G --handler ./handler.js [--concurrency N] [--batch-size N] [--max-per-key N]
            [--transaction batch|message] [--claim-mode auto|lock|lease] [--heartbeat-ms N] [--poll-ms N] [--lease-ms N]
            [--handler-timeout-ms N] [--stop-timeout-ms N] [--consumer-id ID]
            (or BUCKETQ_GROUP, BUCKETQ_HANDLER, BUCKETQ_CONCURRENCY, ... in the environment)
            [--metrics-port N]: serve Prometheus /metrics and /health (or BUCKETQ_METRICS_PORT)
            [--metrics-host ADDR]: listen there (default 127.0.0.1; 0.0.0.0 for all interfaces; or BUCKETQ_METRICS_HOST)
${OPS_USAGE}

options:
  --database-url URL   Postgres connection string (default: $DATABASE_URL)
  -h, --help           show this help`;

export async function main(argv: string[]): Promise<number> {
  const ops = findOpsCommand(argv); // status, topic, group, send, dlq, rewind, maintain, ui: own argv parsing
  if (ops) return ops.run(ops.args);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'database-url': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        group: { type: 'string' },
        handler: { type: 'string' },
        concurrency: { type: 'string' },
        'batch-size': { type: 'string' },
        'max-per-key': { type: 'string' },
        transaction: { type: 'string' },
        'claim-mode': { type: 'string' },
        'heartbeat-ms': { type: 'string' },
        'poll-ms': { type: 'string' },
        'lease-ms': { type: 'string' },
        'handler-timeout-ms': { type: 'string' },
        'stop-timeout-ms': { type: 'string' },
        'consumer-id': { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        messages: { type: 'string' },
        rate: { type: 'string' },
        'no-kill': { type: 'boolean' },
        plain: { type: 'boolean' },
      },
    });
  } catch (err) {
    console.error(`bucketq: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (rest.length > 0) {
    console.error(`bucketq ${command}: unexpected argument${rest.length > 1 ? 's' : ''} ${rest.join(' ')}\n\n${USAGE}`);
    return 2;
  }
  const databaseUrl = values['database-url'];
  switch (command) {
    case 'migrate':
      return migrateCommand({ databaseUrl });
    case 'demo':
      return demoCommand({ databaseUrl, messages: values.messages, rate: values.rate, noKill: values['no-kill'], plain: values.plain });
    case 'worker':
      return workerCommand({
        databaseUrl,
        group: values.group,
        handler: values.handler,
        concurrency: values.concurrency,
        batchSize: values['batch-size'],
        maxPerKey: values['max-per-key'],
        transaction: values.transaction,
        claimMode: values['claim-mode'],
        heartbeatMs: values['heartbeat-ms'],
        pollMs: values['poll-ms'],
        leaseMs: values['lease-ms'],
        handlerTimeoutMs: values['handler-timeout-ms'],
        stopTimeoutMs: values['stop-timeout-ms'],
        consumerId: values['consumer-id'],
        metricsPort: values['metrics-port'],
        metricsHost: values['metrics-host'],
      });
    default:
      console.error(`bucketq: unknown command '${command}' (valid: migrate, demo, worker, status, topic, group, send, dlq, rewind, maintain, ui)\n\n${USAGE}`);
      return 2;
  }
}

function describeError(err: unknown): string {
  if (err instanceof BucketqError) {
    return [`${err.name} [${err.code}]: ${err.message}`, err.detail && `detail: ${err.detail}`, err.hint && `hint: ${err.hint}`].filter(Boolean).join('\n');
  }
  if (err instanceof CliError || err instanceof EmbeddedPostgresUnavailableError) return err.message;
  // Postgres errors (connection refused, auth, SQL): the message is what matters.
  if (err instanceof Error && ('severity' in err || 'code' in err)) {
    const hint = (err as { hint?: string }).hint;
    return `${err.message}${hint ? `\nhint: ${hint}` : ''}`;
  }
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** Runs the CLI and sets the process exit code; errors are printed, not thrown. */
export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (err) {
    console.error(`bucketq: ${printable(describeError(err))}`); // errors may quote input and data
    process.exitCode = 1;
  }
}

// Run when executed directly (node dist/src/cli.js, tsx src/cli.ts); bin/bucketq.js calls run().
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run(process.argv.slice(2));
}
