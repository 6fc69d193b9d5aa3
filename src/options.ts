// Validation of every option object at the edge, once, with messages that name the
// field, what was given and the valid choices. SQL re-checks what only it can know.
import type pg from 'pg';
import { z } from 'zod';
import { ConfigError } from './errors.js';

/** Describes a bad value for an error message without dumping large objects. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'an invalid Date' : v.toISOString();
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `${v}n`;
  try {
    const json = JSON.stringify(v);
    if (json === undefined) return typeof v;
    return json.length > 80 ? `${json.slice(0, 77)}...` : json;
  } catch {
    return typeof v;
  }
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** Interval: a Postgres interval string ('7 days') or a number of seconds, sent as text. */
function interval(field: string) {
  const message = (v: unknown) => `${field} must be a Postgres interval like '30 seconds' or a non-negative number of seconds, got ${describeValue(v)}`;
  return z
    .union([z.number(), z.string()], { error: (iss) => message(iss.input) })
    .superRefine((v, ctx) => {
      const ok = typeof v === 'number' ? Number.isFinite(v) && v >= 0 : v.trim() !== '';
      if (!ok) ctx.addIssue({ code: 'custom', message: message(v) });
    })
    .transform((v) => (typeof v === 'number' ? `${v} seconds` : v.trim()));
}

function positiveInt(field: string, max = 2_147_483_647) {
  return z.number({ error: (iss) => `${field} must be an integer, got ${describeValue(iss.input)}` }).superRefine((v, ctx) => {
    if (!Number.isInteger(v) || v < 1 || v > max) ctx.addIssue({ code: 'custom', message: `${field} must be an integer from 1 to ${max}, got ${describeValue(v)}` });
  });
}

function nonEmptyString(field: string) {
  return z.string({ error: (iss) => `${field} must be a string, got ${describeValue(iss.input)}` }).min(1, { error: `${field} must not be empty` });
}

const pgClient = z.custom<pg.ClientBase>((v) => typeof v === 'object' && v !== null && typeof (v as { query?: unknown }).query === 'function', {
  error: 'client must be a pg client (for example one checked out of a Pool inside your transaction)',
});

/** A 64-bit id from the database: accepted as string, bigint or safe integer; sent as text. */
const bigintId = (field: string) =>
  z
    .union([z.string().regex(/^-?\d+$/), z.bigint(), z.number().int().refine(Number.isSafeInteger)], {
      error: (iss) => `${field} must be an integer id (string, bigint or safe integer), got ${describeValue(iss.input)}`,
    })
    .transform((v) => String(v));

const headers = z.custom<Record<string, unknown>>(isPlainObject, { error: (iss) => `headers must be a plain JSON object, got ${describeValue(iss.input)}` });
const date = (field: string) => z.date({ error: (iss) => `${field} must be a valid Date, got ${describeValue(iss.input)}` });

// ---- client ---------------------------------------------------------------

export const clientOptionsSchema = z
  .object({
    connectionString: z.string().optional(),
    pool: z.custom<pg.Pool>((v) => typeof v === 'object' && v !== null && typeof (v as { connect?: unknown }).connect === 'function' && 'totalCount' in v).optional(),
    /** Pool size when bucketq creates the pool from connectionString. */
    poolMax: positiveInt('poolMax', 1000).optional(),
    /**
     * Default true: sends, claims and acks run as named prepared statements (prepared
     * once per connection). false behind a pooler that does not keep them across
     * transactions, such as PgBouncer in transaction mode before 1.21.
     */
    preparedStatements: z.boolean({ error: 'preparedStatements must be true or false' }).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if ((o.connectionString === undefined) === (o.pool === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'pass exactly one of { connectionString: string } or { pool: pg.Pool }' });
    }
    if (o.pool !== undefined && o.poolMax !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['poolMax'], message: 'poolMax only applies with connectionString; size your own pool instead' });
    }
  });
export type ClientOptions = ({ connectionString: string; poolMax?: number } | { pool: pg.Pool }) & { preparedStatements?: boolean };

// ---- topics and groups ----------------------------------------------------

export const topicNameSchema = nonEmptyString('topic');
export const groupNameSchema = nonEmptyString('group');
export const scheduleNameSchema = nonEmptyString('schedule');
export const consumerIdSchema = nonEmptyString('consumerId');

export const createTopicOptionsSchema = z
  .object({
    buckets: positiveInt('buckets', 65_536).optional(),
    retention: interval('retention').optional(),
    maxPayloadBytes: positiveInt('maxPayloadBytes').optional(),
    partitionInterval: interval('partitionInterval').optional(),
  })
  .strict();
export type CreateTopicOptions = z.input<typeof createTopicOptionsSchema>;

export const createGroupOptionsSchema = z
  .object({
    startAt: z
      .union([z.literal('earliest'), z.literal('latest'), z.date()], {
        error: (iss) => `startAt must be 'earliest', 'latest' or a Date, got ${describeValue(iss.input)}`,
      })
      .optional(),
    maxAttempts: positiveInt('maxAttempts').optional(),
    onExhausted: z.enum(['skip', 'block'], { error: (iss) => `onExhausted must be 'skip' or 'block', got ${describeValue(iss.input)}` }).optional(),
    backoffBase: interval('backoffBase').optional(),
    backoffMax: interval('backoffMax').optional(),
    leaseTimeout: interval('leaseTimeout').optional(),
    sessionTimeout: interval('sessionTimeout').optional(),
  })
  .strict();
