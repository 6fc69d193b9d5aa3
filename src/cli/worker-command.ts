// `bucketq worker --group G --handler ./handler.js`: run a consumer until SIGTERM or
// SIGINT (graceful: finish in-flight work, release buckets, leave); a second signal
// exits at once.
import { z } from 'zod';
import { parseOrThrow } from '../options.js';
import { consume } from '../worker/consumer.js';
import { loadHandler } from './load-handler.js';
import { underNpm, watchParent } from './parent-watch.js';

const intFrom = (what: string) =>
  z.coerce.number({ error: `${what} must be a number` }).int(`${what} must be a whole number`).positive(`${what} must be positive`);

const workerArgsSchema = z.object({
  databaseUrl: z.string({ error: 'set --database-url or DATABASE_URL' }).min(1, 'set --database-url or DATABASE_URL'),
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
  metricsHost: z.string().min(1, "--metrics-host must not be empty: use 127.0.0.1 (this machine only, the default) or 0.0.0.0 (all interfaces)").optional(),
});

export type WorkerArgs = Partial<Record<keyof z.input<typeof workerArgsSchema>, string>>;

/** Flags win over environment variables (BUCKETQ_GROUP, BUCKETQ_CONCURRENCY, ...). */
export function workerArgsFromEnv(flags: WorkerArgs, env: NodeJS.ProcessEnv = process.env): WorkerArgs {
  const pick = (flag: string | undefined, name: string) => flag ?? env[name];
  return {
    databaseUrl: pick(flags.databaseUrl, 'DATABASE_URL'),
    group: pick(flags.group, 'BUCKETQ_GROUP'),
    handler: pick(flags.handler, 'BUCKETQ_HANDLER'),
    concurrency: pick(flags.concurrency, 'BUCKETQ_CONCURRENCY'),
    batchSize: pick(flags.batchSize, 'BUCKETQ_BATCH_SIZE'),
    maxPerKey: pick(flags.maxPerKey, 'BUCKETQ_MAX_PER_KEY'),
    transaction: pick(flags.transaction, 'BUCKETQ_TRANSACTION'),
    claimMode: pick(flags.claimMode, 'BUCKETQ_CLAIM_MODE'),
    heartbeatMs: pick(flags.heartbeatMs, 'BUCKETQ_HEARTBEAT_MS'),
    pollMs: pick(flags.pollMs, 'BUCKETQ_POLL_MS'),
    leaseMs: pick(flags.leaseMs, 'BUCKETQ_LEASE_MS'),
    handlerTimeoutMs: pick(flags.handlerTimeoutMs, 'BUCKETQ_HANDLER_TIMEOUT_MS'),
    stopTimeoutMs: pick(flags.stopTimeoutMs, 'BUCKETQ_STOP_TIMEOUT_MS'),
    consumerId: pick(flags.consumerId, 'BUCKETQ_CONSUMER_ID'),
    metricsPort: pick(flags.metricsPort, 'BUCKETQ_METRICS_PORT'),
    metricsHost: pick(flags.metricsHost, 'BUCKETQ_METRICS_HOST'),
  };
}

export async function workerCommand(raw: WorkerArgs): Promise<number> {
  const args = parseOrThrow(workerArgsSchema, workerArgsFromEnv(raw), 'worker options');
  const handler = await loadHandler(args.handler);
  const consumer = await consume(
    { connectionString: args.databaseUrl },
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
    },
  );
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      consumer.log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    consumer.log.info({ signal }, 'stopping: finishing in-flight work (send the signal again to exit now)');
    void consumer.stop({ timeoutMs: args.stopTimeoutMs });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const parentWatch = underNpm()
    ? watchParent((parent) => {
        consumer.log.warn({ parent }, 'the npm/npx process that started this worker exited (npm does not pass SIGTERM on): stopping as on SIGTERM');
        onSignal('SIGTERM');
      })
    : undefined;
  await consumer.stopped;
  parentWatch?.stop();
  return 0;
}
