// `bucketq topic create|list|describe|delete`
import type { Command } from 'commander';
import type pg from 'pg';
import { z } from 'zod';
import { checkIntervals, intFlag, validate, withCliClient } from './args.js';
import { CliError } from './cli-error.js';
import { databaseUrl, plural, runs } from './command.js';
import { formatBytes, formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';

const createSchema = z.object({
  buckets: intFlag('--buckets', 1, 65_536),
  retention: z.string().optional(),
  maxPayloadBytes: intFlag('--max-payload-bytes', 1, 2_147_483_647),
  partitionInterval: z.string().optional(),
});

interface TopicRow {
  topic: string;
  buckets: number;
  retention: string;
  maxPayloadBytes: number;
  partitionInterval: string;
  groups: number;
  partitions: number;
  oldestPartition: Date | null;
  logBytes: number;
  createdAt: Date;
}

const TOPICS_SQL = `select name as topic, buckets, retention::text, max_payload_bytes as "maxPayloadBytes", partition_interval::text as "partitionInterval",
                           groups::int, partitions::int, oldest_partition as "oldestPartition", log_bytes::float8 as "logBytes", created_at as "createdAt"
                      from bucketq.topics`;

export function registerTopic(program: Command): void {
  const topic = program.command('topic').description('create, list, describe and delete topics');

  topic
    .command('create')
    .description("create a topic (idempotent: an existing topic with the same settings is fine)")
    .argument('<name>', 'topic name')
    .option('--buckets <n>', 'virtual partitions (default 16)')
    .option('--retention <interval>', "how long messages are kept at least, a Postgres interval like '7 days'")
    .option('--max-payload-bytes <n>', 'largest payload accepted')
    .option('--partition-interval <interval>', "time span of one log partition, e.g. '1 day'")
    .action(
      runs(async (name: string, flags: { buckets?: string; retention?: string; maxPayloadBytes?: string; partitionInterval?: string }, cmd: Command) => {
        const o = validate('topic create', createSchema, flags);
        return withCliClient(databaseUrl(cmd), async (bq) => {
          await checkIntervals(bq, 'topic create', { '--retention': o.retention, '--partition-interval': o.partitionInterval });
          const created = await bq.createTopic(name, {
            ...(o.buckets !== undefined && { buckets: o.buckets }),
            ...(o.retention !== undefined && { retention: o.retention }),
            ...(o.maxPayloadBytes !== undefined && { maxPayloadBytes: o.maxPayloadBytes }),
            ...(o.partitionInterval !== undefined && { partitionInterval: o.partitionInterval }),
          });
          const { rows } = await bq.pool.query<TopicRow>(`${TOPICS_SQL} where name = $1`, [name]);
          const t = rows[0];
          console.log(`${created ? 'created topic' : 'topic already exists with these settings:'} ${name}${t ? ` (${t.buckets} buckets, retention ${t.retention})` : ''}`);
          return 0;
        });
      }),
    );

  topic
    .command('list')
    .description('every topic with its buckets, retention, groups, partitions and log size')
    .option('--json', 'print a JSON array')
    .action(
      runs(async (flags: { json?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const { rows } = await bq.pool.query<TopicRow>(`${TOPICS_SQL} order by name`);
          if (flags.json) console.log(printableJson(JSON.stringify(rows, null, 2)));
          else if (rows.length === 0) console.log('no topics yet: create one with `bucketq topic create NAME`');
          else
            console.log(
              formatTable(
                ['topic', 'buckets', 'retention', 'groups', 'partitions', 'log size'],
                rows.map((t) => [t.topic, t.buckets, t.retention, t.groups, t.partitions, formatBytes(t.logBytes)]),
              ),
            );
          return 0;
        }),
      ),
    );

  topic
    .command('describe')
    .description('one topic: its settings, log, and the groups that read it with their backlog')
    .argument('<name>', 'topic name')
    .option('--json', 'print one JSON document')
    .action(
      runs(async (name: string, flags: { json?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const { rows } = await bq.pool.query<TopicRow>(`${TOPICS_SQL} where name = $1`, [name]);
          const t = rows[0];
          if (!t) throw await unknownTopic(bq.pool, 'topic describe', name);
          const groups = await bq.pool.query<{ group: string; pending: number; leased: number; dead: number; startAt: string }>(
            `select group_name as "group", pending::int, leased::int, dead::int, start_at as "startAt" from bucketq.groups where topic = $1 order by group_name`,
            [name],
          );
          if (flags.json) {
            console.log(printableJson(JSON.stringify({ ...t, consumerGroups: groups.rows }, null, 2)));
            return 0;
          }
          console.log(
            formatTable(
              ['topic', 'buckets', 'retention', 'max payload', 'partition interval', 'partitions', 'oldest partition', 'log size'],
              [[t.topic, t.buckets, t.retention, formatBytes(t.maxPayloadBytes), t.partitionInterval, t.partitions, t.oldestPartition?.toISOString(), formatBytes(t.logBytes)]],
            ),
          );
          console.log('');
          if (groups.rows.length === 0) console.log(`no consumer groups read ${printable(name)}: create one with \`bucketq group create NAME --topic ${printable(name)}\``);
          else console.log(formatTable(['group', 'start at', 'pending', 'leased', 'dead'], groups.rows.map((g) => [g.group, g.startAt, g.pending, g.leased, g.dead])));
          return 0;
        }),
      ),
    );

  topic
    .command('delete')
    .description('delete a topic and its whole log; refused while groups read it, unless --force (which deletes them too)')
    .argument('<name>', 'topic name')
    .option('--force', 'also delete the consumer groups that read it')
    .action(
      runs(async (name: string, flags: { force?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const groups = await bq.pool.query<{ n: number }>('select count(*)::int as n from bucketq.groups where topic = $1', [name]);
          const { rows } = await bq.pool.query<{ n: string }>('select bucketq.delete_topic(topic => $1::text, force => $2::boolean)::text as n', [name, flags.force ?? false]);
          const gone = groups.rows[0]?.n ?? 0;
          console.log(`deleted topic ${printable(name)} with ${plural(rows[0]!.n, 'message')}${gone ? ` and ${plural(gone, 'consumer group')}` : ''}`);
          return 0;
        }),
      ),
    );
}

/** An error naming the unknown topic and the topics that exist. */
export async function unknownTopic(pool: pg.Pool, command: string, name: string): Promise<CliError> {
  const { rows } = await pool.query<{ name: string }>('select name from bucketq.topics order by name');
  const known = rows.map((r) => r.name);
  return new CliError(
    `${command}: unknown topic '${name}'; ${known.length ? `known topics: ${known.slice(0, 20).join(', ')}${known.length > 20 ? ', ...' : ''} (bucketq topic list)` : 'there are no topics yet: create one with `bucketq topic create NAME`'}`,
  );
}
