// `bucketq dlq list [--group G] [--all] [--json]` and `bucketq dlq replay --group G [--id ID ...]`
import { z } from 'zod';
import { COMMON_OPTIONS, COMMON_USAGE, assertGroupExists, expectPositionals, parseCommandArgs, requiredFlag, validate, withCliClient } from './args.js';
import { CliError } from './cli-error.js';
import { formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';
import type { DeadLetterRow } from '../queries/status.js';

export const DLQ_USAGE = `usage: bucketq dlq list [--group G] [--all] [--json]
       bucketq dlq replay --group G [--id ID ...]

list     dead letters (not yet replayed; --all includes replayed ones) with their last error
replay   put a group's dead letters back in line, in key order: all of them, or the given --id(s)

  --group G     the consumer group (required for replay)
  --id ID       a message id to replay (repeatable)
  --all         list: include dead letters already replayed
  --json        list: print a JSON array
${COMMON_USAGE}`;


const replaySchema = z.object({
  group: requiredFlag('--group', 'the group whose dead letters to replay'),
  ids: z.array(z.string().regex(/^\d+$/, { error: (iss) => `--id must be a message id (a whole number), got '${String(iss.input)}'` })).optional(),
});

export async function dlqCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('dlq', DLQ_USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      group: { type: 'string' },
      id: { type: 'string', multiple: true },
      all: { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(DLQ_USAGE);
    return 0;
  }
  const [sub, ...rest] = positionals;
  if (sub === 'list') {
    expectPositionals('dlq list', DLQ_USAGE, rest, []);
    if (values.id) throw new CliError('dlq list: --id only applies to dlq replay');
    const group = validate('dlq list', z.object({ group: z.string().min(1, '--group must not be empty').optional() }), { group: values.group }).group;
    return withCliClient(values['database-url'], async (bq) => {
      if (group !== undefined) await assertGroupExists(bq, 'dlq list', group);
      const { rows } = await bq.pool.query<DeadLetterRow>(
        `select group_name as "group", topic, msg_id::text as "msgId", key, key_seq::text as "keySeq", bucket, attempts,
                last_error as "lastError", dead_at as "deadAt", sent_at as "sentAt", status, replayed_at as "replayedAt", payload, headers
           from bucketq.dead_letters
          where ($1::text is null or group_name = $1) and ($2 or status <> 'replayed')
          order by group_name, dead_at, msg_id`,
        [group ?? null, values.all ?? false],
      );
      if (values.json) {
        console.log(printableJson(JSON.stringify(rows, null, 2)));
        return 0;
      }
      if (rows.length === 0) {
        console.log(`no dead letters${group ? ` in group ${printable(group)}` : ''}${values.all ? '' : ' (not yet replayed)'}`);
        return 0;
      }
      console.log(
        formatTable(
          ['group', 'msg id', 'key', 'key seq', 'attempts', 'status', 'dead at', 'last error'],
          rows.map((r) => [r.group, r.msgId, r.key, r.keySeq, r.attempts, r.status, r.deadAt.toISOString(), firstLine(r.lastError)]),
          { maxWidth: 80 },
        ),
      );
      console.log(`\n${rows.length} dead letter${rows.length === 1 ? '' : 's'}; replay with: bucketq dlq replay --group G [--id ID ...]`);
      return 0;
    });
  }
  if (sub === 'replay') {
    expectPositionals('dlq replay', DLQ_USAGE, rest, []);
    const o = validate('dlq replay', replaySchema, { group: values.group, ids: values.id });
    return withCliClient(values['database-url'], async (bq) => {
      const n = await bq.replayDead(o.group, o.ids);
      console.log(`replayed ${n} dead letter${n === 1 ? '' : 's'} of group ${printable(o.group)}${n ? ': they are delivered again in key order' : ''}`);
      return 0;
    });
  }
  throw new CliError(`dlq: ${sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`} (valid: list, replay)\n\n${DLQ_USAGE}`);
}

/** The error's first line (the message, without the stack). */
function firstLine(text: string | null): string | null {
  if (text === null) return null;
  return text.split('\n', 1)[0]!;
}
