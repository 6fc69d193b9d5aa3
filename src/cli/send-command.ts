// `bucketq send TOPIC JSON` (one message) or `bucketq send TOPIC --file FILE|-` (one
// message per line, from a file or stdin), with key, headers, idempotency key, not-before.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import type { BatchMessage } from '../options.js';
import { FUTURE_TIME_HELP, parseFutureTime, validate, withCliClient } from './args.js';
import { CliError, UsageError } from './cli-error.js';
import { databaseUrl, plural, runs } from './command.js';
import { parseJsonArg } from './json-arg.js';

/** Messages per send_batch statement; all of them commit in one transaction. */
const BATCH = 1000;

const schema = z.object({
  key: z.string().optional(),
  idempotencyKey: z.string().min(1, '--idempotency-key must not be empty').optional(),
  keySeparator: z.string().min(1, '--key-separator must not be empty').optional(),
  notBefore: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const d = parseFutureTime(v);
      if (d) return d;
      ctx.addIssue({ code: 'custom', message: `--not-before must be ${FUTURE_TIME_HELP}; got '${v}'` });
      return z.NEVER;
    }),
});

interface SendFlags {
  key?: string;
  headers?: string;
  idempotencyKey?: string;
  notBefore?: string;
  file?: string;
  keySeparator?: string;
}

export function registerSend(program: Command): void {
  program
    .command('send')
    .summary('send a message (JSON argument), or one per line of a file or stdin')
    .description('send one message (JSON argument) and print its id, or one message per line of a file or stdin (--file FILE, - for stdin)')
    .argument('<topic>', 'the topic')
    .argument('[json]', "the payload, quoted for the shell: '{\"amount\": 42}'; - reads lines from stdin like --file -")
    .option('--key <key>', 'message key: per-key order, same bucket (every line, unless --key-separator)')
    .option('--headers <json>', 'a JSON object of headers (every line)')
    .option('--idempotency-key <key>', 'a repeat within the topic\'s retention returns the first id and sends nothing (one message only)')
    .option('--not-before <time>', `deliver no earlier than this: ${FUTURE_TIME_HELP}`)
    .option('--file <file>', 'send one message per line of FILE (- for stdin); empty lines are skipped; all lines commit together or none')
    .option('--key-separator <sep>', 'with --file: each line is KEY<sep>JSON (like kafka-console-producer\'s parse.key)')
    .addHelpText('after', `
examples:
  bucketq send orders '{"amount": 42}' --key customer-7
  bucketq send orders --file orders.jsonl --key-separator '|'      # lines like: customer-7|{"amount": 42}
  producer | bucketq send orders - --not-before 5m`)
    .action(
      runs(async (topic: string, json: string | undefined, flags: SendFlags, cmd: Command) => {
        const o = validate('send', schema, flags);
        const file = json === '-' ? '-' : flags.file;
        if (json !== undefined && json !== '-' && flags.file !== undefined) throw new UsageError('send: give the payload as a JSON argument or --file, not both');
        if (json === undefined && file === undefined) throw new UsageError("send: missing JSON (the payload), or --file FILE (one message per line; - for stdin)\nsee: bucketq send --help");
        if (file === undefined && o.keySeparator !== undefined) throw new UsageError('send: --key-separator only applies to --file (or - for stdin)');
        if (file !== undefined && o.idempotencyKey !== undefined) throw new UsageError('send: --idempotency-key applies to one message, not to --file');
        if (o.keySeparator !== undefined && o.key !== undefined) throw new UsageError('send: give --key or --key-separator, not both');
        let headers: Record<string, unknown> | undefined;
        if (flags.headers !== undefined) {
          const h = parseJsonArg('send: --headers', flags.headers);
          if (typeof h !== 'object' || h === null || Array.isArray(h)) {
            throw new UsageError(`send: --headers must be a JSON object like '{"source": "cli"}', got ${flags.headers}`);
          }
          headers = h as Record<string, unknown>;
        }
        const common = {
          ...(headers !== undefined && { headers }),
          ...(o.notBefore !== undefined && { notBefore: o.notBefore }),
        };
        if (file === undefined) {
          const payload = parseJsonArg('send: the payload (JSON argument)', json!);
          return withCliClient(databaseUrl(cmd), async (bq) => {
            const id = await bq.send(topic, payload, {
              ...common,
              ...(o.key !== undefined && { key: o.key }),
              ...(o.idempotencyKey !== undefined && { idempotencyKey: o.idempotencyKey }),
            });
            console.log(id);
            return 0;
          });
        }
        // Every line is checked before anything is sent.
        const text = file === '-' ? await readStdin() : await readFile(file, 'utf8').catch((err: Error) => {
          throw new CliError(`send: cannot read ${file}: ${err.message}`);
        });
        const messages: BatchMessage[] = [];
        text.split(/\r?\n/).forEach((line, i) => {
          if (line.trim() === '') return;
          const where = `send: ${file === '-' ? 'stdin' : file} line ${i + 1}`;
          let key = o.key;
          let body = line;
          if (o.keySeparator !== undefined) {
            const at = line.indexOf(o.keySeparator);
            if (at < 0) throw new UsageError(`${where} has no key separator '${o.keySeparator}': lines look like KEY${o.keySeparator}JSON`);
            key = line.slice(0, at);
            body = line.slice(at + o.keySeparator.length);
          }
          messages.push({ payload: parseJsonArg(where, body), ...(key !== undefined && key !== '' && { key }), ...common });
        });
        if (messages.length === 0) throw new UsageError(`send: ${file === '-' ? 'stdin' : file} has no messages (one JSON payload per line)`);
        return withCliClient(databaseUrl(cmd), async (bq) => {
          const client = await bq.pool.connect();
          const ids: string[] = [];
          try {
            await client.query('begin');
            for (let i = 0; i < messages.length; i += BATCH) ids.push(...(await bq.sendBatch(topic, messages.slice(i, i + BATCH), { client })));
            await client.query('commit');
          } catch (err) {
            await client.query('rollback').catch(() => {});
            throw err;
          } finally {
            client.release();
          }
          console.log(`sent ${plural(ids.length, 'message')} to ${topic}: ids ${ids[0]}${ids.length > 1 ? ` to ${ids[ids.length - 1]}` : ''}`);
          return 0;
        });
      }),
    );
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
