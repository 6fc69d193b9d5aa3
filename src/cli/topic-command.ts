// `bucketq topic create NAME [--buckets N] [--retention I] [--max-payload-bytes N] [--partition-interval I]`
import { z } from 'zod';
import { COMMON_OPTIONS, COMMON_USAGE, checkIntervals, expectPositionals, intFlag, parseCommandArgs, validate, withCliClient } from './args.js';
import { CliError } from './cli-error.js';

export const TOPIC_USAGE = `usage: bucketq topic create NAME [--buckets N] [--retention I] [--max-payload-bytes N] [--partition-interval I]

Creates a topic (idempotent: an existing topic with the same settings is fine).

  --buckets N               virtual partitions (default 16)
  --retention I             how long messages are kept, a Postgres interval like '7 days'
  --max-payload-bytes N     largest payload accepted
  --partition-interval I    time span of one log partition, e.g. '1 day'
${COMMON_USAGE}`;

const schema = z.object({
  buckets: intFlag('--buckets', 1, 65_536),
  retention: z.string().optional(),
  maxPayloadBytes: intFlag('--max-payload-bytes', 1, 2_147_483_647),
  partitionInterval: z.string().optional(),
});

export async function topicCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('topic', TOPIC_USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      buckets: { type: 'string' },
      retention: { type: 'string' },
      'max-payload-bytes': { type: 'string' },
      'partition-interval': { type: 'string' },
    },
  });
  if (values.help) {
    console.log(TOPIC_USAGE);
    return 0;
  }
  const [sub, ...rest] = positionals;
  if (sub !== 'create') {
    throw new CliError(`topic: ${sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`} (valid: create)\n\n${TOPIC_USAGE}`);
  }
  expectPositionals('topic create', TOPIC_USAGE, rest, ['NAME']);
  const name = rest[0]!;
  const o = validate('topic create', schema, {
    buckets: values.buckets,
    retention: values.retention,
    maxPayloadBytes: values['max-payload-bytes'],
    partitionInterval: values['partition-interval'],
  });
  return withCliClient(values['database-url'], async (bq) => {
    await checkIntervals(bq, 'topic create', { '--retention': o.retention, '--partition-interval': o.partitionInterval });
    const created = await bq.createTopic(name, {
      ...(o.buckets !== undefined && { buckets: o.buckets }),
      ...(o.retention !== undefined && { retention: o.retention }),
      ...(o.maxPayloadBytes !== undefined && { maxPayloadBytes: o.maxPayloadBytes }),
      ...(o.partitionInterval !== undefined && { partitionInterval: o.partitionInterval }),
    });
    const { rows } = await bq.pool.query<{ buckets: number; retention: string }>('select buckets, retention::text from bucketq.topics where name = $1', [name]);
    const t = rows[0];
    console.log(`${created ? 'created topic' : 'topic already exists with these settings:'} ${name}${t ? ` (${t.buckets} buckets, retention ${t.retention})` : ''}`);
    return 0;
  });
}
