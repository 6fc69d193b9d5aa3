// Watching messages: `bucketq message ID` (one message in every group), `bucketq tail
// TOPIC` (new messages as they arrive), `bucketq peek --group G` (what the group gets
// next, without claiming it). All of them read the public views only.
import { setTimeout as delay } from 'node:timers/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { query } from '../db/query.js';
import { assertGroupExists, intFlag, requiredFlag, validate, withCliClient } from './args.js';
import { CliError, UsageError } from './cli-error.js';
import { databaseUrl, plural, runs } from './command.js';
import { formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';
import { unknownTopic } from './topic-command.js';
import { readSnapshot } from '../db/read-snapshot.js';
import { topicIdOf } from '../db/topic-filter.js';

interface MessageRow {
  msgId: string;
  topic: string;
  key: string | null;
  keySeq: string | null;
  bucket: number;
  sentAt: Date;
  notBefore: Date | null;
  payload: unknown;
  headers: unknown;
}

const MESSAGE_COLUMNS = `msg_id::text as "msgId", topic, key, key_seq::text as "keySeq", bucket, sent_at as "sentAt", not_before as "notBefore", payload, headers`;

/** Ids a producer may have taken before later ids committed: tail looks this far back for late commits. */
const TAIL_WINDOW = 1000;

const oneLine = (v: unknown) => (v === null || v === undefined ? '' : JSON.stringify(v));

export function registerMessageCommands(program: Command): void {
  program
    .command('message')
    .summary('one message and its state in every group')
    .description("one message: its payload, headers, key and where it stands in every group of its topic (done by whom, in flight, waiting behind which message, retrying, dead)")
    .argument('<id>', 'the message id')
    .option('--json', 'print one JSON document')
    .action(
      runs(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        if (!/^\d+$/.test(id)) throw new UsageError(`message: the id must be a whole number, got '${printable(id)}'`);
        return withCliClient(databaseUrl(cmd), async (bq) => {
          const { m, states } = await readSnapshot(bq.pool, async (c) => {
            const [m] = await query<MessageRow>(c, `select ${MESSAGE_COLUMNS} from bucketq.messages where msg_id = $1`, [id]);
            if (!m) return { m, states: [] };
            const states = await query<{ group: string; state: string; consumerId: string | null; epoch: string | null; since: Date | null; until: Date | null; waitingBehind: string | null; attempts: number | null; lastError: string | null; replayedAt: Date | null }>(
              c,
              `select group_name as "group", state, consumer_id as "consumerId", epoch::text, since, until, waiting_behind::text as "waitingBehind",
                      attempts, last_error as "lastError", replayed_at as "replayedAt"
                 from bucketq.message_states where msg_id = $1 order by group_name`,
              [id],
            );
            return { m, states };
          });
          if (!m) throw new CliError(`message: no message ${id} (never sent, or dropped with its partition after retention); recent ids: bucketq tail TOPIC --last 10`);
          if (flags.json) {
            console.log(printableJson(JSON.stringify({ ...m, groups: states }, null, 2)));
            return 0;
          }
          console.log(
            [
              `message ${m.msgId} on topic ${printable(m.topic)}, bucket ${m.bucket}${m.key !== null ? `, key ${printable(m.key)} #${m.keySeq}` : ', no key'}`,
              `sent at ${m.sentAt.toISOString()}${m.notBefore ? `, not before ${m.notBefore.toISOString()}` : ''}`,
              `headers ${printable(oneLine(m.headers) || '-')}`,
              `payload ${printable(oneLine(m.payload))}`,
              '',
              states.length === 0
                ? `no consumer groups read ${printable(m.topic)}`
                : formatTable(
                    ['group', 'state', 'consumer', 'epoch', 'since', 'until', 'waiting behind', 'attempts', 'last error'],
                    states.map((s) => [s.group, s.state, s.consumerId, s.epoch, s.since?.toISOString(), s.until?.toISOString(), s.waitingBehind, s.attempts, s.lastError?.split('\n', 1)[0]]),
                  ),
            ].join('\n'),
          );
          return 0;
        });
      }),
    );

  program
    .command('tail')
    .summary('print the messages of a topic as they arrive')
    .description('print the messages of a topic as they arrive (Ctrl-C to stop), like kafka-console-consumer')
    .argument('<topic>', 'the topic')
    .option('--last <n>', 'first print the n most recent messages (default 0: only new ones)')
    .option('--key <key>', 'only messages with this key')
    .option('--limit <n>', 'exit after printing n messages')
    .option('--interval-ms <n>', 'how often to look for new messages (default 500)')
    .option('--json', 'one JSON object per message and line')
    .action(
      runs(async (topic: string, flags: { last?: string; key?: string; limit?: string; intervalMs?: string; json?: boolean }, cmd: Command) => {
        const o = validate(
          'tail',
          z.object({ last: intFlag('--last', 0, 100_000), limit: intFlag('--limit', 1, 1_000_000_000), intervalMs: intFlag('--interval-ms', 10, 3_600_000) }),
          flags,
        );
        return withCliClient(databaseUrl(cmd), async (bq) => {
          const exists = await query<{ n: number }>(bq.pool, 'select count(*)::int as n from bucketq.topics where name = $1', [topic]);
          if (exists[0]!.n === 0) throw await unknownTopic(bq.pool, 'tail', topic);
          const stop = new AbortController();
          const onSignal = () => stop.abort();
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          let printed = 0;
          const print = (m: MessageRow) => {
            if (flags.json) console.log(printableJson(JSON.stringify(m)));
            else console.log(printable(`${m.msgId}  ${m.sentAt.toISOString()}  bucket ${m.bucket}  ${m.key !== null ? `key ${m.key} #${m.keySeq}` : 'no key'}  ${oneLine(m.payload)}`));
            printed++;
          };
          try {
            const [top] = await query<{ id: string | null }>(bq.pool, `select max(msg_id)::text as id from bucketq.messages where topic_id = ${topicIdOf('$1')}`, [topic]);
            let high = BigInt(top!.id ?? '0');
            // What is already there counts as seen (--last prints some of it once).
            const window = () => String(high - BigInt(TAIL_WINDOW));
            const before = await query<{ id: string }>(bq.pool, `select msg_id::text as id from bucketq.messages where topic_id = ${topicIdOf('$1')} and msg_id > $2`, [topic, window()]);
            const seen = new Set<bigint>(before.map((r) => BigInt(r.id)));
            if (o.last) {
              const recent = await query<MessageRow>(
                bq.pool,
                `select * from (select ${MESSAGE_COLUMNS} from bucketq.messages where topic_id = ${topicIdOf('$1')} and ($2::text is null or key = $2) order by msg_id desc limit $3) r order by r."msgId"::bigint`,
                [topic, flags.key ?? null, o.last],
              );
              for (const m of recent) if (o.limit === undefined || printed < o.limit) print(m);
            }
            // Every id up to `high` has been looked at; ids within TAIL_WINDOW below it are
            // looked at again, for producers whose transaction committed after later ids.
            while (!stop.signal.aborted && (o.limit === undefined || printed < o.limit)) {
              const rows = await query<MessageRow>(
                bq.pool,
                `select ${MESSAGE_COLUMNS} from bucketq.messages where topic_id = ${topicIdOf('$1')} and msg_id > $2 and ($3::text is null or key = $3) order by msg_id limit 5000`,
                [topic, window(), flags.key ?? null],
              );
              for (const m of rows) {
                const id = BigInt(m.msgId);
                if (seen.has(id) || id <= high - BigInt(TAIL_WINDOW)) continue;
                seen.add(id);
                if (id > high) high = id;
                if (o.limit !== undefined && printed >= o.limit) break;
                print(m);
              }
              for (const id of seen) if (id <= high - BigInt(TAIL_WINDOW)) seen.delete(id);
              if (rows.length < 5000) await delay(o.intervalMs ?? 500, undefined, { signal: stop.signal }).catch(() => {});
            }
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          }
          return 0;
        });
      }),
    );

  program
    .command('peek')
    .summary('the next messages a group will get, without claiming them')
    .description('the next messages a group will get (ready, in flight, in backoff, waiting behind their key), oldest first, without claiming them')
    .option('--group <group>', 'the consumer group (required)')
    .option('--limit <n>', 'how many (default 10)')
    .option('--json', 'print a JSON array')
    .action(
      runs(async (flags: { group?: string; limit?: string; json?: boolean }, cmd: Command) => {
        const o = validate('peek', z.object({ group: requiredFlag('--group', 'the group to peek at'), limit: intFlag('--limit', 1, 10_000) }), flags);
        return withCliClient(databaseUrl(cmd), async (bq) => {
          await assertGroupExists(bq, 'peek', o.group);
          // Only the log from the group's oldest unfinished message on is read (bucketq.lag says how old).
          const rows = await query<MessageRow & { state: string; until: Date | null; attempts: number | null; consumerId: string | null }>(
            bq.pool,
            `with g as (select topic from bucketq.groups where group_name = $1),
                  oldest as (select now() - max(oldest_age) - interval '1 second' as since from bucketq.lag where group_name = $1)
             select s.msg_id::text as "msgId", s.topic, s.key, s.key_seq::text as "keySeq", s.bucket, s.sent_at as "sentAt", m.not_before as "notBefore",
                    m.payload, m.headers, s.state, s.until, s.attempts, s.consumer_id as "consumerId"
               from bucketq.message_states s
               join bucketq.messages m on m.topic = s.topic and m.msg_id = s.msg_id and m.sent_at = s.sent_at
              where s.group_name = $1 and s.topic = (select topic from g)
                and s.sent_at >= (select since from oldest)
                and s.state in ('ready', 'locked', 'leased', 'delayed', 'waiting')
              order by s.msg_id
              limit $2`,
            [o.group, o.limit ?? 10],
          );
          if (flags.json) console.log(printableJson(JSON.stringify(rows, null, 2)));
          else if (rows.length === 0) console.log(`nothing pending for group ${printable(o.group)}`);
          else {
            console.log(
              formatTable(
                ['msg id', 'bucket', 'key', 'key seq', 'state', 'until', 'attempts', 'payload'],
                rows.map((r) => [r.msgId, r.bucket, r.key, r.keySeq, r.state, r.until?.toISOString(), r.attempts, oneLine(r.payload)]),
              ),
            );
            console.log(`\n${plural(rows.length, 'message')} shown, oldest first; one message in every group: bucketq message ID`);
          }
          return 0;
        });
      }),
    );
}
