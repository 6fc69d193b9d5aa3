// `bucketq worker --group G --handler ./handler.js`: run a consumer until SIGTERM or
// SIGINT (graceful: finish in-flight work, release buckets, leave); a second signal
// exits at once.
import { Command, Option } from 'commander';
import { z } from 'zod';
import { validate } from './args.js';
import { runs, databaseUrl } from './command.js';
import { resolveDatabase } from './database.js';
import { consume, type Consumer } from '../worker/consumer.js';
import { loadHandler } from './load-handler.js';
import { createLogger } from '../log.js';
import { underNpm, watchParent } from './parent-watch.js';

const intFrom = (what: string) =>
  z.coerce.number({ error: `${what} must be a number` }).int(`${what} must be a whole number`).positive(`${what} must be positive`);

const workerArgsSchema = z.object({
  group: z.string({ error: 'set --group or BUCKETQ_GROUP' }).min(1),
  handler: z.string({ error: 'set --handler or BUCKETQ_HANDLER: a module exporting the handler' }).min(1),
  concurrency: intFrom('--concurrency').optional(),
  batchSize: intFrom('--batch-size').optional(),
  maxPerKey: intFrom('--max-per-key').optional(),
  transaction: z.enum(['batch', 'message'], { error: "--transaction must be 'batch' or 'message'" }).optional(),
  claimMode: z.enum(['auto', 'lock', 'lease'], { error: "--claim-mode must be 'auto', 'lock' or 'lease'" }).optional(),
  heartbeatMs: intFrom('--heartbeat-ms').optional(),
  pollMs: intFrom('--poll-ms').optional(),
  leaseMs: intFrom('--lease-ms').optional(),
  handlerTimeoutMs: intFrom('--handler-timeout-ms').optional(),
  stopTimeoutMs: intFrom('--stop-timeout-ms').default(30_000),
  consumerId: z.string().min(1).optional(),
  metricsPort: z.coerce
    .number({ error: '--metrics-port must be a number' })
    .int('--metrics-port must be a whole number')
    .min(0, '--metrics-port must be from 0 (off) to 65535')
    .max(65535, '--metrics-port must be from 0 (off) to 65535')
    .optional(),
  schedules: z.boolean().optional(),
  metricsHost: z.string().min(1, "--metrics-host must not be empty: use 127.0.0.1 (this machine only, the default) or 0.0.0.0 (all interfaces)").optional(),
});

export type WorkerArgs = Partial<Record<Exclude<keyof z.input<typeof workerArgsSchema>, 'databaseUrl' | 'schedules'>, string>> & { schedules?: boolean };

/** Each worker flag once: its help and the environment variable it falls back to (flags win). */
const WORKER_FLAGS: readonly [flags: string, description: string, env: string][] = [
  ['--group <group>', 'the consumer group to consume (required)', 'BUCKETQ_GROUP'],
  ['--handler <module>', 'a module whose default export (or `handler` export) handles one message (required; .ts through tsx)', 'BUCKETQ_HANDLER'],
  ['--concurrency <n>', 'transactions (batches) at once (default 10)', 'BUCKETQ_CONCURRENCY'],
  ['--batch-size <n>', 'messages per claim (default 100)', 'BUCKETQ_BATCH_SIZE'],
  ['--max-per-key <n>', 'consecutive messages of one key per claim (default: the batch size)', 'BUCKETQ_MAX_PER_KEY'],
  ['--transaction <mode>', "batch (one transaction per batch, the default) or message", 'BUCKETQ_TRANSACTION'],
  ['--claim-mode <mode>', 'auto (default), lock or lease', 'BUCKETQ_CLAIM_MODE'],
  ['--heartbeat-ms <n>', "heartbeat interval (default: a third of the group's session timeout)", 'BUCKETQ_HEARTBEAT_MS'],
  ['--poll-ms <n>', 'claim at least this often without a notification (default 1000)', 'BUCKETQ_POLL_MS'],
  ['--lease-ms <n>', "lease timeout (default: the group's)", 'BUCKETQ_LEASE_MS'],
  ['--handler-timeout-ms <n>', 'deadline of one handler run (default: the lease timeout)', 'BUCKETQ_HANDLER_TIMEOUT_MS'],
  ['--stop-timeout-ms <n>', 'on SIGTERM/SIGINT, wait this long for handlers in flight (default 30000)', 'BUCKETQ_STOP_TIMEOUT_MS'],
  ['--consumer-id <id>', 'this process in the group (default: host:pid:random)', 'BUCKETQ_CONSUMER_ID'],
  ['--metrics-port <n>', 'serve Prometheus /metrics and /health on this port (0: off)', 'BUCKETQ_METRICS_PORT'],
  ['--metrics-host <addr>', 'listen there (default 127.0.0.1; 0.0.0.0 for all interfaces)', 'BUCKETQ_METRICS_HOST'],
];

