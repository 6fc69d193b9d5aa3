// The operations CLI (status, topic/group create, send, dlq, rewind, maintain), run in
// this process through run() against a database in a known state, plus one spawned
// `status --watch` stopped with SIGINT.
import { spawn } from 'node:child_process';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { jsonErrorPosition } from '../src/cli/json-arg.js';
import { rewind as consoleRewind } from '../src/ui/queries.js';
import type { StatusSnapshot } from '../src/queries/status.js';
import { ack, claim, nack, useDatabase } from './helpers/sql.js';
import { inProcessCli } from './support/cli.js';

const ctx = useDatabase();

const { cli, ok } = inProcessCli(() => ctx.db.connectionString);

/** Exits non-zero; returns stderr. */
async function fails(...args: string[]): Promise<string> {
  const r = await cli(...args);
  expect(r.code, `bucketq ${args.join(' ')} should fail; printed: ${r.out}`).not.toBe(0);
  return r.err;
}

// Known state for status and dlq: topic ops.t (4 buckets), group ops.g (earliest,
// max_attempts 1), six keyed messages (a a a b b c), consumer c1 owning every bucket;
// a1 and b1 acked, c1 dead-lettered, one of a2/b2 leased, a3 waiting.
const T = 'ops.t';
const G = 'ops.g';
const ids: Record<string, string> = {};
let leasedBucket: number;

