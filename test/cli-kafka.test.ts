// The Kafka-style operator commands of issue 12, run as the real CLI against a real
// Postgres: topic and group list/describe/delete, group pause/resume (with a running
// consumer), rewind's dry run, --execute and --to-latest, send from a file and stdin,
// tail, peek, message, dlq list/delete; exit codes, help, suggestions; PG* variables.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { claim, ack, nack, useDatabase } from './helpers/sql.js';
import { inProcessCli, spawnCli } from './support/cli.js';
import { ROOT } from './support/private-copy.js';
import { sleep, waitFor } from './support/wait.js';

const ctx = useDatabase();
const { cli, ok, fails } = inProcessCli(() => ctx.db.connectionString);
const quiet = pino({ level: 'silent' });
let bq: BucketQ;
let dir: string;

beforeAll(() => {
  bq = new BucketQ({ connectionString: ctx.db.connectionString, poolMax: 4 });
  dir = mkdtempSync(path.join(tmpdir(), 'bucketq-cli-'));
});
afterAll(async () => {
  await bq?.close();
});

const count = async (sql: string, params: unknown[] = []) => (await ctx.db.pool.query<{ n: number }>(sql, params)).rows[0]!.n;

describe('usage, help and exit codes', () => {
  it('--version, worker --help, suggestions; usage errors exit 2 and runtime errors 1, everywhere', async () => {
    expect((await ok('--version')).trim()).toBe('0.1.0');
    const workerHelp = await ok('worker', '--help');
    expect(workerHelp).toMatch(/^Usage: bucketq worker \[options\]/);
    expect(workerHelp).toMatch(/--concurrency <n>.*\n?.*\(env:\s+BUCKETQ_CONCURRENCY\)/);
    expect(workerHelp).not.toMatch(/topic\s+create, list/); // not the global help

    expect(await fails(2, 'statsu')).toMatch(/unknown command 'statsu'\n\(Did you mean status\?\)/);
    expect(await fails(2, 'topic', 'create', 'x.t', '--bucket', '3')).toMatch(/topic create: unknown option '--bucket'\n\(Did you mean --buckets\?\)/);
    expect(await fails(2, 'migrate', '--rate', '5', '--group', 'x')).toMatch(/migrate: unknown option '--rate'/);
    expect(await fails(2, 'topic', 'create', 'x.t', '--buckets', '0')).toMatch(/--buckets must be a whole number from 1 to 65536/);
    expect(await fails(2, 'worker', '--group', 'g', '--handler', 'h.js', '--concurrency', 'many')).toMatch(/--concurrency must be a number/);
    expect(await fails(2, 'send', 'x.t', '{"a":')).toMatch(/not valid JSON/);
    expect(await fails(2, 'topic', 'describe')).toMatch(/topic describe: missing required argument 'name'/);
    expect(await fails(2, 'message', '1', '2')).toMatch(/too many arguments/);
    // Runtime: the database says no. Hints name CLI commands, not SQL.
    const unknownTopic = await fails(1, 'send', 'no.such.topic', '{}');
    expect(unknownTopic).toMatch(/UnknownTopicError \[BQ002\]/);
    expect(unknownTopic).toMatch(/hint: list topics with `bucketq topic list`/);
    expect(unknownTopic).not.toMatch(/select|bucketq\.create_topic/);
    expect(await fails(1, 'topic', 'describe', 'no.such.topic')).toMatch(/unknown topic 'no\.such\.topic'/);
    expect(await fails(1, 'group', 'pause', 'no.such.group')).toMatch(/unknown group 'no\.such\.group'/);
  });

  it('a real process: no command exits 2 with the help on stderr; --version', async () => {
    const none = await spawnCli([]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/Usage: bucketq \[options\] \[command\]/);
    const version = await spawnCli(['--version']);
    expect(version).toMatchObject({ code: 0, out: '0.1.0\n' });
  }, 60_000);
});

