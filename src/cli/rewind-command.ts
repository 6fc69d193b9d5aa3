// `bucketq rewind --group G --to TIME`: deliver everything sent since TIME to the group again.
import { z } from 'zod';
import { query } from '../db/query.js';
import { COMMON_OPTIONS, COMMON_USAGE, TIME_HELP, expectPositionals, parseCommandArgs, parseTime, requiredFlag, validate, withCliClient } from './args.js';

export const REWIND_USAGE = `usage: bucketq rewind --group G --to TIME

Replays a group from a point in time within retention: every message sent at or after
TIME is delivered to the group again, in per-key order. In-flight leases of the group
become void. Other groups are not affected.

  --group G     the consumer group
  --to TIME     ${TIME_HELP}
${COMMON_USAGE}`;

const schema = z.object({
  group: requiredFlag('--group', 'the group to rewind'),
  to: z
    .string({ error: `--to is required: ${TIME_HELP}` })
    .transform((v, ctx) => {
      const d = parseTime(v);
      if (d) return d;
      ctx.addIssue({ code: 'custom', message: `--to must be ${TIME_HELP}; got '${v}'` });
      return z.NEVER;
    }),
});

export async function rewindCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('rewind', REWIND_USAGE, {
    args: argv,
    allowPositionals: true,
    options: { ...COMMON_OPTIONS, group: { type: 'string' }, to: { type: 'string' } },
  });
  if (values.help) {
    console.log(REWIND_USAGE);
    return 0;
  }
  expectPositionals('rewind', REWIND_USAGE, positionals, []);
  const o = validate('rewind', schema, { group: values.group, to: values.to });
  return withCliClient(values['database-url'], async (bq) => {
    const rows = await query<{ n: number }>(bq.pool, 'select bucketq.rewind(group_name => $1::text, to_time => $2::timestamptz) as n', [o.group, o.to]);
    const n = rows[0]?.n ?? 0;
    console.log(`rewound group ${o.group} to ${o.to.toISOString()}: ${n} message${n === 1 ? '' : 's'} will be delivered again`);
    return 0;
  });
}