describe('bucketq CLI operations', () => {
  beforeAll(async () => {
    await ok('topic', 'create', T, '--buckets', '4');
    await ok('group', 'create', G, '--topic', T, '--start-at', 'earliest', '--max-attempts', '1');
    // A second group on the topic that starts later: --group must filter it out.
    await ok('group', 'create', 'ops.other', '--topic', T, '--start-at', 'latest');
    for (const [name, key] of [['a1', 'a'], ['a2', 'a'], ['a3', 'a'], ['b1', 'b'], ['b2', 'b'], ['c1', 'c']] as const) {
      ids[name] = (await ok('send', T, JSON.stringify({ name }), '--key', key)).trim();
    }
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', [G, 'c1']);
    const heads = await claim(ctx.db.pool, G, 'c1');
    expect(heads.map((m) => String(m.msg_id)).sort()).toEqual([ids.a1, ids.b1, ids.c1].sort());
    await ack(ctx.db.pool, G, heads.filter((m) => m.key !== 'c'));
    const dead = await nack(ctx.db.pool, G, heads.filter((m) => m.key === 'c'), { error: 'boom-c: card declined' });
    expect(dead.map((d) => d.status)).toEqual(['dead']);
    const leased = await claim(ctx.db.pool, G, 'c1', 1);
    expect(leased).toHaveLength(1);
    leasedBucket = leased[0]!.bucket;
  });

  it('status --json reports exactly the known state', async () => {
    const s = JSON.parse(await ok('status', '--json')) as StatusSnapshot;
    const topic = s.topics.find((t) => t.topic === T);
    expect(topic).toMatchObject({ topic: T, buckets: 4, groups: 2 });
    expect(s.groups.find((g) => g.group === G)).toMatchObject({ topic: T, pending: 3, leased: 1, dead: 1, maxAttempts: 1, onExhausted: 'skip' });
    // Created before the sends with start 'latest': all six are pending for it, untouched.
    expect(s.groups.find((g) => g.group === 'ops.other')).toMatchObject({ pending: 6, leased: 0, dead: 0 });
    expect(s.consumers.filter((c) => c.group === G)).toEqual([
      expect.objectContaining({ consumerId: 'c1', alive: true, ownedBuckets: 4, leased: 1 }),
    ]);
    const buckets = s.buckets.filter((b) => b.group === G);
    expect(buckets.map((b) => [b.bucket, b.owner, b.owned])).toEqual([0, 1, 2, 3].map((b) => [b, 'c1', true]));
    expect(s.lagByGroup.find((l) => l.group === G)).toMatchObject({ ready: 1, leased: 1, delayed: 0, waiting: 1, deadBlocking: 0, expiredLeases: 0 });
    const lag = s.lag.filter((l) => l.group === G);
    expect(lag).toHaveLength(4);
    expect(lag.find((l) => l.bucket === leasedBucket)?.leased).toBe(1);
    const sum = (k: 'ready' | 'leased' | 'waiting') => lag.reduce((a, l) => a + l[k], 0);
    expect([sum('ready'), sum('leased'), sum('waiting')]).toEqual([1, 1, 1]);
    expect(s.throughput.filter((t) => t.group === G).reduce((a, t) => a + t.acked, 0)).toBe(2);
    expect(s.tableSizes.map((t) => t.relation)).toEqual(expect.arrayContaining(['message', 'inbox', 'delivery']));
    expect(Array.isArray(s.vacuumHorizon)).toBe(true);
    // The two rotations maintain() runs, each appending to one of its two parts.
    expect(s.rotations.map((r) => r.rotation)).toEqual(['consumer_beat', 'key_counter']);
    for (const r of s.rotations) {
      expect(r.appendingTo).toMatch(new RegExp(`^${r.rotation}_[01]$`));
      expect(r.retired).toMatch(new RegExp(`^${r.rotation}_[01]$`));
      expect(r.retired).not.toBe(r.appendingTo);
      expect(r.bytes).toBeGreaterThan(0);
      expect(typeof r.overdue).toBe('boolean');
    }
  });

  it('status --group shows only that group and its topic', async () => {
    const s = JSON.parse(await ok('status', '--json', '--group', G)) as StatusSnapshot;
    expect(s.group).toBe(G);
    expect(s.groups.map((g) => g.group)).toEqual([G]);
    expect(s.topics.map((t) => t.topic)).toEqual([T]);
    expect(new Set(s.buckets.map((b) => b.group))).toEqual(new Set([G]));
    expect(new Set(s.lag.map((l) => l.group))).toEqual(new Set([G]));
  });

  it('status prints tables with the group, its counts, the consumer and its buckets', async () => {
    const out = await ok('status', '--group', G);
    // group  topic  pending  leased  dead  max attempts  on exhausted
    expect(out).toMatch(new RegExp(`^\\s*ops\\.g\\s+ops\\.t\\s+3\\s+1\\s+1\\s+1\\s+skip\\s*$`, 'm'));
    // group  consumer  alive  heartbeat age  buckets  leased
    expect(out).toMatch(/^\s*ops\.g\s+c1\s+yes\s+\S+\s+4\s+1\s*$/m);
    for (const title of ['topics', 'groups', 'consumers', 'buckets', 'lag', 'throughput', 'vacuum horizon', 'rotations', 'table sizes']) {
      expect(out).toMatch(new RegExp(`^${title}`, 'm'));
    }
  });

  it('status summarises buckets per owner when a group has many', async () => {
    await ok('topic', 'create', 'ops.wide', '--buckets', '64');
    await ok('group', 'create', 'ops.wide.g', '--topic', 'ops.wide');
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['ops.wide.g', 'w1']);
    const out = await ok('status', '--group', 'ops.wide.g');
    // group  owner  buckets  bucket numbers  epochs  oldest heartbeat  live
    expect(out).toMatch(/^\s*ops\.wide\.g\s+w1\s+64\s+0-63\s+\S+\s+\S+\s+64\s*$/m);
    expect(out).not.toMatch(/^\s*ops\.wide\.g\s+63\s+w1/m);
  });

  it('status rejects an unknown group and --interval-ms without --watch', async () => {
    expect(await fails('status', '--group', 'nope')).toMatch(/unknown group 'nope'.*known groups: .*ops\.g/);
    expect(await fails('status', '--interval-ms', '500')).toMatch(/--interval-ms only applies with --watch/);
    expect(await fails('status', '--watch', '--interval-ms', 'soon')).toMatch(/--interval-ms must be a whole number/);
  });

  it('dlq list shows the dead letter with its error', async () => {
    const out = await ok('dlq', 'list', '--group', G);
    // ... last error, payload
    expect(out).toMatch(new RegExp(`^\\s*ops\\.g\\s+${ids.c1}\\s+c\\s+1\\s+1\\s+skipped\\s+\\S+\\s+boom-c: card declined\\s+\\{"name":"c1"\\}\\s*$`, 'm'));
    expect(out).toMatch(/1 dead letter;/);
    const rows = JSON.parse(await ok('dlq', 'list', '--json')) as { msgId: string; lastError: string; status: string; payload: unknown }[];
    expect(rows).toEqual([expect.objectContaining({ msgId: ids.c1, lastError: 'boom-c: card declined', status: 'skipped', payload: { name: 'c1' } })]);
    expect(await ok('dlq', 'list', '--group', 'ops.other')).toMatch(/no dead letters in group ops\.other/);
    expect(await fails('dlq', 'list', '--group', 'nope')).toMatch(/unknown group 'nope'/);
  });

  it('dlq replay re-delivers the dead letter', async () => {
    expect(await fails('dlq', 'replay')).toMatch(/--group is required/);
    expect(await fails('dlq', 'replay', '--group', G, '--id', 'x1')).toMatch(/--id must be a message id.*'x1'/);
    expect(await fails('dlq', 'replay', '--group', G, '--id', '999999')).toMatch(/999999.*not dead letters/);
    expect(await ok('dlq', 'replay', '--group', G, '--id', ids.c1!)).toMatch(/replayed 1 dead letter of group ops\.g/);
    const again = await claim(ctx.db.pool, G, 'c1');
    expect(again.map((m) => String(m.msg_id))).toContain(ids.c1);
    expect(await ok('dlq', 'list', '--group', G)).toMatch(/no dead letters in group ops\.g/);
    expect(await ok('dlq', 'list', '--group', G, '--all')).toMatch(/replayed/);
  });

  it('rewind --to re-delivers acked messages in per-key order', async () => {
    await ok('topic', 'create', 'ops.rw', '--buckets', '2');
    await ok('group', 'create', 'ops.rw.g', '--topic', 'ops.rw', '--start-at', 'earliest');
    const { rows } = await ctx.db.pool.query<{ t: Date }>("select now() - interval '1 second' as t");
    const from = rows[0]!.t.toISOString();
    for (let i = 1; i <= 4; i++) for (const key of ['x', 'y', 'z']) await ok('send', 'ops.rw', JSON.stringify({ key, i }), '--key', key);
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['ops.rw.g', 'r1']);
    const drain = async () => {
      const seen: { key: string; seq: number }[] = [];
      for (let round = 0; round < 50; round++) {
        const batch = await claim(ctx.db.pool, 'ops.rw.g', 'r1');
        if (batch.length === 0) break;
        seen.push(...batch.map((m) => ({ key: m.key!, seq: m.key_seq! })));
        await ack(ctx.db.pool, 'ops.rw.g', batch);
      }
      return seen;
    };
    expect(await drain()).toHaveLength(12);
    expect(await drain()).toEqual([]); // acked: nothing comes back by itself

    // Without --execute: the plan per bucket, and nothing changes.
    const plan = await ok('rewind', '--group', 'ops.rw.g', '--to', from);
    expect(plan).toMatch(/dry run: rewind group ops\.rw\.g to .* would deliver 12 messages again/);
    expect(plan).toMatch(/add --execute/);
    expect(await drain()).toEqual([]);
    expect(await ok('rewind', '--group', 'ops.rw.g', '--to', from, '--execute')).toMatch(/12 messages will be delivered again/);
    const replayed = await drain();
    expect(replayed).toHaveLength(12);
    for (const key of ['x', 'y', 'z']) expect(replayed.filter((m) => m.key === key).map((m) => m.seq)).toEqual([1, 2, 3, 4]);
  });

  it("rewind --execute and --to-latest --execute, and the console's rewind, run in READ COMMITTED on connections whose default is REPEATABLE READ (the functions refuse any other level)", async () => {
    const rrUrl = () => {
      const u = new URL(ctx.db.connectionString);
      u.searchParams.set('options', '-c default_transaction_isolation=repeatable\\ read');
      return u.toString();
    };
    const rr = inProcessCli(rrUrl);
    const level = await ctx.db.pool.query<{ l: string }>('select current_setting($1) as l', ['transaction_isolation']);
    expect(level.rows[0]!.l).toBe('read committed'); // the test's own pool: the default untouched
    await ok('topic', 'create', 'ops.rr', '--buckets', '2');
    await ok('group', 'create', 'ops.rr.g', '--topic', 'ops.rr', '--start-at', 'earliest');
    const probe = new pg.Client({ connectionString: rrUrl() });
    await probe.connect();
    try {
      expect((await probe.query<{ l: string }>("select current_setting('transaction_isolation') as l")).rows[0]!.l).toBe('repeatable read');
      const err = await probe.query('select bucketq.skip_to_latest($1)', ['ops.rr.g']).then(() => undefined, (e: { code?: string }) => e);
      expect(err?.code).toBe('BQ005'); // called directly at that level, it refuses
    } finally {
      await probe.end();
    }
    const { rows } = await ctx.db.pool.query<{ t: Date }>("select now() - interval '1 second' as t");
    for (const key of ['x', 'y', 'z']) await ok('send', 'ops.rr', JSON.stringify({ key }), '--key', key);
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['ops.rr.g', 'r1']);
    const got = await claim(ctx.db.pool, 'ops.rr.g', 'r1');
    expect(got).toHaveLength(3);
    await ack(ctx.db.pool, 'ops.rr.g', got);
    expect(await rr.ok('rewind', '--group', 'ops.rr.g', '--to', rows[0]!.t.toISOString(), '--execute')).toMatch(/3 messages will be delivered again/);
    expect(await rr.ok('rewind', '--group', 'ops.rr.g', '--to-latest', '--execute')).toMatch(/3 messages recorded as done without handling/);
    expect(await claim(ctx.db.pool, 'ops.rr.g', 'r1')).toEqual([]);
    // The console's rewind, on a pool of such connections.
    const pool = new pg.Pool({ connectionString: rrUrl(), max: 1 });
    try {
      expect(await consoleRewind(pool, 'ops.rr.g', rows[0]!.t)).toBe(3);
    } finally {
      await pool.end();
    }
    expect(await claim(ctx.db.pool, 'ops.rr.g', 'r1')).toHaveLength(3);
  });

  it('rewind rejects a bad --to and an unknown group, naming them', async () => {
    expect(await fails('rewind', '--group', G, '--to', 'yesterday')).toMatch(/--to must be .*'yesterday'/);
    expect(await fails('rewind', '--group', G)).toMatch(/--to is required/);
    expect(await fails('rewind', '--group', 'nope', '--to', '5m')).toMatch(/nope/);
  });

  it('topic create, group create and send store what was asked', async () => {
    expect(await ok('topic', 'create', 'ops.made', '--buckets', '8', '--retention', '2 days', '--max-payload-bytes', '2048', '--partition-interval', '6 hours')).toMatch(
      /created topic ops\.made \(8 buckets, retention 2 days\)/,
    );
    expect(await ok('topic', 'create', 'ops.made', '--buckets', '8', '--retention', '2 days', '--max-payload-bytes', '2048', '--partition-interval', '6 hours')).toMatch(
      /already exists with these settings/,
    );
    const t = await ctx.db.pool.query('select buckets, retention::text, max_payload_bytes, partition_interval::text from bucketq.topics where name = $1', ['ops.made']);
    expect(t.rows).toEqual([{ buckets: 8, retention: '2 days', max_payload_bytes: 2048, partition_interval: '06:00:00' }]);

    await ok('group', 'create', 'ops.made.g', '--topic', 'ops.made', '--start-at', '2030-01-02T03:04:05Z', '--max-attempts', '7', '--on-exhausted', 'block', '--session-timeout', '20 seconds', '--lease-timeout', '45s');
    const g = await ctx.db.pool.query(
      'select topic, start_at, max_attempts, on_exhausted, session_timeout::text, lease_timeout::text from bucketq.groups where group_name = $1',
      ['ops.made.g'],
    );
    expect(g.rows).toEqual([
      { topic: 'ops.made', start_at: '2030-01-02T03:04:05.000Z', max_attempts: 7, on_exhausted: 'block', session_timeout: '00:00:20', lease_timeout: '00:00:45' },
    ]);

    const id = (await ok('send', 'ops.made', '{"amount": 42, "items": [1, 2]}', '--key', 'cust-7', '--headers', '{"source": "cli"}', '--idempotency-key', 'order-1')).trim();
    expect(id).toMatch(/^\d+$/);
    expect((await ok('send', 'ops.made', '{"amount": 42, "items": [1, 2]}', '--idempotency-key', 'order-1')).trim()).toBe(id);
    const m = await ctx.db.pool.query('select payload, key, headers from bucketq.message where id = $1', [id]);
    expect(m.rows).toEqual([{ payload: { amount: 42, items: [1, 2] }, key: 'cust-7', headers: { source: 'cli' } }]);
    const count = await ctx.db.pool.query("select count(*)::int as n from bucketq.message m join bucketq.topic t using (topic_id) where t.name = 'ops.made'");
    expect(count.rows[0].n).toBe(1);
  });

  it('bad input exits non-zero with a message naming the input, and changes nothing', async () => {
    const before = await ctx.db.pool.query('select count(*)::int as n from bucketq.message');
    const badJson = await fails('send', T, '{"amount": 42,}');
    expect(badJson).toMatch(/payload \(JSON argument\) is not valid JSON: error at position 14 \(line 1, column 15\)/);
    expect(badJson).toContain('{"amount": 42,}\n                  ^');
    expect(await fails('send', T, '{"a": 1}', '--headers', '{source: 1}')).toMatch(/--headers is not valid JSON: error at position 1/);
    expect(await fails('send', T, '{"a": 1}', '--headers', '[1]')).toMatch(/--headers must be a JSON object/);
    expect(await fails('send', T)).toMatch(/send: missing JSON/);
    expect(await fails('send', 'ops.nope', '{}')).toMatch(/unknown topic: 'ops\.nope'/);
    const after = await ctx.db.pool.query('select count(*)::int as n from bucketq.message');
    expect(after.rows[0].n).toBe(before.rows[0].n);

    expect(await fails('group', 'create', 'ops.bad', '--topic', T, '--start-at', 'yesterday')).toMatch(/--start-at must be 'earliest', 'latest' or .*got 'yesterday'/);
    expect(await fails('group', 'create', 'ops.bad', '--start-at', 'earliest')).toMatch(/--topic is required/);
    expect(await fails('group', 'create', 'ops.bad', '--topic', T, '--on-exhausted', 'retry')).toMatch(/--on-exhausted must be 'skip' or 'block', got 'retry'/);
    expect(await fails('group', 'create', 'ops.bad', '--topic', T, '--lease-timeout', 'forever')).toMatch(/--lease-timeout must be a Postgres interval.*'forever'/);
    expect(await fails('group', 'create', 'ops.bad', '--topic', 'ops.nope')).toMatch(/unknown topic: 'ops\.nope'/);
    expect(await fails('topic', 'create', 'ops.bad', '--buckets', '0')).toMatch(/--buckets must be a whole number from 1 to 65536, got '0'/);
    expect(await fails('topic', 'create', 'ops.bad', '--retention', 'a while')).toMatch(/--retention must be a Postgres interval/);
    expect(await fails('topic', 'create', T, '--buckets', '5')).toMatch(/ConflictError \[BQ007\].*\n(.*\n)*hint: /);
    expect(await fails('topic', 'make', 'x')).toMatch(/topic: unknown command 'make'/);
    expect(await fails('dlq', 'list', '--bogus')).toMatch(/dlq list: unknown option '--bogus'/);
    const made = await ctx.db.pool.query("select count(*)::int as n from bucketq.groups where group_name = 'ops.bad'");
    expect(made.rows[0].n).toBe(0);
    const topics = await ctx.db.pool.query("select count(*)::int as n from bucketq.topics where name = 'ops.bad'");
    expect(topics.rows[0].n).toBe(0);
  });

  it('maintain runs and reports', async () => {
    const r = await cli('maintain');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/nothing to do|topic\s+action\s+detail/);
  });

  it('the existing commands still parse as before', async () => {
    expect(await fails('worker', '--group', G)).toMatch(/--handler/);
    expect(await fails('worker', '--group', G, '--handler', 'x.js', '--metrics-port', 'abc')).toMatch(/--metrics-port must be a number/);
    const help = await cli('--help');
    expect(help.out).toMatch(/status \[options\]\s+topics, groups/);
    expect((await cli('worker', '--help')).out).toMatch(/--metrics-port <n>\s+serve Prometheus/);
  });

  it('status --watch redraws until SIGINT, then exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'status', '--watch', '--interval-ms', '200', '--group', G, '--database-url', ctx.db.connectionString], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while ((out.match(/refreshing every 200 ms/g) ?? []).length < 2) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`watch did not redraw twice: ${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toMatch(/^\s*ops\.g\s+ops\.t\s+\d+\s+\d+\s+\d+/m);
  });
});

describe('jsonErrorPosition', () => {
  it.each([
    ['{"a": }', 6],
    ['{"a": 1,}', 8],
    ['[1, 2', 5],
    ['{a: 1}', 1],
    ['"abc', 4],
    ['tru', 3],
    ['1 2', 2],
    ['{"a": "\\x"}', 8],
    ['', 0],
  ])('%j fails at %i', (text, pos) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(jsonErrorPosition(text)).toBe(pos);
  });
});
