// `bucketq send TOPIC JSON [--key K] [--headers JSON] [--idempotency-key K]`
import { z } from 'zod';
import { COMMON_OPTIONS, COMMON_USAGE, expectPositionals, parseCommandArgs, validate, withCliClient } from './args.js';
import { CliError } from './cli-error.js';
import { parseJsonArg } from './json-arg.js';

export const SEND_USAGE = `usage: bucketq send TOPIC JSON [--key K] [--headers JSON] [--idempotency-key K]

Sends one message (JSON payload, quoted for the shell) and prints its id.

  --key K               message key: per-key order, same bucket
  --headers JSON        a JSON object of headers
  --idempotency-key K   a repeat within the topic's retention returns the first id, sends nothing
${COMMON_USAGE}`;

const schema = z.object({
  key: z.string().optional(),
  idempotencyKey: z.string().min(1, '--idempotency-key must not be empty').optional(),
});

export async function sendCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('send', SEND_USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      key: { type: 'string' },
      headers: { type: 'string' },
      'idempotency-key': { type: 'string' },
    },
  });
  if (values.help) {
    console.log(SEND_USAGE);
    return 0;
  }
  expectPositionals('send', SEND_USAGE, positionals, ['TOPIC', 'JSON']);
  const [topic, json] = positionals as [string, string];
  const o = validate('send', schema, { key: values.key, idempotencyKey: values['idempotency-key'] });
  const payload = parseJsonArg('send: the payload (JSON argument)', json);
  let headers: Record<string, unknown> | undefined;
  if (values.headers !== undefined) {
    const h = parseJsonArg('send: --headers', values.headers);
    if (typeof h !== 'object' || h === null || Array.isArray(h)) {
      throw new CliError(`send: --headers must be a JSON object like '{"source": "cli"}', got ${values.headers}`);
    }
    headers = h as Record<string, unknown>;
  }
  return withCliClient(values['database-url'], async (bq) => {
    const id = await bq.send(topic, payload, {
      ...(o.key !== undefined && { key: o.key }),
      ...(headers !== undefined && { headers }),
      ...(o.idempotencyKey !== undefined && { idempotencyKey: o.idempotencyKey }),
    });
    console.log(id);
    return 0;
  });
}