export type CreateGroupOptions = z.input<typeof createGroupOptionsSchema>;

// ---- send -----------------------------------------------------------------

const messageFields = {
  key: z.string({ error: (iss) => `key must be a string, got ${describeValue(iss.input)}` }).optional(),
  headers: headers.optional(),
  idempotencyKey: nonEmptyString('idempotencyKey').optional(),
  notBefore: date('notBefore').optional(),
};

export const sendOptionsSchema = z.object({ ...messageFields, client: pgClient.optional() }).strict();
export type SendOptions = z.input<typeof sendOptionsSchema>;

export const batchMessageSchema = z.object({ payload: z.unknown(), ...messageFields }).strict();
export type BatchMessage<P = unknown> = Omit<z.input<typeof batchMessageSchema>, 'payload'> & { payload: P };
export const batchMessagesSchema = z.array(batchMessageSchema, { error: (iss) => `messages must be an array, got ${describeValue(iss.input)}` });

export const sendBatchOptionsSchema = z.object({ client: pgClient.optional() }).strict();
export type SendBatchOptions = z.input<typeof sendBatchOptionsSchema>;

// ---- lobby ----------------------------------------------------------------

export const joinOptionsSchema = z.object({ meta: z.custom<Record<string, unknown>>(isPlainObject, { error: (iss) => `meta must be a plain JSON object, got ${describeValue(iss.input)}` }).optional() }).strict();
export type JoinOptions = z.input<typeof joinOptionsSchema>;

// ---- claim / ack / nack ---------------------------------------------------

export const claimOptionsSchema = z
  .object({
    max: positiveInt('max', 100_000).optional(),
    buckets: z
      .array(z.number().int().nonnegative(), { error: (iss) => `buckets must be an array of bucket numbers (integers >= 0), got ${describeValue(iss.input)}` })
      .optional(),
    leaseTimeout: interval('leaseTimeout').optional(),
    /** Up to this many consecutive messages of one key (a run, to be handled and acked in order); default 1. */
    maxPerKey: positiveInt('maxPerKey', 10_000).optional(),
  })
  .strict();
export type ClaimOptions = z.input<typeof claimOptionsSchema>;

export const ackItemsSchema = z.array(z.object({ msgId: bigintId('msgId'), leaseToken: bigintId('leaseToken') }), {
  error: (iss) => `items must be an array of { msgId, leaseToken }, got ${describeValue(iss.input)}`,
});
export type AckItem = z.input<typeof ackItemsSchema>[number];

export const ackOptionsSchema = z
  .object({
    consumerId: nonEmptyString('consumerId').optional(),
    strict: z.boolean().optional(),
    client: pgClient.optional(),
  })
  .strict();
export type AckOptions = z.input<typeof ackOptionsSchema>;

export const nackItemsSchema = z.array(
  z.object({ msgId: bigintId('msgId'), leaseToken: bigintId('leaseToken'), error: z.string().optional() }),
  { error: (iss) => `items must be an array of { msgId, leaseToken, error? }, got ${describeValue(iss.input)}` },
);
export type NackItem = z.input<typeof nackItemsSchema>[number];

export const nackOptionsSchema = z
  .object({
    retryDelay: interval('retryDelay').optional(),
    strict: z.boolean().optional(),
    client: pgClient.optional(),
  })
  .strict();
export type NackOptions = z.input<typeof nackOptionsSchema>;

export const msgIdsSchema = z.array(bigintId('msgId'), { error: (iss) => `msgIds must be an array of message ids, got ${describeValue(iss.input)}` });

// ---- parsing --------------------------------------------------------------

/** Parses input or throws a ConfigError listing every problem with its path. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = formatIssues(result.error, schema);
  throw new ConfigError(`invalid ${what}:\n${issues.map((i) => `  - ${i}`).join('\n')}`, issues, { cause: result.error });
}

/** One line per issue: "path: message", unknown keys listed with the valid ones. */
export function formatIssues(error: z.ZodError, schema?: z.ZodType): string[] {
  const validKeys = schema instanceof z.ZodObject ? Object.keys(schema.shape) : undefined;
  return error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : undefined;
    let text = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => `'${k}'`).join(', ');
      text = `unknown option${issue.keys.length > 1 ? 's' : ''} ${keys}${validKeys && issue.path.length === 0 ? ` (valid: ${validKeys.join(', ')})` : ''}`;
    }
    return path ? `${path}: ${text}` : text;
  });
}

/** bq.schedule() options (the payload is any JSON value and is passed through as is). */
export const scheduleDefinitionSchema = z
  .object({
    topic: z.string({ error: 'topic is required: the topic the scheduled message is sent to' }).min(1, 'topic must not be empty'),
    cron: z
      .string({ error: "cron is required: five fields, e.g. '*/15 * * * *' (every 15 minutes) or '0 3 * * *' (03:00 daily)" })
      .min(1, 'cron must not be empty'),
    payload: z.unknown().refine((v) => v !== undefined && v !== null, 'payload is required: any JSON value except null'),
    key: z.string().min(1).max(1024).nullable().optional(),
    timezone: z.string().min(1, "timezone must not be empty: an IANA name such as 'UTC' or 'Europe/Paris'").optional(),
    headers: z.record(z.string(), z.unknown()).nullable().optional(),
    paused: z.boolean().optional(),
  })
  .strict();