describe('topic list, describe, delete', () => {
  it('lists and describes topics with their groups; delete needs --force while groups read it', async () => {
    await ok('topic', 'create', 'k.t1', '--buckets', '4');
    await ok('topic', 'create', 'k.t2', '--buckets', '2');
    await ok('group', 'create', 'k.t1.g', '--topic', 'k.t1', '--start-at', 'earliest');
    await ok('send', 'k.t1', '{"n": 1}', '--key', 'a');
    await ok('send', 'k.t1', '{"n": 2}', '--key', 'b');

    const list = JSON.parse(await ok('topic', 'list', '--json')) as { topic: string; buckets: number; groups: number }[];
    expect(list.filter((t) => t.topic.startsWith('k.t'))).toEqual([
      expect.objectContaining({ topic: 'k.t1', buckets: 4, groups: 1 }),
      expect.objectContaining({ topic: 'k.t2', buckets: 2, groups: 0 }),
    ]);
    expect(await ok('topic', 'list')).toMatch(/^\s*k\.t1\s+4\s+\S+( \S+)?\s+1\s+\d+/m);
    const described = JSON.parse(await ok('topic', 'describe', 'k.t1', '--json')) as { buckets: number; consumerGroups: { group: string; pending: number }[] };
    expect(described).toMatchObject({ buckets: 4, consumerGroups: [{ group: 'k.t1.g', pending: 2 }] });
    expect(await ok('topic', 'describe', 'k.t1')).toMatch(/^\s*k\.t1\.g\s+earliest\s+2\s+0\s+0\s*$/m);

    const topicId = (await ctx.db.pool.query<{ topic_id: number }>("select topic_id from bucketq.topic where name = 'k.t1'")).rows[0]!.topic_id;
    const refused = await fails(1, 'topic', 'delete', 'k.t1');
    expect(refused).toMatch(/topic k\.t1 has 1 consumer group\(s\): k\.t1\.g/);
    expect(refused).toMatch(/hint: delete the groups first \(`bucketq group delete NAME`\), or add --force/);
    const unknown = await fails(1, 'topic', 'delete', 'k.nope');
    expect(unknown).toMatch(/UnknownTopicError \[BQ002\]: unknown topic: 'k\.nope'\nhint: list topics with `bucketq topic list`/);
    expect(unknown).not.toMatch(/select|create_topic/);
    expect(await count("select count(*)::int as n from bucketq.topics where name = 'k.t1'")).toBe(1);

    expect(await ok('topic', 'delete', 'k.t1', '--force')).toMatch(/deleted topic k\.t1 with 2 messages and 1 consumer group/);
    expect(await count("select count(*)::int as n from bucketq.topics where name = 'k.t1'")).toBe(0);
    expect(await count("select count(*)::int as n from bucketq.groups where group_name = 'k.t1.g'")).toBe(0);
    expect(await count('select count(*)::int as n from pg_class where relname in ($1, $2)', [`message_t${topicId}`, `delivery_t${topicId}`])).toBe(0);
    expect(await count('select count(*)::int as n from bucketq.inbox i where not exists (select 1 from bucketq.consumer_group g where g.group_id = i.group_id)')).toBe(0);
    expect(await ok('topic', 'delete', 'k.t2')).toMatch(/deleted topic k\.t2 with 0 messages$/);
    // The name is free again.
    await ok('topic', 'create', 'k.t1', '--buckets', '1');
  });
});

