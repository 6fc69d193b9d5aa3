// `bucketq group create|list|describe|delete|pause|resume`
import type { Command } from 'commander';
import type pg from 'pg';
import { z } from 'zod';
import { inReadCommitted } from '../db/read-committed.js';
import { readSnapshot } from '../db/read-snapshot.js';
import { TIME_HELP, assertGroupExists, checkIntervals, intFlag, parseTime, requiredFlag, validate, withCliClient } from './args.js';
import { databaseUrl, plural, runs } from './command.js';
import { formatAge, formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';

const createSchema = z.object({
  topic: requiredFlag('--topic', 'the topic the group reads, e.g. --topic orders'),
  startAt: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === 'earliest' || v === 'latest') return v;
      const d = parseTime(v);
      if (d) return d;
      ctx.addIssue({ code: 'custom', message: `--start-at must be 'earliest', 'latest' or ${TIME_HELP}; got '${v}'` });
      return z.NEVER;
    }),
  maxAttempts: intFlag('--max-attempts', 1, 1_000_000),
  onExhausted: z.enum(['skip', 'block'], { error: (iss) => `--on-exhausted must be 'skip' or 'block', got '${String(iss.input)}'` }).optional(),
  sessionTimeout: z.string().optional(),
  leaseTimeout: z.string().optional(),
  backoffBase: z.string().optional(),
  backoffMax: z.string().optional(),
});

/** One group as `group list` and `group describe` show it (public views only). */
export interface GroupRow {
  group: string;
  topic: string;
  state: 'paused' | 'active' | 'idle';
  consumers: number;
  pending: number;
  leased: number;
  dead: number;
  oldestAgeSeconds: number | null;
  startAt: string;
  maxAttempts: number;
  onExhausted: string;
  sessionTimeout: string;
  leaseTimeout: string;
}

// A paused group's buckets have owner '' (see bucketq.pause_group). pending and the
// oldest age come from bucketq.lag, read once (readGroups): groups.pending and lag each
// count the backlog in the log, seconds at ten million messages.
const GROUPS_SQL = `
  select g.group_name as "group", g.topic,
         case when exists (select 1 from bucketq.buckets b where b.group_name = g.group_name and b.owner = '') then 'paused'
              when exists (select 1 from bucketq.consumers c where c.group_name = g.group_name and c.alive) then 'active'
              else 'idle' end as state,
         (select count(*)::int from bucketq.consumers c where c.group_name = g.group_name and c.alive) as consumers,
         g.leased::int, g.dead::int,
         g.start_at as "startAt", g.max_attempts as "maxAttempts", g.on_exhausted as "onExhausted",
         g.session_timeout::text as "sessionTimeout", g.lease_timeout::text as "leaseTimeout"
    from bucketq.groups g`;

type GroupLag = { group: string; pending: number; oldestAgeSeconds: number | null };

/**
 * The groups (all, one topic's or one), with pending and the oldest age summed from one
 * read of bucketq.lag, or from the caller's (`lag`: group describe reads it per bucket).
 */
async function readGroups(c: pg.ClientBase, filter: { topic?: string; group?: string }, lag?: GroupLag[]): Promise<GroupRow[]> {
  const { rows } = await c.query<Omit<GroupRow, 'pending' | 'oldestAgeSeconds'>>(
    `${GROUPS_SQL} where ($1::text is null or g.topic = $1) and ($2::text is null or g.group_name = $2) order by g.group_name`,
    [filter.topic ?? null, filter.group ?? null],
  );
  if (rows.length === 0) return [];
  lag ??= (
    await c.query<GroupLag>(
      `select group_name as "group", sum(ready + leased + delayed + waiting + dead_blocking)::int as pending,
              extract(epoch from max(oldest_age))::float8 as "oldestAgeSeconds"
         from bucketq.lag where group_name = any($1::text[]) group by group_name`,
      [rows.map((r) => r.group)],
    )
  ).rows;
  const byGroup = new Map(lag.map((l) => [l.group, l]));
  return rows.map((r) => ({ ...r, pending: byGroup.get(r.group)?.pending ?? 0, oldestAgeSeconds: byGroup.get(r.group)?.oldestAgeSeconds ?? null }));
}

