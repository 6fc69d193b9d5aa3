// `bucketq schedule create|list|delete`: scheduled messages (bucketq.create_schedule),
// sent by the workers of the topic's groups at every occurrence of a cron expression.
import type { Command } from 'commander';
import { cronProblem } from '../queries/schedules.js';
import { withCliClient } from './args.js';
import { CliError, UsageError } from './cli-error.js';
import { databaseUrl, runs } from './command.js';
import { parseJsonArg } from './json-arg.js';
import { formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';

interface CreateFlags {
  topic: string;
  cron: string;
  timezone?: string;
  key?: string;
  headers?: string;
  paused?: boolean;
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('scheduled messages: a payload sent to a topic at every occurrence of a cron expression, by the workers (once per slot)');

  schedule
    .command('create')
    .description('create or replace a schedule (idempotent: the same definition again changes nothing)')
    .argument('<name>', 'schedule name')
    .argument('<payload>', 'the message payload, as JSON')
    .requiredOption('--topic <topic>', 'the topic the message is sent to')
    .requiredOption('--cron <expr>', "five fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *', '0 3 * * MON'; or @hourly, @daily, @weekly, @monthly")
    .option('--timezone <tz>', "IANA time zone the cron expression is read in (default UTC), e.g. 'Europe/Paris'")
    .option('--key <key>', 'message key (per-key FIFO)')
    .option('--headers <json>', 'message headers, a JSON object')
    .option('--paused', 'create it paused (not fired until created again without --paused)')
    .addHelpText('after', `\nexample:\n  bucketq schedule create nightly-report '{"report":"daily"}' --topic reports --cron '0 3 * * *' --timezone Europe/Paris`)
    .action(
      runs(async (name: string, payloadText: string, flags: CreateFlags, cmd: Command) => {
        const problem = cronProblem(flags.cron, flags.timezone ?? 'UTC');
        if (problem) throw new UsageError(`schedule create: invalid option:\n  - --cron${flags.timezone ? '/--timezone' : ''}: ${problem}`);
        const payload = parseJsonArg('the payload', payloadText);
        const headers = flags.headers === undefined ? undefined : parseJsonArg('--headers', flags.headers);
        if (headers !== undefined && (headers === null || typeof headers !== 'object' || Array.isArray(headers))) {
          throw new UsageError('schedule create: invalid option:\n  - --headers must be a JSON object, e.g. \'{"source":"cron"}\'');
        }
        return withCliClient(databaseUrl(cmd), async (bq) => {
          const changed = await bq.schedule(name, {
            topic: flags.topic,
            cron: flags.cron,
            payload,
            ...(flags.timezone !== undefined && { timezone: flags.timezone }),
            ...(flags.key !== undefined && { key: flags.key }),
            ...(headers !== undefined && { headers: headers as Record<string, unknown> }),
            ...(flags.paused && { paused: true }),
          });
          const row = (await bq.schedules(flags.topic)).find((s) => s.name === name);
          const next = row?.nextAt ? `, next at ${row.nextAt.toISOString()}` : '';
          console.log(
            changed
              ? `created schedule ${printable(name)}: ${printable(flags.cron)} (${printable(row?.timezone ?? 'UTC')}) to ${printable(flags.topic)}${next}${flags.paused ? ' (paused)' : ''}`
              : `schedule ${printable(name)} already exists with this definition${next}`,
          );
          return 0;
        });
      }),
    );

  schedule
    .command('list')
    .description('every schedule with its topic, cron expression, next and last slot, last error')
    .option('--topic <topic>', 'only this topic\'s schedules')
    .option('--json', 'print a JSON array (with payloads)')
    .action(
      runs(async (flags: { topic?: string; json?: boolean }, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const rows = await bq.schedules(flags.topic);
          if (flags.json) console.log(printableJson(JSON.stringify(rows, null, 2)));
          else if (rows.length === 0) console.log('no schedules: create one with `bucketq schedule create NAME PAYLOAD --topic T --cron EXPR`');
          else
            console.log(
              formatTable(
                ['schedule', 'topic', 'cron', 'timezone', 'next at', 'last at', 'last message', 'state'],
                rows.map((s) => [
                  s.name,
                  s.topic,
                  s.cron,
                  s.timezone,
                  s.nextAt?.toISOString(),
                  s.lastAt?.toISOString(),
                  s.lastMsgId,
                  s.paused ? 'paused' : s.lastError ? `error: ${s.lastError}` : 'active',
                ]),
                { maxWidth: 80 },
              ),
            );
          return 0;
        }),
      ),
    );

  schedule
    .command('delete')
    .description('delete a schedule (messages it already sent stay)')
    .argument('<name>', 'schedule name')
    .action(
      runs(async (name: string, _flags: object, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          if (!(await bq.unschedule(name))) throw new CliError(`schedule delete: no schedule named '${printable(name)}' (bucketq schedule list)`);
          console.log(`deleted schedule ${printable(name)}`);
          return 0;
        }),
      ),
    );
}