describe('group list, describe, delete', () => {
  it('shows state, consumers and backlog; delete is refused while a consumer is alive, keeps the topic and other groups', async () => {
    await ok('topic', 'create', 'g.t', '--buckets', '2');
    await ok('group', 'create', 'g.a', '--topic', 'g.t', '--start-at', 'earliest');
    await ok('group', 'create', 'g.b', '--topic', 'g.t', '--start-at', 'earliest');
    for (const k of ['x', 'y', 'x']) await ok('send', 'g.t', `{"k": "${k}"}`, '--key', k);
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['g.a', 'ga-1']);

    const groups = JSON.parse(await ok('group', 'list', '--topic', 'g.t', '--json')) as { group: string; state: string; consumers: number; pending: number }[];
    expect(groups).toEqual([
      expect.objectContaining({ group: 'g.a', state: 'active', consumers: 1, pending: 3 }),
      expect.objectContaining({ group: 'g.b', state: 'idle', consumers: 0, pending: 3 }),
    ]);
    expect(await ok('group', 'list')).toMatch(/^\s*g\.a\s+g\.t\s+active\s+1\s+3\s+0\s+0\s+\S+\s*$/m);
    const d = JSON.parse(await ok('group', 'describe', 'g.a', '--json')) as { pending: number; oldestAgeSeconds: number | null; consumerList: { consumerId: string; ownedBuckets: number }[]; buckets: { bucket: number; owner: string; ready: number; waiting: number }[] };
    // (summed from the buckets' lag, as groups.pending counts it)
    const { rows: view } = await ctx.db.pool.query<{ pending: string }>(`select pending from bucketq.groups where group_name = 'g.a'`);
    expect(d.pending).toBe(Number(view[0]!.pending));
    expect(d.pending).toBe(3);
    expect(d.oldestAgeSeconds).toBeGreaterThanOrEqual(0);
    expect(d.consumerList).toEqual([expect.objectContaining({ consumerId: 'ga-1', ownedBuckets: 2 })]);
    expect(d.buckets.map((b) => b.owner)).toEqual(['ga-1', 'ga-1']);
    expect(d.buckets.reduce((a, b) => a + b.ready, 0)).toBe(2);
    expect(d.buckets.reduce((a, b) => a + b.waiting, 0)).toBe(1);
    expect(await ok('group', 'describe', 'g.a')).toMatch(/^\s*ga-1\s+yes\s+\S+\s+2\s+0\s*$/m);

    expect(await fails(1, 'group', 'delete', 'g.a')).toMatch(/group g\.a has 1 live consumer\(s\): ga-1\nhint: stop its workers first, or add --force/);
    expect(await ok('group', 'delete', 'g.a', '--force')).toMatch(/deleted group g\.a \(3 messages were still pending for it\)/);
    expect(await count("select count(*)::int as n from bucketq.groups where group_name = 'g.a'")).toBe(0);
    expect(await count("select count(*)::int as n from bucketq.consumers where group_name = 'g.a'")).toBe(0);
    expect(await count("select pending::int as n from bucketq.groups where group_name = 'g.b'")).toBe(3);
    expect(await count("select count(*)::int as n from bucketq.messages where topic = 'g.t'")).toBe(3);
  });
});

describe('group pause and resume', () => {
  it('a paused group consumes nothing while messages keep coming; resumed, it catches up in key order', async () => {
    await ok('topic', 'create', 'p.t', '--buckets', '4');
    await ok('group', 'create', 'p.g', '--topic', 'p.t', '--start-at', 'earliest', '--session-timeout', '2 seconds');
    const handled: string[] = [];
    const consumer = await bq.consume(
      { group: 'p.g', handler: async (m) => void handled.push(String((m.payload as { n: string }).n)), heartbeatIntervalMs: 100, pollIntervalMs: 100 },
      quiet,
    );
    try {
      await ok('send', 'p.t', '{"n": "1"}', '--key', 'k');
      await waitFor('first message handled', () => handled.length === 1);

      expect(await ok('group', 'pause', 'p.g')).toMatch(/paused group p\.g \(4 buckets\); resume with: bucketq group resume p\.g/);
      expect(await ok('group', 'pause', 'p.g')).toMatch(/already paused/);
      for (const n of ['2', '3', '4']) await ok('send', 'p.t', `{"n": "${n}"}`, '--key', 'k');
      await sleep(1500); // many heartbeats and polls
      expect(handled).toEqual(['1']);
      expect(JSON.parse(await ok('group', 'list', '--json')).find((g: { group: string }) => g.group === 'p.g')).toMatchObject({ state: 'paused', pending: 3 });
      expect(await ok('group', 'describe', 'p.g')).toMatch(/paused: no consumer takes its buckets until `bucketq group resume p\.g`/);
      expect(await count("select count(*)::int as n from bucketq.buckets where group_name = 'p.g' and owner = ''")).toBe(4);
      expect(await ok('status', '--group', 'p.g')).toMatch(/^\s*p\.g\s+0\s+\(paused\)\s+\d+/m);

      expect(await ok('group', 'resume', 'p.g')).toMatch(/resumed group p\.g \(4 buckets\)/);
      await waitFor('backlog handled after resume', () => handled.length === 4);
      expect(handled).toEqual(['1', '2', '3', '4']);
      expect(await ok('group', 'resume', 'p.g')).toMatch(/was not paused/);
      expect(await count("select count(*)::int as n from bucketq.buckets where group_name = 'p.g' and owner = ''")).toBe(0);
    } finally {
      await consumer.stop();
    }
  }, 60_000);
});

