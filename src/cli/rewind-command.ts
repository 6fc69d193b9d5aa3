// `bucketq rewind --group G (--to TIME | --to-latest) [--execute]`: shows what it would do
// (messages per bucket) and does it only with --execute, as kafka-consumer-groups
// --reset-offsets does.
import type { Command } from 'commander';
import { z } from 'zod';
import { query } from '../db/query.js';
import { rewind, skipToLatest } from '../queries/admin.js';
import { TIME_HELP, assertGroupExists, parseTime, requiredFlag, validate, withCliClient } from './args.js';
import { UsageError } from './cli-error.js';
import { databaseUrl, plural, runs } from './command.js';
import { formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';
import { topicIdOf } from '../db/topic-filter.js';

const schema = z.object({
  group: requiredFlag('--group', 'the group to rewind'),
  to: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const d = parseTime(v);
      if (d) return d;
      ctx.addIssue({ code: 'custom', message: `--to must be ${TIME_HELP}; got '${v}'` });
      return z.NEVER;
    }),
  toLatest: z.boolean().default(false),
  execute: z.boolean().default(false),
  json: z.boolean().default(false),
});

export function registerRewind(program: Command): void {
  program
    .command('rewind')
    .summary('replay a group from a time (--to) or skip its backlog (--to-latest); dry run without --execute')
    .description(
      'move a group back to a point in time (--to: everything sent since is delivered again, in key order) or to the end of its topic (--to-latest: its backlog is skipped, recorded as done without handling). Without --execute it only shows how many messages per bucket it would affect',
    )
    .option('--group <group>', 'the consumer group (required)')
    .option('--to <time>', TIME_HELP)
    .option('--to-latest', 'skip everything the group has not finished yet')
    .option('--execute', 'do it (without: a dry run)')
    .option('--json', 'print the plan (and the result) as JSON')
    .addHelpText('after', `
In-flight leases of the group become void; other groups are not affected; producers of
the topic wait while it runs. Dead letters since --to are marked replayed.

examples:
  bucketq rewind --group billing --to 2h               # what would be delivered again
  bucketq rewind --group billing --to 2h --execute
  bucketq rewind --group billing --to-latest --execute`)
    .action(
      runs(async (flags: { group?: string; to?: string; toLatest?: boolean; execute?: boolean; json?: boolean }, cmd: Command) => {
        const o = validate('rewind', schema, flags);
        if ((o.to === undefined) === !o.toLatest) {
          throw new UsageError(`rewind: ${o.to === undefined ? "--to is required" : "--to and --to-latest exclude each other"}: give --to TIME (${TIME_HELP}) or --to-latest, one of them`);
        }
        return withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'rewind', o.group);
          // The plan, from the public views: per bucket, what --to would deliver again or --to-latest would skip.
          const plan = o.to
            ? await query<{ bucket: number; messages: number }>(
                bq.pool,
                `select m.bucket, count(*)::int as messages
                   from bucketq.messages m
                  where m.topic_id = ${topicIdOf('(select g.topic from bucketq.groups g where g.group_name = $1)')} and m.sent_at >= $2
                  group by m.bucket order by m.bucket`,
                [o.group, o.to],
              )
            : await query<{ bucket: number; messages: number }>(
                bq.pool,
                `select bucket, (ready + leased + delayed + waiting)::int as messages
                   from bucketq.lag where group_name = $1 and ready + leased + delayed + waiting > 0 order by bucket`,
                [o.group],
              );
          const total = plan.reduce((a, p) => a + p.messages, 0);
          const what = o.to ? `rewind group ${printable(o.group)} to ${o.to.toISOString()}` : `skip group ${printable(o.group)} to the latest message`;
          if (!o.execute) {
            if (o.json) console.log(printableJson(JSON.stringify({ group: o.group, to: o.to ?? 'latest', execute: false, total, buckets: plan }, null, 2)));
            else {
              if (plan.length) console.log(formatTable(['bucket', o.to ? 'delivered again' : 'skipped'], plan.map((p) => [p.bucket, p.messages])));
              console.log(
                `${plan.length ? '\n' : ''}dry run: ${what} would ${o.to ? 'deliver' : 'skip'} ${plural(total, 'message')}${o.to ? ' again' : ' (recorded as done without handling)'}.` +
                  `\nnothing changed: add --execute to do it`,
              );
            }
            return 0;
          }
          const n = o.to ? await rewind(bq.pool, o.group, o.to) : await skipToLatest(bq.pool, o.group);
          if (o.json) console.log(printableJson(JSON.stringify({ group: o.group, to: o.to ?? 'latest', execute: true, total: n, buckets: plan }, null, 2)));
          else if (o.to) console.log(`rewound group ${printable(o.group)} to ${o.to.toISOString()}: ${plural(n, 'message')} will be delivered again`);
          else console.log(`skipped group ${printable(o.group)} to the latest message: ${plural(n, 'message')} recorded as done without handling`);
          return 0;
        });
      }),
    );
}
