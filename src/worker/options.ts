// consume() options, validated once at the edge.
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ClaimedMessage } from '../queries/consume.js';
import { parseOrThrow } from '../options.js';

/** What a handler gets besides the message. */
export interface HandlerContext {
  /**
   * The transaction the ack commits in. Write effects through it: they commit if and
   * only if the ack commits (exactly-once effects).
   */
  client: pg.ClientBase;
  /** 1 on the first delivery. */
  attempt: number;
  /**
   * Aborted when this handler's time is up (handlerTimeoutMs, default the lease timeout)
   * or the consumer stops hard (stop's timeoutMs passed). The worker does not wait for
   * the handler after that: the message fails (it is nacked with the reason), the
   * handler's queries on `client` fail, and one it is running is cancelled. Pass it on
   * to fetch and other calls that take a signal.
   */
  signal: AbortSignal;
  group: string;
  consumerId: string;
  log: Logger;
}

export type Handler<P = unknown> = (message: ClaimedMessage<P>, ctx: HandlerContext) => Promise<void> | void;

const positiveInt = (what: string, max: number) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be a whole number`)
    .min(1, `${what} must be at least 1`)
    .max(max, `${what} must be at most ${max}`);

export const consumeOptionsSchema = z
  .object({
    group: z.string({ error: 'group is required: the consumer group name' }).min(1, 'group must not be empty'),
    handler: z.custom<Handler>((v) => typeof v === 'function', 'handler must be a function (message, ctx) => Promise<void>'),
    consumerId: z.string().min(1).max(200).optional(),
    /** Transactions running at once (handler concurrency across keys). */
    concurrency: positiveInt('concurrency', 1000).default(10),
    /** Messages per claim round trip. */
    batchSize: positiveInt('batchSize', 10000).default(100),
    /**
     * Consecutive messages of one key a claim may lease together (a run), handled in
     * key_seq order. A claim takes the ready keys oldest first, each with its run, until
     * batchSize is reached. Default: batchSize. 1: one message per key per claim.
     */
    maxPerKey: positiveInt('maxPerKey', 10000).optional(),
    /**
     * 'batch': one transaction per claimed batch, a savepoint per message (a failing
     * message rolls back only its own effects). 'message': one transaction each.
     */
    transaction: z
      .enum(['batch', 'message'], { error: "transaction must be 'batch' or 'message'" })
      .default('batch'),
    /**
     * How a batch holds its messages ('batch' transactions only). 'lock': claim_locked
     * locks the rows in the batch's own transaction, which handles and acks them: no
     * lease is written, and a crashed worker's messages are ready again at once, but
     * each batch first records its attempt (one more round trip before the handlers).
     * 'lease': claim writes a lease first (its own commit), as 'message' transactions
     * always do. 'auto' (default): leases while claims come back partly full (low
     * latency), locks while they come back full (a backlog: throughput).
     */
    claimMode: z.enum(['auto', 'lock', 'lease'], { error: "claimMode must be 'auto', 'lock' or 'lease'" }).optional(),
    /**
     * Default true: claims, acks, nacks and heartbeats run as named prepared statements.
     * false behind a pooler that does not keep them across transactions (PgBouncer in
     * transaction mode before 1.21); BUCKETQ_PREPARED_STATEMENTS=off does the same.
     */
    preparedStatements: z.boolean({ error: 'preparedStatements must be true or false' }).default(true),
    /** Poll fallback when no notification arrives. */
    pollIntervalMs: positiveInt('pollIntervalMs', 3_600_000).default(1000),
    /** Default: a third of the group's session_timeout. */
    heartbeatIntervalMs: positiveInt('heartbeatIntervalMs', 3_600_000).optional(),
    /** Lease per claim; default: the group's lease_timeout. */
    leaseTimeoutMs: positiveInt('leaseTimeoutMs', 86_400_000).optional(),
    /**
     * The longest one handler may run. Past it the handler's ctx.signal is aborted, it
     * is cut off from its transaction and its message is nacked with a timeout error
     * (an attempt counted, retried with backoff or dead-lettered), so a hung handler
     * cannot hold its buckets. Default: the lease timeout.
     */
    handlerTimeoutMs: z
      .number({ error: 'handlerTimeoutMs must be a number of milliseconds, e.g. 30000' })
      .int('handlerTimeoutMs must be a whole number of milliseconds')
      .min(1, 'handlerTimeoutMs must be at least 1 ms (it is how long one handler may run before its message fails)')
      .max(86_400_000, 'handlerTimeoutMs must be at most 86400000 (24 hours)')
      .optional(),
    /**
     * How often this worker runs bucketq.maintain(wait => false) (partitions ahead,
     * retention); 0 disables. Workers skip the run while another one is at it.
     */
    maintenanceIntervalMs: z.number().int().min(0).max(86_400_000).default(60_000),
    /**
     * Serve Prometheus metrics on GET /metrics and a readiness probe on GET /health on
     * this TCP port (on metricsHost); 0 or undefined: no server.
     */
    metricsPort: z
      .number({ error: 'metricsPort must be a port number' })
      .int('metricsPort must be a whole number')
      .min(0, 'metricsPort must be from 0 (off) to 65535')
      .max(65535, 'metricsPort must be from 0 (off) to 65535')
      .optional(),
    /**
     * The address the metrics server listens on. Default '127.0.0.1': this machine only
     * (metrics name groups and topics, and /health tells who is ready). '0.0.0.0' or '::'
     * for all interfaces, e.g. for a Prometheus scraping from another host.
     */
    metricsHost: z
      .string({ error: "metricsHost must be a host name or address to listen on, e.g. '127.0.0.1' or '0.0.0.0'" })
      .min(1, "metricsHost must not be empty: use '127.0.0.1' (this machine only, the default) or '0.0.0.0' (all interfaces)")
      .optional(),
    /**
     * Turns the payload's JSON text, exactly as stored, into message.payload. By default
     * payloads are parsed with JSON.parse, which rounds integers beyond 2^53
     * (9007199254740993 arrives as 9007199254740992) and long decimals. `(text) => text`
     * hands handlers the text; a bigint-aware parser (json-bigint, lossless-json) keeps
     * every digit. Runs before the handler, as part of its attempt: if it throws, the
     * message fails like a handler that throws.
     */
    parsePayload: z
      .custom<(text: string) => unknown>((v) => typeof v === 'function', 'parsePayload must be a function (text: string) => payload, e.g. (text) => text for the exact JSON text')
      .optional(),
    /**
     * Fire the due scheduled messages of this group's topic (bq.schedule) on every
     * heartbeat. Any number of workers may: each slot is sent once. false: leave it to
     * other workers.
     */
    schedules: z.boolean({ error: 'schedules must be true or false' }).default(true),
    /** Wait for LISTEN wake-ups (disable to rely on polling only). */
    listen: z.boolean().default(true),
    meta: z.unknown().optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if ((o.claimMode === 'lock' || o.claimMode === 'auto') && o.transaction === 'message') {
      ctx.addIssue({
        code: 'custom',
        path: ['claimMode'],
        message: `claimMode '${o.claimMode}' needs transaction 'batch' (a batch's locks live in its one transaction); use claimMode 'lease' with transaction 'message'`,
      });
    }
    if (o.handlerTimeoutMs !== undefined && o.leaseTimeoutMs !== undefined && o.handlerTimeoutMs > o.leaseTimeoutMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['handlerTimeoutMs'],
        message: `handlerTimeoutMs (${o.handlerTimeoutMs}) is longer than leaseTimeoutMs (${o.leaseTimeoutMs}): the lease would run out first and the message be delivered again while the handler still runs; lower handlerTimeoutMs or raise leaseTimeoutMs`,
      });
    }
    if (o.heartbeatIntervalMs !== undefined && o.heartbeatIntervalMs < 50) {
      ctx.addIssue({ code: 'custom', path: ['heartbeatIntervalMs'], message: 'heartbeatIntervalMs must be at least 50 ms' });
    }
  });

export type ConsumeOptionsInput = z.input<typeof consumeOptionsSchema>;
export type ConsumeOptions = z.output<typeof consumeOptionsSchema>;

export function parseConsumeOptions(input: unknown): ConsumeOptions {
  return parseOrThrow(consumeOptionsSchema, input, 'consume options');
}
