// `bucketq maintain`: partitions ahead, retention, idempotency keys (what workers also run every minute).
import { COMMON_OPTIONS, COMMON_USAGE, expectPositionals, parseCommandArgs, withCliClient } from './args.js';
import { formatTable } from './table.js';

export const MAINTAIN_USAGE = `usage: bucketq maintain

Runs bucketq.maintain(): creates log partitions ahead, drops partitions past retention
that every group has finished, prunes expired idempotency keys. Safe to run any time.

${COMMON_USAGE}`;

export async function maintainCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('maintain', MAINTAIN_USAGE, { args: argv, allowPositionals: true, options: { ...COMMON_OPTIONS } });
  if (values.help) {
    console.log(MAINTAIN_USAGE);
    return 0;
  }
  expectPositionals('maintain', MAINTAIN_USAGE, positionals, []);
  return withCliClient(values['database-url'], async (bq) => {
    const actions = await bq.maintain();
    if (actions.length === 0) console.log('maintenance: nothing to do');
    else console.log(formatTable(['topic', 'action', 'detail'], actions.map((a) => [a.topic, a.action, a.detail]), { maxWidth: 100 }));
    return 0;
  });
}
