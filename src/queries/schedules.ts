// Scheduled messages: bucketq.create_schedule / drop_schedule, and the workers' firing
// (bucketq._due_schedules then _fire_schedules in one transaction). Postgres does not
// parse cron: occurrences are computed here with cron-parser, and SQL checks that a
// next slot lies ahead of its clock on a whole minute.
import { CronExpressionParser } from 'cron-parser';
import type pg from 'pg';
import { InvalidArgumentError } from '../errors.js';
import { namedCall } from '../db/named-call.js';
import { query } from '../db/query.js';
import { withClient, type Queryable } from '../db/with-client.js';

const MACROS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);
const CRON_HINT =
  "five fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *' or '0 3 * * MON'; or @hourly, @daily, @weekly, @monthly, @yearly";

/** Why `cron` in `timezone` is not a schedule bucketq can run, or undefined when it is. */
export function cronProblem(cron: string, timezone = 'UTC'): string | undefined {
  const text = cron.trim();
  if (text.startsWith('@')) {
    if (!MACROS.has(text.toLowerCase())) return `unknown macro ${JSON.stringify(text)}: ${CRON_HINT}`;
  } else {
    const fields = text.split(/\s+/);
    if (fields.length !== 5) {
      return `${JSON.stringify(text)} has ${fields.length} field${fields.length === 1 ? '' : 's'}; schedules fire on whole minutes: ${CRON_HINT}`;
    }
    if (/H/i.test(text.replace(/THU|SUN|MON|TUE|WED|FRI|SAT|[A-Z]{3}/gi, ''))) {
      return `${JSON.stringify(text)}: the random H field is not supported (every worker would pick another value)`;
    }
  }
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    return `unknown time zone ${JSON.stringify(timezone)}: use an IANA name such as 'UTC' or 'Europe/Paris'`;
  }
  try {
    CronExpressionParser.parse(text, { tz: timezone, currentDate: new Date() }).next();
  } catch (err) {
    return `${JSON.stringify(text)} is not a valid cron expression (${(err as Error).message}): ${CRON_HINT}`;
  }
  return undefined;
}

/** The first occurrence of `cron` in `timezone` strictly after `after` (a whole minute). */
export function nextSlot(cron: string, timezone: string, after: Date): Date {
  const problem = cronProblem(cron, timezone);
  if (problem) throw new InvalidArgumentError(`invalid schedule: ${problem}`);
  // From the whole minute at or after `after`, so the slot is on a minute and after it.
  const from = new Date(Math.floor(after.getTime() / 60_000) * 60_000 + 59_999);
  const next = CronExpressionParser.parse(cron.trim(), { tz: timezone, currentDate: from }).next().toDate();
  return new Date(Math.floor(next.getTime() / 60_000) * 60_000);
}

export interface ScheduleDefinition {
  topic: string;
  cron: string;
  payload: unknown;
  key?: string | null | undefined;
  /** IANA time zone the cron expression is read in; default 'UTC'. */
  timezone?: string | undefined;
  headers?: Record<string, unknown> | null | undefined;
  paused?: boolean | undefined;
}

/** true when created or changed, false when it already existed with this definition. */
export async function createSchedule(db: Queryable, name: string, d: ScheduleDefinition, now: Date = new Date()): Promise<boolean> {
  const timezone = d.timezone ?? 'UTC';
  const problem = cronProblem(d.cron, timezone);
  if (problem) throw new InvalidArgumentError(`invalid schedule ${name}: ${problem}`, { hint: CRON_HINT });
  const call = namedCall('bucketq.create_schedule', [
    ['schedule_name', 'text', name],
    ['topic', 'text', d.topic],
    ['cron', 'text', d.cron],
    ['payload', 'jsonb', JSON.stringify(d.payload)],
    ['key', 'text', d.key ?? undefined],
    ['timezone', 'text', timezone],
    ['headers', 'jsonb', d.headers == null ? undefined : JSON.stringify(d.headers)],
    ['paused', 'boolean', d.paused],
    ['next_at', 'timestamptz', nextSlot(d.cron, timezone, now)],
  ]);
  const rows = await query<{ changed: boolean }>(db, `select ${call.text} as changed`, call.values);
  return rows[0]?.changed === true;
}

/** true when the schedule existed. */
export async function dropSchedule(db: Queryable, name: string): Promise<boolean> {
  const rows = await query<{ dropped: boolean }>(db, 'select bucketq.drop_schedule(schedule_name => $1::text) as dropped', [name]);
  return rows[0]?.dropped === true;
}

export interface ScheduleRow {
  name: string;
  topic: string;
  cron: string;
  timezone: string;
  payload: unknown;
  key: string | null;
  headers: Record<string, unknown> | null;
  paused: boolean;
  nextAt: Date | null;
  lastAt: Date | null;
  lastMsgId: string | null;
  lastError: string | null;
  createdAt: Date;
}

export async function listSchedules(db: Queryable, topic?: string): Promise<ScheduleRow[]> {
  return query<ScheduleRow>(
    db,
    `select name, topic, cron, timezone, payload, key, headers, paused, next_at as "nextAt", last_at as "lastAt",
            last_msg_id::text as "lastMsgId", last_error as "lastError", created_at as "createdAt"
       from bucketq.schedules where $1::text is null or topic = $1 order by name`,
    [topic ?? null],
  );
}

export interface FiredSchedule {
  schedule: string;
  /** The slot sent (null when the first slot was only computed). */
  slot: Date | null;
  /** The message sent for the slot (null: none, see error). */
  msgId: string | null;
  nextAt: Date | null;
  error: string | null;
}

/**
 * Fire the due schedules of the group's topic, once each, in one transaction: lock the
 * due ones (others' locks are skipped), compute each next slot after the database
 * clock, send and advance. Safe to run from any number of workers at once. A schedule
 * that missed several slots (every worker down) sends the oldest one only, then goes on
 * from now: no burst of catch-up messages.
 */
export async function fireDueSchedules(db: Queryable, group: string): Promise<FiredSchedule[]> {
  return withClient(db, async (client: pg.ClientBase) => {
    await query(client, 'begin');
    try {
      const due = await query<{ schedule_name: string; cron: string; timezone: string; slot: Date | null; db_now: Date }>(
        client,
        'select schedule_name, cron, timezone, slot, db_now from bucketq._due_schedules(group_name => $1::text)',
        [group],
      );
      if (due.length === 0) {
        await query(client, 'commit');
        return [];
      }
      const next: (Date | null)[] = [];
      const errors: (string | null)[] = [];
      for (const d of due) {
        const problem = cronProblem(d.cron, d.timezone);
        next.push(problem ? null : nextSlot(d.cron, d.timezone, d.db_now));
        errors.push(problem ?? null);
      }
      const fired = await query<{ schedule_name: string; slot: Date | null; msg_id: string | null; next_at: Date | null; error: string | null }>(
        client,
        `select schedule_name, slot, msg_id::text, next_at, error
           from bucketq._fire_schedules(group_name => $1::text, schedule_names => $2::text[], slots => $3::timestamptz[],
                                        next_slots => $4::timestamptz[], errors => $5::text[])`,
        [group, due.map((d) => d.schedule_name), due.map((d) => d.slot), next, errors],
      );
      await query(client, 'commit');
      return fired.map((f) => ({ schedule: f.schedule_name, slot: f.slot, msgId: f.msg_id, nextAt: f.next_at, error: f.error }));
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  });
}