function defineWorker(cmd: Command): Command {
  cmd
    .summary('consume a group with a handler module')
    .description('consume a group with a handler module until SIGTERM/SIGINT (graceful: finish in-flight work, release buckets, leave); a second signal exits at once')
    .addHelpText(
      'after',
      '\nBehind PgBouncer in transaction mode (before 1.21): BUCKETQ_PREPARED_STATEMENTS=off (claims, acks and sends are prepared statements otherwise).' +
        '\n\nexample:\n  bucketq worker --group billing --handler ./handler.js --concurrency 20 --metrics-port 9464',
    );
  for (const [flags, description, env] of WORKER_FLAGS) cmd.addOption(new Option(flags, description).env(env));
  cmd.addOption(new Option('--no-schedules', "do not send the topic's scheduled messages (other workers do; see `bucketq schedule`)"));
  return cmd;
}

export function registerWorker(program: Command): void {
  defineWorker(program.command('worker')).action(runs(async (flags: WorkerArgs, cmd: Command) => workerCommand(flags, databaseUrl(cmd))));
}

/** The worker's flags as commander parses them, with `env` as the environment (for tests). */
export function parseWorkerFlags(argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerArgs {
  const saved = process.env;
  process.env = env;
  try {
    const cmd = defineWorker(new Command('worker')).exitOverride();
    cmd.parse(argv, { from: 'user' });
    return cmd.opts<WorkerArgs>();
  } finally {
    process.env = saved;
  }
}

async function workerCommand(flags: WorkerArgs, url: string | undefined): Promise<number> {
  const args = validate('worker', workerArgsSchema, flags);
  const handler = await loadHandler(args.handler);
  const db = await resolveDatabase(url, { allowEmbedded: false });
  // Signals are taken from before the start: one that comes while the consumer joins and
  // warms its connections stops it as soon as it has started (and it leaves the group).
  const log = createLogger();
  let consumer: Consumer | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let signals = 0;
  const stop = (c: Consumer, signal: NodeJS.Signals) => {
    c.log.info({ signal }, 'stopping: finishing in-flight work (send the signal again to exit now)');
    void c.stop({ timeoutMs: args.stopTimeoutMs });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      (consumer?.log ?? log).warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    if (consumer) stop(consumer, signal);
    else stopSignal = signal;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Watched from the start too: the parent it records is the one that started us.
  const parentWatch = underNpm()
    ? watchParent((parent) => {
        (consumer?.log ?? log).warn({ parent }, 'the npm/npx process that started this worker exited (npm does not pass SIGTERM on): stopping as on SIGTERM');
        onSignal('SIGTERM');
      })
    : undefined;
  try {
    consumer = await consume(
      { connectionString: db.connectionString },
      {
        group: args.group,
        handler,
        concurrency: args.concurrency,
        batchSize: args.batchSize,
        maxPerKey: args.maxPerKey,
        transaction: args.transaction,
        claimMode: args.claimMode,
        heartbeatIntervalMs: args.heartbeatMs,
        pollIntervalMs: args.pollMs,
        leaseTimeoutMs: args.leaseMs,
        handlerTimeoutMs: args.handlerTimeoutMs,
        consumerId: args.consumerId,
        metricsPort: args.metricsPort,
        metricsHost: args.metricsHost,
        schedules: args.schedules,
      },
      log,
    );
  } catch (err) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    parentWatch?.stop();
    throw err;
  }
  if (stopSignal) stop(consumer, stopSignal);
  await consumer.stopped;
  parentWatch?.stop();
  return 0;
}