describe('rewind', () => {
  it('--to-latest shows the backlog per bucket, then skips it with --execute: in-flight leases are void, later messages flow', async () => {
    await ok('topic', 'create', 'r.t', '--buckets', '2');
    await ok('group', 'create', 'r.g', '--topic', 'r.t', '--start-at', 'earliest');
    await ok('group', 'create', 'r.other', '--topic', 'r.t', '--start-at', 'earliest');
    for (let i = 0; i < 5; i++) await ok('send', 'r.t', `{"i": ${i}}`, '--key', `k${i % 3}`);
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['r.g', 'r1']);
    const leased = await claim(ctx.db.pool, 'r.g', 'r1', 1);
    expect(leased).toHaveLength(1);

    const dry = JSON.parse(await ok('rewind', '--group', 'r.g', '--to-latest', '--json')) as { execute: boolean; total: number; buckets: { bucket: number; messages: number }[] };
    expect(dry).toMatchObject({ execute: false, total: 5 });
    const perBucket = await ctx.db.pool.query<{ bucket: number; n: number }>("select bucket, count(*)::int as n from bucketq.messages where topic = 'r.t' group by bucket order by bucket");
    expect(dry.buckets).toEqual(perBucket.rows.map((r) => ({ bucket: r.bucket, messages: r.n })));
    expect(await ok('rewind', '--group', 'r.g', '--to-latest')).toMatch(/dry run: skip group r\.g to the latest message would skip 5 messages .*\nnothing changed: add --execute/);
    expect(await count("select pending::int as n from bucketq.groups where group_name = 'r.g'")).toBe(5);

    expect(await ok('rewind', '--group', 'r.g', '--to-latest', '--execute')).toMatch(/skipped group r\.g to the latest message: 5 messages recorded as done without handling/);
    expect(await count("select pending::int as n from bucketq.groups where group_name = 'r.g'")).toBe(0);
    expect(await count("select pending::int as n from bucketq.groups where group_name = 'r.other'")).toBe(5); // other groups untouched
    expect(await count("select count(*)::int as n from bucketq.message_states where topic = 'r.t' and group_name = 'r.g' and state = 'done' and consumer_id is null")).toBe(5);
    await expect(ack(ctx.db.pool, 'r.g', leased)).rejects.toThrow(); // the lease is void

    const id = (await ok('send', 'r.t', '{"after": true}', '--key', 'k0')).trim();
    await ctx.db.pool.query('select * from bucketq.heartbeat($1, $2)', ['r.g', 'r1']);
    const next = await claim(ctx.db.pool, 'r.g', 'r1');
    expect(next.map((m) => String(m.msg_id))).toEqual([id]);
    expect(await fails(2, 'rewind', '--group', 'r.g', '--to', '1h', '--to-latest')).toMatch(/--to and --to-latest exclude each other/);
  });
});