export function registerGroup(program: Command): void {
  const group = program.command('group').description('create, list, describe, delete, pause and resume consumer groups');

  group
    .command('create')
    .description('create a consumer group on a topic (idempotent: an existing group with the same settings is fine)')
    .argument('<name>', 'group name')
    .option('--topic <topic>', 'the topic to subscribe to (required)')
    .option('--start-at <where>', `earliest (everything retained), latest (default: from now on), or ${TIME_HELP}`)
    .option('--max-attempts <n>', 'tries before a message is dead-lettered (default 4)')
    .option('--on-exhausted <mode>', 'skip (default: the key moves on) or block (the key waits for `bucketq dlq replay`)')
    .option('--session-timeout <interval>', "how long a consumer may miss heartbeats, e.g. '10 seconds'")
    .option('--lease-timeout <interval>', "how long a claim holds a message, e.g. '30 seconds'")
    .option('--backoff-base <interval>', 'first retry delay; retry n waits base * 2^(n-1)')
    .option('--backoff-max <interval>', 'cap on the retry delay')
    .action(
      runs(async (name: string, flags: Record<string, string | undefined>, cmd: Command) => {
        const o = validate('group create', createSchema, flags);
        return withCliClient(databaseUrl(cmd), async (bq) => {
          await checkIntervals(bq, 'group create', {
            '--session-timeout': o.sessionTimeout,
            '--lease-timeout': o.leaseTimeout,
            '--backoff-base': o.backoffBase,
            '--backoff-max': o.backoffMax,
          });
          const created = await bq.createGroup(name, o.topic, {
            ...(o.startAt !== undefined && { startAt: o.startAt }),
            ...(o.maxAttempts !== undefined && { maxAttempts: o.maxAttempts }),
            ...(o.onExhausted !== undefined && { onExhausted: o.onExhausted }),
            ...(o.sessionTimeout !== undefined && { sessionTimeout: o.sessionTimeout }),
            ...(o.leaseTimeout !== undefined && { leaseTimeout: o.leaseTimeout }),
            ...(o.backoffBase !== undefined && { backoffBase: o.backoffBase }),
            ...(o.backoffMax !== undefined && { backoffMax: o.backoffMax }),
          });
          const { rows } = await bq.pool.query<{ start_at: string; max_attempts: number; on_exhausted: string }>(
            'select start_at::text, max_attempts, on_exhausted from bucketq.groups where group_name = $1',
            [name],
          );
          const g = rows[0];
          console.log(
            `${created ? 'created group' : 'group already exists with these settings:'} ${name} on topic ${o.topic}` +
              (g ? ` (start at ${g.start_at}, max attempts ${g.max_attempts}, on exhausted ${g.on_exhausted})` : ''),
          );
          return 0;
        });
      }),
    );

  group
    .command('list')
    .description('every group: topic, state (active, idle, paused), live consumers, pending, leased, dead, oldest unfinished message')
    .option('--topic <topic>', 'only the groups of this topic')
    .option('--json', 'print a JSON array')
    .action(
      runs(async (flags: { topic?: string; json?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const rows = await readSnapshot(bq.pool, (c) => readGroups(c, { topic: flags.topic }));
          if (flags.json) console.log(printableJson(JSON.stringify(rows, null, 2)));
          else if (rows.length === 0) console.log(`no consumer groups${flags.topic ? ` on topic ${printable(flags.topic)}` : ''}: create one with \`bucketq group create NAME --topic T\``);
          else
            console.log(
              formatTable(
                ['group', 'topic', 'state', 'consumers', 'pending', 'leased', 'dead', 'oldest'],
                rows.map((g) => [g.group, g.topic, g.state, g.consumers, g.pending, g.leased, g.dead, formatAge(g.oldestAgeSeconds)]),
              ),
            );
          return 0;
        }),
      ),
    );

  group
    .command('describe')
    .description('one group: settings, consumers, and per bucket its owner, epoch, checkpoint and lag')
    .argument('<name>', 'group name')
    .option('--json', 'print one JSON document')
    .action(
      runs(async (name: string, flags: { json?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'group describe', name);
          const { g, consumers, buckets } = await readSnapshot(bq.pool, async (c) => {
            const buckets = await c.query<{ bucket: number; owner: string | null; epoch: string; checkpoint: string | null; ready: number; leased: number; delayed: number; waiting: number; deadBlocking: number; oldestAgeSeconds: number | null }>(
              `select b.bucket, b.owner, b.epoch::text, b.checkpoint::text, l.ready::int, l.leased::int, l.delayed::int, l.waiting::int,
                      l.dead_blocking::int as "deadBlocking", extract(epoch from l.oldest_age)::float8 as "oldestAgeSeconds"
                 from bucketq.buckets b join bucketq.lag l on l.group_name = b.group_name and l.bucket = b.bucket
                where b.group_name = $1 order by b.bucket`,
              [name],
            );
            // The group's pending and oldest age from its buckets' lag: one count of its backlog.
            const ages = buckets.rows.map((b) => b.oldestAgeSeconds).filter((a): a is number => a !== null);
            const lag: GroupLag = {
              group: name,
              pending: buckets.rows.reduce((n, b) => n + b.ready + b.leased + b.delayed + b.waiting + b.deadBlocking, 0),
              oldestAgeSeconds: ages.length ? Math.max(...ages) : null,
            };
            const consumers = await c.query<{ consumerId: string; alive: boolean; heartbeatAgeSeconds: number; ownedBuckets: number; leased: number }>(
              `select consumer_id as "consumerId", alive, extract(epoch from heartbeat_age)::float8 as "heartbeatAgeSeconds", owned_buckets::int as "ownedBuckets", leased::int
                 from bucketq.consumers where group_name = $1 order by consumer_id`,
              [name],
            );
            return { buckets, consumers, g: (await readGroups(c, { group: name }, [lag]))[0]! };
          });
          if (flags.json) {
            console.log(printableJson(JSON.stringify({ ...g, consumerList: consumers.rows, buckets: buckets.rows }, null, 2)));
            return 0;
          }
          console.log(
            formatTable(
              ['group', 'topic', 'state', 'start at', 'max attempts', 'on exhausted', 'session timeout', 'lease timeout'],
              [[g.group, g.topic, g.state, g.startAt, g.maxAttempts, g.onExhausted, g.sessionTimeout, g.leaseTimeout]],
            ),
          );
          console.log(`\npending ${g.pending}, leased ${g.leased}, dead ${g.dead}, oldest unfinished ${formatAge(g.oldestAgeSeconds)}`);
          if (g.state === 'paused') console.log(`paused: no consumer takes its buckets until \`bucketq group resume ${printable(name)}\``);
          console.log('');
          if (consumers.rows.length === 0) console.log('consumers: none (start one with `bucketq worker --group G --handler FILE`)');
          else
            console.log(
              formatTable(
                ['consumer', 'alive', 'heartbeat age', 'buckets', 'leased'],
                consumers.rows.map((c) => [c.consumerId, c.alive ? 'yes' : 'no', formatAge(c.heartbeatAgeSeconds), c.ownedBuckets, c.leased]),
              ),
            );
          console.log('');
          console.log(
            formatTable(
              ['bucket', 'owner', 'epoch', 'checkpoint', 'ready', 'leased', 'delayed', 'waiting', 'oldest'],
              buckets.rows.map((b) => [b.bucket, b.owner === '' ? '(paused)' : b.owner, b.epoch, b.checkpoint, b.ready, b.leased, b.delayed, b.waiting, formatAge(b.oldestAgeSeconds)]),
            ),
          );
          return 0;
        }),
      ),
    );

  group
    .command('delete')
    .description('delete a group with its progress, delivery records and dead letters (the topic stays); refused while it has live consumers, unless --force')
    .argument('<name>', 'group name')
    .option('--force', 'delete it even while consumers are alive (their acks then fail)')
    .action(
      runs(async (name: string, flags: { force?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'group delete', name);
          // (READ COMMITTED whatever the database's default: delete_group refuses any other level)
          const { rows } = await inReadCommitted(bq.pool, (c) =>
            c.query<{ n: string }>('select bucketq.delete_group(group_name => $1::text, force => $2::boolean)::text as n', [name, flags.force ?? false]),
          );
          console.log(`deleted group ${printable(name)} (${plural(rows[0]!.n, 'message')} were still pending for it)`);
          return 0;
        }),
      ),
    );

  group
    .command('pause')
    .description('stop a group from consuming: its consumers lose every bucket and take none until resume; batches in flight are refused at ack and come back later; producers are not affected')
    .argument('<name>', 'group name')
    .action(
      runs(async (name: string, _flags: object, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'group pause', name);
          const { rows } = await bq.pool.query<{ n: number }>('select bucketq.pause_group(group_name => $1::text) as n', [name]);
          const n = rows[0]!.n;
          console.log(n ? `paused group ${printable(name)} (${plural(n, 'bucket')}); resume with: bucketq group resume ${printable(name)}` : `group ${printable(name)} was already paused`);
          return 0;
        }),
      ),
    );

  group
    .command('resume')
    .description('let a paused group consume again: its consumers take their buckets at their next heartbeat')
    .argument('<name>', 'group name')
    .action(
      runs(async (name: string, _flags: object, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'group resume', name);
          const { rows } = await bq.pool.query<{ n: number }>('select bucketq.resume_group(group_name => $1::text) as n', [name]);
          const n = rows[0]!.n;
          console.log(n ? `resumed group ${printable(name)} (${plural(n, 'bucket')})` : `group ${printable(name)} was not paused`);
          return 0;
        }),
      ),
    );
}

