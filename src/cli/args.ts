// Shared plumbing for the commands: commander parses (src/cli.ts), these validate flag
// values with zod into messages that name the flag and the fix (usage errors, exit 2),
// and open one small client on --database-url / DATABASE_URL / the PG* variables.
import { z } from 'zod';
import { BucketQ } from '../client.js';
import { readSchemaVersion } from '../migrate.js';
import { CliError, UsageError } from './cli-error.js';
import { resolveDatabase } from './database.js';

/** Validates flag values; every problem on its own line, named by the flag. */
export function validate<S extends z.ZodType>(command: string, schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  - ${i.message}`);
  throw new UsageError(`${command}: invalid option${lines.length > 1 ? 's' : ''}:\n${lines.join('\n')}`);
}

const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : String(v));

/** A whole-number flag given as text. */
export function intFlag(flag: string, min: number, max: number) {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `${flag} must be a whole number from ${min} to ${max}, got ${show(v)}` });
        return z.NEVER;
      }
      return n;
    });
}

/** A required string flag. */
export function requiredFlag(flag: string, what: string) {
  return z.string({ error: `${flag} is required: ${what}` }).refine((v) => v.trim() !== '', { error: `${flag} must not be empty: ${what}` });
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RELATIVE = /^(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)(?:\s+ago)?$/i;

/**
 * A point in time: an ISO 8601 timestamp (2024-05-01T12:00:00Z, 2024-05-01 12:00+02) or a
 * duration back from now (90s, 15m, 2h, 1d, "30 minutes ago").
 */
export function parseTime(text: string): Date | undefined {
  const t = text.trim();
  const rel = RELATIVE.exec(t);
  if (rel) {
    const unit = rel[2]!.toLowerCase();
    const ms = unit === 'ms' ? 1 : UNITS[unit[0]!]!; // s, m(in), h(our), d(ay)
    return new Date(Date.now() - Number(rel[1]) * ms);
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(t)) return undefined;
  const d = new Date(t.replace(/^(\d{4}-\d{2}-\d{2}) /, '$1T'));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A point in time ahead: an ISO 8601 timestamp, or a duration from now (30s, 5m, 2h, 1d, "in 10 minutes"). */
export function parseFutureTime(text: string): Date | undefined {
  const t = text.trim().replace(/^in\s+/i, '');
  const rel = /^(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|d|days?)$/i.exec(t);
  if (rel) {
    const unit = rel[2]!.toLowerCase();
    const ms = unit === 'ms' ? 1 : UNITS[unit[0]!]!;
    return new Date(Date.now() + Number(rel[1]) * ms);
  }
  return /\d{4}-\d{2}-\d{2}/.test(t) ? parseTime(t) : undefined;
}

export const FUTURE_TIME_HELP = 'an ISO timestamp like 2030-05-01T12:00:00Z or a duration from now like 30s, 15m, 2h';

export const TIME_HELP = "an ISO timestamp like 2024-05-01T12:00:00Z or a duration back from now like 15m, 2h, 1d";

/** A connected client for one command; close() ends it. */
export async function openClient(databaseUrl: string | undefined): Promise<{ bq: BucketQ; close(): Promise<void> }> {
  const db = await resolveDatabase(databaseUrl, { allowEmbedded: false });
  const bq = new BucketQ({ connectionString: db.connectionString, poolMax: 2 });
  const close = async () => {
    await bq.close();
    await db.release();
  };
  try {
    if ((await readSchemaVersion(bq.pool)) === 0) {
      throw new CliError(`bucketq is not installed in this database (${db.description}): run \`bucketq migrate\` first`);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { bq, close };
}

/** Runs fn with a client and always closes it. */
export async function withCliClient<T>(databaseUrl: string | undefined, fn: (bq: BucketQ) => Promise<T>): Promise<T> {
  const { bq, close } = await openClient(databaseUrl);
  try {
    return await fn(bq);
  } finally {
    await close();
  }
}

/** Throws a CliError naming the group and the groups that do exist. */
export async function assertGroupExists(bq: BucketQ, command: string, group: string): Promise<void> {
  const { rows } = await bq.pool.query<{ group_name: string }>('select group_name from bucketq.groups order by group_name');
  if (rows.some((r) => r.group_name === group)) return;
  const known = rows.map((r) => r.group_name);
  throw new CliError(
    `${command}: unknown group '${group}' (--group); ${known.length ? `known groups: ${known.slice(0, 20).join(', ')}${known.length > 20 ? ', ...' : ''}` : 'there are no groups yet: create one with `bucketq group create NAME --topic T`'}`,
  );
}

/** Checks interval flags with Postgres itself, so the error names the flag instead of a bare SQLSTATE. */
export async function checkIntervals(bq: BucketQ, command: string, flags: Record<string, string | undefined>): Promise<void> {
  const problems: string[] = [];
  for (const [flag, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    try {
      await bq.pool.query('select $1::interval', [value]);
    } catch {
      problems.push(`  - ${flag} must be a Postgres interval like '30 seconds', '7 days' or '1h', got ${show(value)}`);
    }
  }
  if (problems.length) throw new UsageError(`${command}: invalid option${problems.length > 1 ? 's' : ''}:\n${problems.join('\n')}`);
}