describe('send from a file and stdin', () => {
  it('one message per line with keys and --not-before; a bad line sends nothing', async () => {
    await ok('topic', 'create', 's.t', '--buckets', '2');
    await ok('group', 'create', 's.g', '--topic', 's.t', '--start-at', 'earliest');
    const file = path.join(dir, 'orders.jsonl');
    writeFileSync(file, 'c-1|{"amount": 1}\n\nc-2|{"amount": 2}\nc-1|{"amount": 3}\n');
    expect(await ok('send', 's.t', '--file', file, '--key-separator', '|', '--headers', '{"source": "file"}')).toMatch(/sent 3 messages to s\.t: ids \d+ to \d+/);
    const rows = await ctx.db.pool.query("select key, key_seq::int, payload, headers from bucketq.messages where topic = 's.t' order by msg_id");
    expect(rows.rows).toEqual([
      { key: 'c-1', key_seq: 1, payload: { amount: 1 }, headers: { source: 'file' } },
      { key: 'c-2', key_seq: 1, payload: { amount: 2 }, headers: { source: 'file' } },
      { key: 'c-1', key_seq: 2, payload: { amount: 3 }, headers: { source: 'file' } },
    ]);

    const bad = path.join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"ok": 1}\n{"broken": \n{"ok": 3}\n');
    expect(await fails(2, 'send', 's.t', '--file', bad)).toMatch(/send: .*bad\.jsonl line 2 is not valid JSON/);
    expect(await fails(1, 'send', 's.t', '--file', path.join(dir, 'missing.jsonl'))).toMatch(/cannot read .*missing\.jsonl/);
    expect(await fails(2, 'send', 's.t')).toMatch(/send: missing JSON/);
    expect(await count("select count(*)::int as n from bucketq.messages where topic = 's.t'")).toBe(3);

    // stdin, in a real process: `-` and --not-before as a duration ahead.
    const r = await spawnCli(['send', 's.t', '-', '--not-before', '10m', '--key', 'later', '--database-url', ctx.db.connectionString], { input: '{"a": 1}\n{"a": 2}\n' });
    expect(r.err).toBe('');
    expect(r).toMatchObject({ code: 0, out: expect.stringMatching(/sent 2 messages to s\.t/) });
    const later = await ctx.db.pool.query<{ ahead: number }>(
      "select extract(epoch from not_before - now())::float8 as ahead from bucketq.messages where topic = 's.t' and key = 'later'",
    );
    expect(later.rows).toHaveLength(2);
    for (const l of later.rows) expect(l.ahead).toBeGreaterThan(500);
    expect(await count("select count(*)::int as n from bucketq.message_states where group_name = 's.g' and key = 'later' and state in ('delayed', 'waiting')")).toBe(2);
  }, 60_000);
});

