// `bucketq maintain`: partitions ahead, retention, idempotency keys (what workers also run every minute).
import type { Command } from 'commander';
import { withCliClient } from './args.js';
import { databaseUrl, runs } from './command.js';
import { formatTable } from './table.js';

export function registerMaintain(program: Command): void {
  program
    .command('maintain')
    .summary('partitions ahead, retention, idempotency keys')
    .description('run bucketq.maintain(): create log partitions ahead, drop partitions past retention that every group has finished, prune expired idempotency keys, raise log floors, rotate the per-key counters; safe any time')
    .action(
      runs(async (_flags: object, cmd: Command) =>
        withCliClient(databaseUrl(cmd), async (bq) => {
          const actions = await bq.maintain();
          if (actions.length === 0) console.log('maintenance: nothing to do');
          else console.log(formatTable(['topic', 'action', 'detail'], actions.map((a) => [a.topic ?? '(all topics)', a.action, a.detail]), { maxWidth: 100 }));
          return 0;
        }),
      ),
    );
}
