// `bucketq status [--group G] [--watch [--interval-ms N]] [--json]`: what the views say,
// as terminal tables (or one JSON document), once or refreshed in place.
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { readStatus, type StatusSnapshot } from '../queries/status.js';
import type { Command } from 'commander';
import { assertGroupExists, intFlag, openClient, validate } from './args.js';
import { UsageError } from './cli-error.js';
import { databaseUrl, runs } from './command.js';
import { formatAge, formatBytes, formatRanges, formatTable } from './table.js';
import { printable, printableJson } from './terminal-text.js';

/** Above this many buckets in a group, the buckets table shows one row per owner. */
const BUCKETS_DETAIL_MAX = 16;
/** The owner of a paused group's buckets (bucketq.pause_group). */
const PAUSED = '';
/** Per-bucket lag rows shown (busiest first); the rest are counted. */
const LAG_ROWS_MAX = 20;

const schema = z.object({
  group: z.string().min(1, '--group must not be empty').optional(),
  watch: z.boolean().default(false),
  intervalMs: intFlag('--interval-ms', 100, 3_600_000),
  json: z.boolean().default(false),
});

export function registerStatus(program: Command): void {
  program
    .command('status')
    .summary('topics, groups, consumers, buckets, lag, throughput, vacuum horizon, rotations, table sizes')
    .description('topics, groups (pending, leased, dead), consumers, bucket ownership, lag per bucket, throughput, the vacuum horizon, the rotations maintain() runs and table sizes, from the bucketq views')
    .option('--group <group>', 'only this group (and its topic)')
    .option('--watch', 'redraw every --interval-ms until Ctrl-C')
    .option('--interval-ms <n>', 'refresh interval for --watch (default 2000)')
    .option('--json', 'one JSON document (with --watch: one per line per refresh)')
    .action(runs(async (flags: { group?: string; watch?: boolean; intervalMs?: string; json?: boolean }, cmd: Command) => statusCommand(flags, databaseUrl(cmd))));
}

async function statusCommand(flags: { group?: string; watch?: boolean; intervalMs?: string; json?: boolean }, url: string | undefined): Promise<number> {
  const o = validate('status', schema, flags);
  if (o.intervalMs !== undefined && !o.watch) {
    throw new UsageError('status: --interval-ms only applies with --watch: add --watch, or drop --interval-ms');
  }
  const { bq, close } = await openClient(url);
  try {
    if (o.group !== undefined) await assertGroupExists(bq, 'status', o.group);
    const draw = async () => {
      const snapshot = await readStatus(bq.pool, o.group);
      return o.json ? printableJson(JSON.stringify(snapshot, null, o.watch ? undefined : 2)) : renderStatus(snapshot);
    };
    if (!o.watch) {
      console.log(await draw());
      return 0;
    }
    await watch(draw, o.intervalMs ?? 2000, o.json);
    return 0;
  } finally {
    await close();
  }
}