describe('tail, peek and message', () => {
  it('stops quietly when its reader closes the pipe early (| head)', async () => {
    await ok('topic', 'create', 't.pipe', '--buckets', '2');
    await ctx.db.pool.query(`select count(*) from bucketq.send_batch('t.pipe', array(select jsonb_build_object('n', x, 'pad', repeat('x', 200)) from generate_series(1, 3000) x))`);
    // 3,000 lines of about 300 bytes: more than a pipe holds, so writes go on after head exits.
    const r = await new Promise<{ code: number | null; err: string; out: string }>((resolve) => {
      const child = spawn('bash', ['-c', 'set -o pipefail; "$NODE" --import tsx src/cli.ts tail t.pipe --last 3000 --limit 3000 --database-url "$URL" | head -1'], {
        cwd: ROOT,
        env: { ...process.env, NODE: process.execPath, URL: ctx.db.connectionString },
      });
      let err = '';
      let out = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (code) => resolve({ code, err, out }));
    });
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.err, 'no EPIPE stack trace').toBe('');
    expect(r.code).toBe(0);
  }, 60_000);

  it('tail prints the recent messages and then new ones as they arrive', async () => {
    await ok('topic', 'create', 't.t', '--buckets', '2');
    await ok('send', 't.t', '{"old": 1}');
    await ok('send', 't.t', '{"old": 2}', '--key', 'o');
    const recent = await ok('tail', 't.t', '--last', '2', '--limit', '2');
    expect(recent.split('\n')).toEqual([expect.stringMatching(/^\d+\s+\S+\s+bucket \d\s+no key\s+\{"old":1\}$/), expect.stringMatching(/key o #1\s+\{"old":2\}$/)]);

    // --last 1: its first line says it has taken its starting point.
    let started = false;
    const child = spawnCli(['tail', 't.t', '--last', '1', '--limit', '4', '--json', '--interval-ms', '50', '--database-url', ctx.db.connectionString], {
      onOutput: () => (started = true),
    });
    await waitFor('tail started', () => started, 30_000);
    // A producer's transaction takes an id, a later id commits first, then the first commits:
    // tail still prints it (it looks back over the last ids), after the later one.
    const producer = await ctx.session();
    await producer.query('begin');
    const early = (await producer.query<{ id: string }>(`select bucketq.send('t.t', '{"new": 1}'::jsonb, key => 'n1')::text as id`)).rows[0]!.id;
    const later = (await ok('send', 't.t', '{"new": 2}', '--key', 'n2')).trim();
    await sleep(500);
    await producer.query('commit');
    const last = (await ok('send', 't.t', '{"new": 3}', '--key', 'n3')).trim();
    expect(BigInt(early)).toBeLessThan(BigInt(later));
    const r = await child;
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as { msgId: string; payload: unknown; key: string });
    expect(lines.map((l) => l.payload)).toEqual([{ old: 2 }, { new: 2 }, { new: 1 }, { new: 3 }]);
    expect(lines.slice(1).map((l) => l.msgId)).toEqual([later, early, last]);
    expect(await fails(1, 'tail', 'no.such.topic', '--limit', '1')).toMatch(/unknown topic 'no\.such\.topic'/);
  }, 60_000);

  it('peek shows what the group gets next without claiming it; message shows one message in every group', async () => {
    await ok('topic', 'create', 'm.t', '--buckets', '1');
    await ok('group', 'create', 'm.g', '--topic', 'm.t', '--start-at', 'earliest');
    await ok('group', 'create', 'm.h', '--topic', 'm.t', '--start-at', 'earliest');
    const a1 = (await ok('send', 'm.t', '{"p": "a1"}', '--key', 'a')).trim();
    const a2 = (await ok('send', 'm.t', '{"p": "a2"}', '--key', 'a')).trim();
    const b1 = (await ok('send', 'm.t', '{"p": "b1"}', '--key', 'b')).trim();
    await ctx.db.pool.query('select * from bucketq.join($1, $2)', ['m.g', 'm1']);
    const first = await claim(ctx.db.pool, 'm.g', 'm1', 1);
    expect(String(first[0]!.msg_id)).toBe(a1);

    const peeked = JSON.parse(await ok('peek', '--group', 'm.g', '--json')) as { msgId: string; state: string; payload: unknown }[];
    expect(peeked.map((p) => [p.msgId, p.state])).toEqual([
      [a1, 'leased'],
      [a2, 'waiting'],
      [b1, 'ready'],
    ]);
    expect(peeked[2]!.payload).toEqual({ p: 'b1' });
    expect(await ok('peek', '--group', 'm.g', '--limit', '1')).toMatch(new RegExp(`^\\s*${a1}\\s+0\\s+a\\s+1\\s+leased\\s+\\S+\\s+1\\s+\\{"p":"a1"\\}\\s*$`, 'm'));
    // Nothing was claimed by peeking: once a1 is acked (a bucket has one batch in flight
    // at a time), a2 and b1 are still there to claim.
    await ack(ctx.db.pool, 'm.g', first);
    expect((await claim(ctx.db.pool, 'm.g', 'm1')).map((m) => String(m.msg_id))).toEqual([a2, b1]);

    const m = JSON.parse(await ok('message', a1, '--json')) as { key: string; payload: unknown; groups: { group: string; state: string; consumerId: string | null }[] };
    expect(m).toMatchObject({ key: 'a', payload: { p: 'a1' } });
    expect(m.groups).toEqual([expect.objectContaining({ group: 'm.g', state: 'done', consumerId: 'm1' }), expect.objectContaining({ group: 'm.h', state: 'ready' })]);
    const text = await ok('message', a2);
    expect(text).toMatch(new RegExp(`^message ${a2} on topic m\\.t, bucket 0, key a #2`));
    expect(text).toMatch(/payload \{"p":"a2"\}/);
    expect(text).toMatch(new RegExp(`^\\s*m\\.g\\s+leased\\s`, 'm'));
    expect(await fails(1, 'message', '999999999')).toMatch(/no message 999999999/);
    expect(await fails(2, 'message', 'abc')).toMatch(/the id must be a whole number/);
    expect(await ok('peek', '--group', 'm.h', '--limit', '2')).toMatch(/2 messages shown/);
  });
});

