// The operations commands (status, topic, group, send, dlq, rewind, maintain, ui). Unlike
// migrate/demo/worker, which src/cli.ts parses with one shared option list, each of
// these parses its own argv (they take positionals such as `send TOPIC JSON`).
import { dlqCommand } from './dlq-command.js';
import { groupCommand } from './group-command.js';
import { maintainCommand } from './maintain-command.js';
import { rewindCommand } from './rewind-command.js';
import { sendCommand } from './send-command.js';
import { statusCommand } from './status-command.js';
import { topicCommand } from './topic-command.js';
import { uiCommand } from './ui-command.js';

export const OPS_COMMANDS: Readonly<Record<string, (argv: string[]) => Promise<number>>> = {
  status: statusCommand,
  topic: topicCommand,
  group: groupCommand,
  send: sendCommand,
  dlq: dlqCommand,
  rewind: rewindCommand,
  maintain: maintainCommand,
  ui: uiCommand,
};

export const OPS_USAGE = `  status    topics, groups, consumers, buckets, lag, throughput, vacuum horizon, table sizes
            [--group G] [--watch [--interval-ms N]] [--json]
  topic     topic create NAME [--buckets N] [--retention I] [--max-payload-bytes N] [--partition-interval I]
  group     group create NAME --topic T [--start-at earliest|latest|TIME] [--max-attempts N]
            [--on-exhausted skip|block] [--session-timeout I] [--lease-timeout I]
  send      send TOPIC JSON [--key K] [--headers JSON] [--idempotency-key K]
  dlq       dlq list [--group G] [--all] [--json] | dlq replay --group G [--id ID ...]
  rewind    rewind --group G --to TIME    (deliver everything sent since TIME again)
  maintain  partitions ahead, retention, idempotency keys
  ui        web console: overview, bucket map, messages, dead letters (replay), rewind
            [--port 8080] [--host 127.0.0.1] [--read-only]
            (bucketq COMMAND --help for details)`;

/**
 * The operations command named by argv, if any: the first argument after a leading
 * --database-url URL or --help. Its runner gets argv without the command name.
 */
export function findOpsCommand(argv: string[]): { run: (argv: string[]) => Promise<number>; args: string[] } | undefined {
  let i = 0;
  while (i < argv.length) {
    const a = argv[i]!;
    if (a === '--database-url') i += 2;
    else if (a.startsWith('--database-url=') || a === '-h' || a === '--help') i++;
    else break;
  }
  const name = argv[i];
  if (name === undefined || !Object.hasOwn(OPS_COMMANDS, name)) return undefined;
  return { run: OPS_COMMANDS[name]!, args: [...argv.slice(0, i), ...argv.slice(i + 1)] };
}
