// `bucketq dlq list|replay|delete`
import type { Command } from 'commander';
import { z } from 'zod';
import { assertGroupExists, requiredFlag, validate, withCliClient } from './args.js';
import { UsageError } from './cli-error.js';
import { databaseUrl, plural, runs } from './command.js';
import { formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';
import type { DeadLetterRow } from '../queries/status.js';

const ids = z.array(z.string().regex(/^\d+$/, { error: (iss) => `--id must be a message id (a whole number), got '${String(iss.input)}'` })).optional();
const groupSchema = z.object({ group: requiredFlag('--group', 'the group whose dead letters to act on'), ids });

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Payloads in the table: one line, cut to this many characters (--json has them whole). */
const PAYLOAD_CHARS = 60;

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: list them with payload and error, replay them, delete their records');

  dlq
    .command('list')
    .description('dead letters (not yet replayed; --all includes replayed ones) with their payload and last error')
    .option('--group <group>', 'only this group')
    .option('--all', 'include dead letters already replayed')
    .option('--json', 'print a JSON array (whole payloads and headers)')
    .action(
      runs(async (flags: { group?: string; all?: boolean; json?: boolean }, cmd: Command) => {
        const group = validate('dlq list', z.object({ group: z.string().min(1, '--group must not be empty').optional() }), { group: flags.group }).group;
        return withCliClient(databaseUrl(cmd), async (bq) => {
          if (group !== undefined) await assertGroupExists(bq, 'dlq list', group);
          const { rows } = await bq.pool.query<DeadLetterRow>(
            `select group_name as "group", topic, msg_id::text as "msgId", key, key_seq::text as "keySeq", bucket, attempts,
                    last_error as "lastError", dead_at as "deadAt", sent_at as "sentAt", status, replayed_at as "replayedAt", payload, headers
               from bucketq.dead_letters
              where ($1::text is null or group_name = $1) and ($2 or status <> 'replayed')
              order by group_name, dead_at, msg_id`,
            [group ?? null, flags.all ?? false],
          );
          if (flags.json) {
            console.log(printableJson(JSON.stringify(rows, null, 2)));
            return 0;
          }
          if (rows.length === 0) {
            console.log(`no dead letters${group ? ` in group ${printable(group)}` : ''}${flags.all ? '' : ' (not yet replayed)'}`);
            return 0;
          }
          console.log(
            formatTable(
              ['group', 'msg id', 'key', 'key seq', 'attempts', 'status', 'dead at', 'last error', 'payload'],
              rows.map((r) => [r.group, r.msgId, r.key, r.keySeq, r.attempts, r.status, r.deadAt.toISOString(), firstLine(r.lastError), shorten(JSON.stringify(r.payload) ?? null)]),
              { maxWidth: 80 },
            ),
          );
          console.log(`\n${plural(rows.length, 'dead letter')}; replay with: bucketq dlq replay --group G [--id ID ...]; whole payloads: bucketq dlq list --json`);
          return 0;
        });
      }),
    );

  dlq
    .command('replay')
    .description("put a group's dead letters back in line, in key order: all of them, or the given --id(s)")
    .option('--group <group>', 'the consumer group (required)')
    .option('--id <id>', 'a message id to replay (repeatable)', collect)
    .action(
      runs(async (flags: { group?: string; id?: string[] }, cmd: Command) => {
        const o = validate('dlq replay', groupSchema, { group: flags.group, ids: flags.id });
        return withCliClient(databaseUrl(cmd), async (bq) => {
          const n = await bq.replayDead(o.group, o.ids);
          console.log(`replayed ${plural(n, 'dead letter')} of group ${printable(o.group)}${n ? ': they are delivered again in key order' : ''}`);
          return 0;
        });
      }),
    );

  dlq
    .command('delete')
    .description("delete dead-letter records of a group: the given --id(s), or --all of them. Records that hold their key (on-exhausted block, not replayed) are kept: replay those")
    .option('--group <group>', 'the consumer group (required)')
    .option('--id <id>', 'a message id whose dead-letter record to delete (repeatable)', collect)
    .option('--all', "every dead-letter record of the group that does not hold its key")
    .action(
      runs(async (flags: { group?: string; id?: string[]; all?: boolean }, cmd: Command) => {
        const o = validate('dlq delete', groupSchema, { group: flags.group, ids: flags.id });
        if ((o.ids === undefined) === !flags.all) throw new UsageError('dlq delete: give --id ID (repeatable) or --all, one of them');
        return withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'dlq delete', o.group);
          const { rows } = await bq.pool.query<{ n: number }>('select bucketq.delete_dead(group_name => $1::text, msg_ids => $2::bigint[]) as n', [o.group, o.ids ?? null]);
          const kept = await bq.pool.query<{ n: number }>(`select count(*)::int as n from bucketq.dead_letters where group_name = $1 and status = 'blocking'`, [o.group]);
          const k = kept.rows[0]!.n;
          console.log(
            `deleted ${plural(rows[0]!.n, 'dead-letter record')} of group ${printable(o.group)}` +
              (flags.all && k ? `; kept ${k} that hold their key: replay them with bucketq dlq replay --group ${printable(o.group)}` : ''),
          );
          return 0;
        });
      }),
    );
}

/** The error's first line (the message, without the stack). */
function firstLine(text: string | null): string | null {
  if (text === null) return null;
  return text.split('\n', 1)[0]!;
}

function shorten(text: string | null): string | null {
  if (text === null) return null;
  return text.length > PAYLOAD_CHARS ? `${text.slice(0, PAYLOAD_CHARS - 3)}...` : text;
}