describe('dlq', () => {
  it('list shows payloads; delete removes records, keeps the ones that hold their key, needs --id or --all', async () => {
    await ok('topic', 'create', 'd.t', '--buckets', '1');
    await ok('group', 'create', 'd.skip', '--topic', 'd.t', '--start-at', 'earliest', '--max-attempts', '1');
    await ok('group', 'create', 'd.block', '--topic', 'd.t', '--start-at', 'earliest', '--max-attempts', '1', '--on-exhausted', 'block');
    const id = (await ok('send', 'd.t', '{"order": 77, "note": "poison"}', '--key', 'z')).trim();
    for (const g of ['d.skip', 'd.block']) {
      await ctx.db.pool.query('select * from bucketq.join($1, $2)', [g, `${g}-c`]);
      await nack(ctx.db.pool, g, await claim(ctx.db.pool, g, `${g}-c`), { error: 'declined' });
    }
    expect(await ok('dlq', 'list', '--group', 'd.skip')).toMatch(/declined\s+\{"note":"poison","order":77\}/);

    expect(await fails(2, 'dlq', 'delete', '--group', 'd.skip')).toMatch(/give --id ID \(repeatable\) or --all/);
    expect(await fails(1, 'dlq', 'delete', '--group', 'd.skip', '--id', '424242')).toMatch(/424242.*not dead letters of group d\.skip\nhint: list them with `bucketq dlq list --group G --all`/);
    expect(await ok('dlq', 'delete', '--group', 'd.skip', '--id', id)).toMatch(/deleted 1 dead-letter record of group d\.skip/);
    expect(await ok('dlq', 'list', '--group', 'd.skip', '--all')).toMatch(/no dead letters in group d\.skip/);

    expect(await fails(1, 'dlq', 'delete', '--group', 'd.block', '--id', id)).toMatch(/hold their key.*\nhint: replay them with `bucketq dlq replay --group G --id ID`/);
    expect(await ok('dlq', 'delete', '--group', 'd.block', '--all')).toMatch(/deleted 0 dead-letter records of group d\.block; kept 1 that hold their key: replay them with bucketq dlq replay --group d\.block/);
    await ok('dlq', 'replay', '--group', 'd.block');
    expect(await ok('dlq', 'delete', '--group', 'd.block', '--all')).toMatch(/deleted 1 dead-letter record of group d\.block$/);
    expect(await count("select count(*)::int as n from bucketq.messages where msg_id = $1", [id])).toBe(1); // the log keeps it
  });
});

describe('the database from PG* variables', () => {
  it('without DATABASE_URL the PG* variables work as for psql; with neither, the error says what to set', async () => {
    const u = new URL(ctx.db.connectionString);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DATABASE_URL;
    Object.assign(env, {
      PGHOST: u.hostname,
      PGPORT: u.port || '5432',
      PGUSER: decodeURIComponent(u.username),
      PGPASSWORD: decodeURIComponent(u.password),
      PGDATABASE: u.pathname.slice(1),
    });
    await ok('topic', 'create', 'env.t', '--buckets', '1');
    const r = await spawnCli(['topic', 'list'], { env });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\s*env\.t\s+1\s/m);
    const wrongDb = await spawnCli(['topic', 'list'], { env: { ...env, PGDATABASE: 'bucketq_no_such_db' } });
    expect(wrongDb.code).toBe(1);
    expect(wrongDb.err).toMatch(/bucketq_no_such_db/);

    const bare: NodeJS.ProcessEnv = { ...env };
    for (const k of Object.keys(bare)) if (k.startsWith('PG')) delete bare[k];
    const none = await spawnCli(['topic', 'list'], { env: bare });
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no database: pass --database-url URL, set DATABASE_URL, or set PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE/);
  }, 60_000);
});