/** Redraws until SIGINT/SIGTERM; a failed refresh shows its error and the next one tries again. */
async function watch(draw: () => Promise<string>, intervalMs: number, json: boolean): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Clear screen and scrollback, cursor home: redraw in place on a terminal.
  const clear = !json && process.stdout.isTTY ? '\x1b[H\x1b[2J\x1b[3J' : '';
  try {
    while (!stop.signal.aborted) {
      let text: string;
      try {
        text = await draw();
      } catch (err) {
        if (json) text = printableJson(JSON.stringify({ error: (err as Error).message, at: new Date() }));
        else text = `bucketq status: refresh failed at ${new Date().toISOString()}: ${printable((err as Error).message)}\n(retrying every ${intervalMs} ms; Ctrl-C to stop)`;
      }
      if (stop.signal.aborted) break;
      if (json) console.log(text);
      else {
        process.stdout.write(clear);
        console.log(`${text}\n\nrefreshing every ${intervalMs} ms; Ctrl-C to stop${clear ? '' : '\n'}`);
      }
      await delay(intervalMs, undefined, { signal: stop.signal }).catch(() => {});
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The snapshot as titled terminal tables. */
export function renderStatus(s: StatusSnapshot): string {
  const out: string[] = [];
  const section = (title: string, body: string) => out.push('', title, body);
  out.push(`bucketq status at ${s.takenAt.toISOString()}${s.group ? ` (group ${printable(s.group)})` : ''}`);

  section(
    'topics',
    formatTable(
      ['topic', 'buckets', 'groups', 'partitions', 'retention', 'log size'],
      s.topics.map((t) => [t.topic, t.buckets, t.groups, t.partitions, t.retention, formatBytes(t.logBytes)]),
    ),
  );
  section(
    'groups',
    formatTable(
      ['group', 'topic', 'pending', 'leased', 'dead', 'max attempts', 'on exhausted'],
      s.groups.map((g) => [g.group, g.topic, g.pending, g.leased, g.dead, g.maxAttempts, g.onExhausted]),
    ),
  );
  section(
    'consumers',
    formatTable(
      ['group', 'consumer', 'alive', 'heartbeat age', 'buckets', 'leased'],
      s.consumers.map((c) => [c.group, c.consumerId, c.alive, formatAge(c.heartbeatAgeSeconds), c.ownedBuckets, c.leased]),
    ),
  );
  section('buckets', renderBuckets(s));
  section('lag', renderLag(s));
  section('throughput (acked messages)', renderThroughput(s));
  section(
    'vacuum horizon (oldest xmin holders; this status session left out)',
    formatTable(
      ['kind', 'holder', 'role', 'database', 'state', 'xmin age (xids)', 'transaction age', 'query'],
      s.vacuumHorizon.slice(0, 5).map((v) => [v.kind, v.holder, v.role, v.database, v.state, v.xminAge, formatAge(v.transactionAgeSeconds), v.query]),
      { maxWidth: 50 },
    ),
  );
  section(
    'rotations (parts maintain() empties by TRUNCATE; overdue: due for over 5 minutes)',
    formatTable(
      ['rotation', 'appending to', 'retired', 'size', 'last emptied', 'runs given up', 'due for', 'overdue', 'detail'],
      s.rotations.map((r) => [r.rotation, r.appendingTo, r.retiredRows ? r.retired : `${r.retired} (empty)`, formatBytes(r.bytes),
        r.rotatedAt ? r.rotatedAt.toISOString() : null, r.keptRuns, formatAge(r.dueSeconds), r.overdue ? 'OVERDUE' : 'no', r.detail]),
      { maxWidth: 60 },
    ) +
      // What to do, in full: the table cuts the detail short.
      s.rotations.filter((r) => r.overdue).map((r) => `\n  ${r.rotation} OVERDUE: ${printable(r.detail)}`).join(''),
  );
  const tables = s.tableSizes.filter((t) => t.partitionOf === '');
  section(
    'table sizes (bucketq tables, partitioned ones summed, largest first)',
    formatTable(
      ['table', 'kind', 'size', 'live rows', 'dead rows', 'last autovacuum'],
      tables.slice(0, 12).map((t) => {
        // A partitioned table has no rows of its own: count its partitions'.
        const parts = s.tableSizes.filter((p) => p.partitionOf === t.relation);
        const rows = (pick: (x: (typeof parts)[number]) => number | null) =>
          t.kind === 'partitioned table' ? parts.reduce((a, p) => a + (pick(p) ?? 0), 0) : pick(t);
        return [t.relation, t.kind, t.total, rows((x) => x.liveRows), rows((x) => x.deadRows), t.lastAutovacuum ? t.lastAutovacuum.toISOString() : null];
      }),
    ),
  );
  return out.join('\n');
}

function renderBuckets(s: StatusSnapshot): string {
  const parts: string[] = [];
  const byGroup = groupBy(s.buckets, (b) => b.group);
  const detailed = [...byGroup.values()].filter((bs) => bs.length <= BUCKETS_DETAIL_MAX).flat();
  if (detailed.length) {
    parts.push(
      formatTable(
        ['group', 'bucket', 'owner', 'epoch', 'checkpoint', 'heartbeat age', 'live'],
        detailed.map((b) =>
          b.owner === PAUSED
            ? [b.group, b.bucket, '(paused)', b.epoch, b.checkpoint, '-', false]
            : [b.group, b.bucket, b.owner, b.epoch, b.checkpoint, formatAge(b.heartbeatAgeSeconds), b.owned],
        ),
      ),
    );
  }
  const summarized = [...byGroup.entries()].filter(([, bs]) => bs.length > BUCKETS_DETAIL_MAX);
  if (summarized.length) {
    const rows = summarized.flatMap(([group, bs]) =>
      [...groupBy(bs, (b) => (b.owner === PAUSED ? '(paused)' : (b.owner ?? ''))).entries()].map(([owner, own]) => {
        const epochs = own.map((b) => BigInt(b.epoch));
        const min = epochs.reduce((a, b) => (b < a ? b : a));
        const max = epochs.reduce((a, b) => (b > a ? b : a));
        const ages = own.map((b) => b.heartbeatAgeSeconds).filter((a): a is number => a !== null && owner !== '(paused)');
        return [
          group,
          owner || '(unowned)',
          own.length,
          formatRanges(own.map((b) => b.bucket)),
          min === max ? String(min) : `${min}..${max}`,
          formatAge(ages.length ? Math.max(...ages) : null),
          own.filter((b) => b.owned && b.owner !== PAUSED).length,
        ];
      }),
    );
    parts.push(formatTable(['group', 'owner', 'buckets', 'bucket numbers', 'epochs', 'oldest heartbeat', 'live'], rows));
  }
  return parts.length ? parts.join('\n\n') : formatTable([], []);
}

function renderLag(s: StatusSnapshot): string {
  const cols = ['ready', 'leased', 'delayed', 'waiting', 'dead (blocking)', 'expired leases', 'oldest'];
  const counts = (l: StatusSnapshot['lag'][number] | StatusSnapshot['lagByGroup'][number]) => [
    l.ready,
    l.leased,
    l.delayed,
    l.waiting,
    l.deadBlocking,
    l.expiredLeases,
    formatAge(l.oldestAgeSeconds),
  ];
  const totals = formatTable(['group', 'topic', ...cols], s.lagByGroup.map((l) => [l.group, l.topic, ...counts(l)]));
  const busy = s.lag
    .filter((l) => l.ready + l.leased + l.delayed + l.waiting + l.deadBlocking > 0)
    .sort((a, b) => b.ready + b.leased + b.delayed + b.waiting + b.deadBlocking - (a.ready + a.leased + a.delayed + a.waiting + a.deadBlocking) || a.bucket - b.bucket);
  if (busy.length === 0) return `${totals}\n\n  per bucket: nothing pending`;
  const more = busy.length > LAG_ROWS_MAX ? `\n  ... and ${busy.length - LAG_ROWS_MAX} more buckets with pending messages (--json lists all)` : '';
  return `${totals}\n\n  per bucket (buckets with pending messages, busiest first)\n${formatTable(
    ['group', 'bucket', ...cols],
    busy.slice(0, LAG_ROWS_MAX).map((l) => [l.group, l.bucket, ...counts(l)]),
  )}${more}`;
}

function renderThroughput(s: StatusSnapshot): string {
  const current = Math.floor(s.takenAt.getTime() / 60_000) * 60_000;
  const rows = s.groups.map((g) => {
    const mine = s.throughput.filter((t) => t.group === g.group);
    const sum = (from: number, to = Infinity) =>
      mine.filter((t) => t.minute.getTime() >= from && t.minute.getTime() < to).reduce((a, t) => a + t.acked, 0);
    const lastFull = sum(current - 60_000, current);
    return [g.group, g.topic, sum(current), lastFull, sum(current - 4 * 60_000), sum(-Infinity), Math.round((lastFull / 60) * 10) / 10];
  });
  return formatTable(['group', 'topic', 'this minute', 'last minute', 'last 5 min', 'last 15 min', 'per second (last minute)'], rows);
}

function groupBy<T, K>(items: T[], key: (item: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = m.get(k);
    if (list) list.push(item);
    else m.set(k, [item]);
  }
  return m;
}
