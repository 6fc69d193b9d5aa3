// `bucketq group create NAME --topic T [--start-at earliest|latest|TIME] [--max-attempts N]
//  [--on-exhausted skip|block] [--session-timeout I] [--lease-timeout I] [--backoff-base I] [--backoff-max I]`
import { z } from 'zod';
import { COMMON_OPTIONS, COMMON_USAGE, TIME_HELP, checkIntervals, expectPositionals, intFlag, parseCommandArgs, parseTime, requiredFlag, validate, withCliClient } from './args.js';
import { CliError } from './cli-error.js';

export const GROUP_USAGE = `usage: bucketq group create NAME --topic T [--start-at earliest|latest|TIME] [--max-attempts N]
         [--on-exhausted skip|block] [--session-timeout I] [--lease-timeout I] [--backoff-base I] [--backoff-max I]

Creates a consumer group on a topic (idempotent: an existing group with the same settings is fine).

  --topic T             the topic to subscribe to (required)
  --start-at WHERE      earliest (everything retained), latest (default: from now on), or
                        ${TIME_HELP}
  --max-attempts N      tries before a message is dead-lettered (default 4)
  --on-exhausted MODE   skip (default: the key moves on) or block (the key waits for dlq replay)
  --session-timeout I   how long a consumer may miss heartbeats, e.g. '10 seconds'
  --lease-timeout I     how long a claim holds a message, e.g. '30 seconds'
  --backoff-base I      first retry delay; retry n waits base * 2^(n-1)
  --backoff-max I       cap on the retry delay
${COMMON_USAGE}`;

const schema = z.object({
  topic: requiredFlag('--topic', 'the topic the group reads, e.g. --topic orders'),
  startAt: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === 'earliest' || v === 'latest') return v;
      const d = parseTime(v);
      if (d) return d;
      ctx.addIssue({ code: 'custom', message: `--start-at must be 'earliest', 'latest' or ${TIME_HELP}; got '${v}'` });
      return z.NEVER;
    }),
  maxAttempts: intFlag('--max-attempts', 1, 1_000_000),
  onExhausted: z.enum(['skip', 'block'], { error: (iss) => `--on-exhausted must be 'skip' or 'block', got '${String(iss.input)}'` }).optional(),
  sessionTimeout: z.string().optional(),
  leaseTimeout: z.string().optional(),
  backoffBase: z.string().optional(),
  backoffMax: z.string().optional(),
});

export async function groupCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('group', GROUP_USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      ...COMMON_OPTIONS,
      topic: { type: 'string' },
      'start-at': { type: 'string' },
      'max-attempts': { type: 'string' },
      'on-exhausted': { type: 'string' },
      'session-timeout': { type: 'string' },
      'lease-timeout': { type: 'string' },
      'backoff-base': { type: 'string' },
      'backoff-max': { type: 'string' },
    },
  });
  if (values.help) {
    console.log(GROUP_USAGE);
    return 0;
  }
  const [sub, ...rest] = positionals;
  if (sub !== 'create') {
    throw new CliError(`group: ${sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`} (valid: create)\n\n${GROUP_USAGE}`);
  }
  expectPositionals('group create', GROUP_USAGE, rest, ['NAME']);
  const name = rest[0]!;
  const o = validate('group create', schema, {
    topic: values.topic,
    startAt: values['start-at'],
    maxAttempts: values['max-attempts'],
    onExhausted: values['on-exhausted'],
    sessionTimeout: values['session-timeout'],
    leaseTimeout: values['lease-timeout'],
    backoffBase: values['backoff-base'],
    backoffMax: values['backoff-max'],
  });
  return withCliClient(values['database-url'], async (bq) => {
    await checkIntervals(bq, 'group create', {
      '--session-timeout': o.sessionTimeout,
      '--lease-timeout': o.leaseTimeout,
      '--backoff-base': o.backoffBase,
      '--backoff-max': o.backoffMax,
    });
    const created = await bq.createGroup(name, o.topic, {
      ...(o.startAt !== undefined && { startAt: o.startAt }),
      ...(o.maxAttempts !== undefined && { maxAttempts: o.maxAttempts }),
      ...(o.onExhausted !== undefined && { onExhausted: o.onExhausted }),
      ...(o.sessionTimeout !== undefined && { sessionTimeout: o.sessionTimeout }),
      ...(o.leaseTimeout !== undefined && { leaseTimeout: o.leaseTimeout }),
      ...(o.backoffBase !== undefined && { backoffBase: o.backoffBase }),
      ...(o.backoffMax !== undefined && { backoffMax: o.backoffMax }),
    });
    const { rows } = await bq.pool.query<{ start_at: string; max_attempts: number; on_exhausted: string }>(
      'select start_at::text, max_attempts, on_exhausted from bucketq.groups where group_name = $1',
      [name],
    );
    const g = rows[0];
    console.log(
      `${created ? 'created group' : 'group already exists with these settings:'} ${name} on topic ${o.topic}` +
        (g ? ` (start at ${g.start_at}, max attempts ${g.max_attempts}, on exhausted ${g.on_exhausted})` : ''),
    );
    return 0;
  });
}
