// Upgrade in place: a database installed by the last frozen release (test/fixtures/
// release-<version>/bundle.json, written by scripts/freeze-release.mjs), holding messages
// in every state in several groups, is migrated by this package's migrate() and then
// delivers each unfinished message exactly once, in key order, to real consumers.
//
// The setup drives the release's own SQL functions (join, claim, claim_locked, ack,
// nack); the delivery runs this package's TypeScript consumer. While the release is
// this tree (no migration since the freeze) the upgrade is a no-op; a new migration or
// function body makes it real without a change here.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { definitions as embeddedDefinitions, latestVersion } from '../src/generated/migrations.js';
import { type MigrationBundle, assertSchemaCurrent, migrate, readSchemaVersion } from '../src/migrate.js';
import type { Consumer } from '../src/worker/consumer.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

interface FrozenRelease extends MigrationBundle {
  release: string;
  commit: string;
  latestVersion: number;
}

/** The newest frozen release (by version number). */
function newestRelease(): FrozenRelease {
  const dir = fileURLToPath(new URL('./fixtures', import.meta.url));
  const versions = readdirSync(dir)
    .map((d) => /^release-(\d+)\.(\d+)\.(\d+)$/.exec(d))
    .filter((m) => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]) || Number(a[2]) - Number(b[2]) || Number(a[3]) - Number(b[3]));
  const newest = versions.at(-1);
  if (!newest) throw new Error(`no frozen release under ${dir}: run node scripts/freeze-release.mjs`);
  return JSON.parse(readFileSync(join(dir, newest[0], 'bundle.json'), 'utf8')) as FrozenRelease;
}

const release = newestRelease();
const TOPIC = 'upgrade.orders';
// Far enough ahead that nothing set up for "later" comes due before the upgrade; the
// consumers after it run this much later (bucketq.clock_offset on their sessions).
const LATER = '1 hour';
const AFTER_UPGRADE_CLOCK = '7200s';

interface GroupSpec {
  name: string;
  maxAttempts: number;
  onExhausted: 'skip' | 'block';
  /** Acks of the second round go through claim_locked (row locks) instead of leases. */
  locked: boolean;
}
// max_attempts 3 leaves room for one lost lease after the upgrade: a lease counts an
// attempt when claimed, and the second consumer's join voids some of the first's.
const GROUPS: GroupSpec[] = [
  { name: 'upgrade.skip', maxAttempts: 3, onExhausted: 'skip', locked: false },
  { name: 'upgrade.block', maxAttempts: 3, onExhausted: 'block', locked: false },
  { name: 'upgrade.locked', maxAttempts: 4, onExhausted: 'skip', locked: true },
];

// What each keyed message of a driven key goes through before the upgrade. Seq 1 is
// sent and handled in round A, seq 2 in round B; seq 3 and 4 are sent last, untouched.
//   acked:   1 acked, 2 acked, 3 ready, 4 waiting
//   retried: 1 failed once then acked on attempt 2, 2 acked, 3 ready, 4 waiting
//   leased:  1 acked, 2 leased (lease running), 3-4 waiting behind it
//   delayed: 1 nacked with a retry delay, 2-4 waiting behind it
//   dead:    1 fails max_attempts times: skip: 2 acked (the key moved on), 3 ready,
//            4 waiting; block: 2-4 waiting behind the dead letter
const SCENARIOS = ['acked', 'retried', 'leased', 'delayed', 'dead'] as const;
type Scenario = (typeof SCENARIOS)[number];
// Two keys per scenario per group by default. More make the races after the upgrade
// (two consumers per group splitting the buckets while the old rows drain) likelier:
// BUCKETQ_UPGRADE_KEYS=100 found the stale lease owner a locked ack trusted (sql/functions/_ack.sql).
const DRIVEN_KEYS = Array.from({ length: Number(process.env.BUCKETQ_UPGRADE_KEYS ?? 2 * SCENARIOS.length) }, (_, i) => `k${i}`);
// Each group gives each scenario to different keys.
const scenarioOf = (g: number, key: string): Scenario => SCENARIOS[(Number(key.slice(1)) + g) % SCENARIOS.length]!;

type State = 'done' | 'ready' | 'leased' | 'delayed' | 'waiting' | 'dead';
interface Sent {
  id: string;
  key: string | null;
  keySeq: number | null;
  /** Expected state per group index before the upgrade. */
  expected: State[];
}

function expectedState(g: number, key: string, seq: number): State {
  const s = scenarioOf(g, key);
  const skip = GROUPS[g]!.onExhausted === 'skip';
  const table: Record<Scenario, State[]> = {
    acked: ['done', 'done', 'ready', 'waiting'],
    retried: ['done', 'done', 'ready', 'waiting'],
    leased: ['done', 'leased', 'waiting', 'waiting'],
    delayed: ['delayed', 'waiting', 'waiting', 'waiting'],
    dead: skip ? ['dead', 'done', 'ready', 'waiting'] : ['dead', 'waiting', 'waiting', 'waiting'],
  };
  return table[s][seq - 1]!;
}

type Decision = 'ack' | 'lease' | 'delay' | 'fail';
interface Claimed {
  msg_id: string;
  key: string | null;
  key_seq: string | null;
  attempt: number;
  lease_token: string | null;
}

function decide(g: number, m: Claimed): Decision {
  if (m.key === null) return unkeyedDecision(g, m.msg_id);
  const seq = Number(m.key_seq);
  switch (scenarioOf(g, m.key)) {
    case 'acked':
      return 'ack';
    case 'retried':
      return seq === 1 && m.attempt === 1 ? 'fail' : 'ack';
    case 'leased':
      return seq === 1 ? 'ack' : 'lease';
    case 'delayed':
      return 'delay';
    case 'dead':
      return seq === 1 ? 'fail' : 'ack';
  }
}
// Round A's unkeyed messages: acked or left leased, alternating per group.
const unkeyedA: string[] = [];
const unkeyedDecision = (g: number, id: string): Decision => ((unkeyedA.indexOf(id) + g) % 2 === 0 ? 'ack' : 'lease');

let db: FreshDatabase;
let setup: pg.Client;
const sent: Sent[] = [];
const consumers: Consumer[] = [];
let bq: BucketQ | undefined;
let laterPool: pg.Pool | undefined;
let lockedAcks = 0;

beforeAll(async () => {
  db = await freshDatabase({ empty: true });
  setup = new pg.Client({ connectionString: db.connectionString });
  await setup.connect();
});
afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop({ timeoutMs: 1000 }).catch(() => {})));
  await bq?.close().catch(() => {});
  await laterPool?.end().catch(() => {});
  await setup?.end().catch(() => {});
  await db?.drop();
});

async function send(key: string | null, seq: number | null, notBefore?: string): Promise<string> {
  const { rows } = await setup.query<{ id: string }>(
    `select bucketq.send(topic => $1, payload => $2::jsonb, key => $3,
                         not_before => case when $4::interval is null then null else now() + $4::interval end)::text as id`,
    [TOPIC, JSON.stringify({ key, seq }), key, notBefore ?? null],
  );
  const id = rows[0]!.id;
  sent.push({ id, key, keySeq: key === null ? null : seq, expected: [] });
  return id;
}

/** Effects and the ack in one transaction, as a handler's would be. */
async function ackWithEffects(spec: GroupSpec, msgs: Claimed[], consumerId?: string): Promise<void> {
  if (msgs.length === 0) return;
  const own = consumerId === undefined;
  if (own) await setup.query('begin');
  await setup.query(
    `insert into upgrade_effect (phase, group_name, msg_id, key, key_seq, attempt)
     select 'before', $1, m.id, m.key, m.key_seq, m.attempt
       from unnest($2::bigint[], $3::text[], $4::bigint[], $5::int[]) as m(id, key, key_seq, attempt)`,
    [spec.name, msgs.map((m) => m.msg_id), msgs.map((m) => m.key), msgs.map((m) => m.key_seq), msgs.map((m) => m.attempt)],
  );
  await setup.query(
    `select * from bucketq.ack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[], consumer_id => $4)`,
    [spec.name, msgs.map((m) => m.msg_id), own ? msgs.map((m) => m.lease_token) : null, consumerId ?? null],
  );
  if (own) await setup.query('commit');
}

async function nack(spec: GroupSpec, msgs: Claimed[], retryDelay: string): Promise<void> {
  if (msgs.length === 0) return;
  await setup.query(
    `select * from bucketq.nack(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[],
                                errors => $4::text[], retry_delay => $5::interval)`,
    [spec.name, msgs.map((m) => m.msg_id), msgs.map((m) => m.lease_token), msgs.map(() => 'failed before the upgrade'), retryDelay],
  );
}

/**
 * One round for a group: everything ready is handled as decide() says, failures again
 * until their attempts run out, so nothing is left ready. A locked group first acks what
 * it may under claim_locked, in one transaction; the rest is leased as usual.
 */
async function drive(g: number): Promise<void> {
  const spec = GROUPS[g]!;
  const consumerId = `before.${g}`;
  const columns = 'msg_id::text, key, key_seq::text, attempt';
  if (spec.locked) {
    await setup.query('begin');
    const { rows } = await setup.query<Claimed>(
      `select ${columns}, null as lease_token from bucketq.claim_locked(group_name => $1, consumer_id => $2, max_messages => 1000)`,
      [spec.name, consumerId],
    );
    const acks = rows.filter((m) => decide(g, m) === 'ack');
    await ackWithEffects(spec, acks, consumerId);
    await setup.query('commit'); // the others are ready again at once
    lockedAcks += acks.length;
  }
  for (;;) {
    const { rows } = await setup.query<Claimed>(
      `select ${columns}, lease_token::text
         from bucketq.claim(group_name => $1, consumer_id => $2, max_messages => 1000, lease_timeout => $3::interval)`,
      [spec.name, consumerId, LATER],
    );
    if (rows.length === 0) return;
    await ackWithEffects(spec, rows.filter((m) => decide(g, m) === 'ack'));
    await nack(spec, rows.filter((m) => decide(g, m) === 'delay'), LATER);
    await nack(spec, rows.filter((m) => decide(g, m) === 'fail'), '0 seconds'); // due again at once
  }
}

async function statesBy(group: string): Promise<Map<string, string>> {
  const { rows } = await setup.query<{ msg_id: string; state: string }>(
    `select msg_id::text, state from bucketq.message_states where topic = $1 and group_name = $2`,
    [TOPIC, group],
  );
  return new Map(rows.map((r) => [r.msg_id, r.state]));
}

/** Everything not done, with the rows behind it, as text for a failure's log. */
async function leftOver(): Promise<string> {
  const dump = async (title: string, sql: string) => {
    const { rows } = await setup.query(sql);
    return `${title} (${rows.length}):\n${rows.map((r) => '  ' + JSON.stringify(r)).join('\n')}`;
  };
  return [
    await dump('message_states not done', `select group_name, msg_id, key, key_seq, bucket, state, consumer_id, epoch, waiting_behind, attempts, last_error
       from bucketq.message_states where state <> 'done' order by group_name, msg_id`),
    await dump('inbox', `select g.name, i.* from bucketq.inbox i join bucketq.consumer_group g using (group_id) order by g.name, i.msg_id`),
    await dump('dead_letters', `select group_name, msg_id, key, key_seq, status, attempts from bucketq.dead_letters order by group_name, msg_id`),
    await dump('buckets', `select * from bucketq.buckets where group_name like 'upgrade.%' order by group_name, bucket`),
    await dump('latest progress rows', `select distinct on (group_id, bucket) * from bucketq.progress order by group_id, bucket, seq desc`),
    await dump('consumers', `select * from bucketq.consumers order by group_name, consumer_id`),
  ].join('\n');
}

const count = <T>(xs: T[]) => xs.reduce<Record<string, number>>((acc, x) => ((acc[String(x)] = (acc[String(x)] ?? 0) + 1), acc), {});

describe(`upgrade from release ${release.release} (migrations 1..${release.latestVersion})`, () => {
  it('a database holding pending, leased, delayed, waiting and dead messages in three groups upgrades in place and delivers each exactly once, in key order', async () => {
    // --- 1. install the frozen release -------------------------------------------------
    await expect(migrate(db.pool, { bundle: release })).resolves.toEqual({ from: 0, to: release.latestVersion, definitions: 'applied' });
    const { rows: hash } = await setup.query<{ hash: string }>('select hash from bucketq.definitions');
    expect(hash[0]!.hash).toBe(release.definitions.hash);
    await setup.query(`create table upgrade_effect (
      id bigserial primary key, phase text not null, group_name text not null,
      msg_id bigint not null, key text, key_seq bigint, attempt int not null)`);

    // --- 2. drive messages into every state, through the release's functions ----------
    await setup.query(`select bucketq.create_topic(topic => $1, buckets => 4)`, [TOPIC]);
    for (const [g, spec] of GROUPS.entries()) {
      await setup.query(
        `select bucketq.create_group(group_name => $1, topic => $2, start_at => 'earliest', max_attempts => $3, on_exhausted => $4)`,
        [spec.name, TOPIC, spec.maxAttempts, spec.onExhausted],
      );
      await setup.query(`select * from bucketq.join($1, $2)`, [spec.name, `before.${g}`]);
    }
    // Round A: the first message of each driven key, and two unkeyed ones.
    for (const key of DRIVEN_KEYS) await send(key, 1);
    for (let i = 0; i < 2; i++) unkeyedA.push(await send(null, null));
    for (const g of GROUPS.keys()) await drive(g);
    // Round B: the second message of each driven key.
    for (const key of DRIVEN_KEYS) await send(key, 2);
    for (const g of GROUPS.keys()) await drive(g);
    // Round C, never claimed: the rest of the driven keys; fresh keys; a key whose first
    // message is not due yet (not_before); unkeyed messages.
    for (const key of DRIVEN_KEYS) {
      await send(key, 3);
      await send(key, 4);
    }
    for (const key of ['fresh0', 'fresh1']) for (const seq of [1, 2, 3]) await send(key, seq);
    await send('later', 1, LATER);
    await send('later', 2);
    for (let i = 0; i < 3; i++) await send(null, null);

    for (const m of sent) {
      m.expected = GROUPS.map((_, g) => {
        if (m.key === null) return unkeyedA.includes(m.id) ? (unkeyedDecision(g, m.id) === 'ack' ? 'done' : 'leased') : 'ready';
        if (m.key.startsWith('fresh')) return m.keySeq === 1 ? 'ready' : 'waiting';
        if (m.key === 'later') return m.keySeq === 1 ? 'delayed' : 'waiting';
        return expectedState(g, m.key, m.keySeq!);
      });
    }

    // --- 3. every state is there, in every group, as the public views tell -----------
    const before: Record<string, Record<string, number>> = {};
    const doneBefore = new Map<string, Set<string>>();
    for (const [g, spec] of GROUPS.entries()) {
      const states = await statesBy(spec.name);
      expect(Object.fromEntries(sent.map((m) => [m.id, states.get(m.id)])), spec.name).toEqual(
        Object.fromEntries(sent.map((m) => [m.id, m.expected[g]])),
      );
      before[spec.name] = count([...states.values()]);
      for (const s of ['done', 'ready', 'leased', 'delayed', 'waiting', 'dead']) expect(before[spec.name]![s], `${spec.name}: ${s}`).toBeGreaterThan(0);
      doneBefore.set(spec.name, new Set(sent.filter((m) => m.expected[g] === 'done').map((m) => m.id)));

      const { rows: effects } = await setup.query<{ msg_id: string }>(
        `select msg_id::text from upgrade_effect where group_name = $1`,
        [spec.name],
      );
      expect(effects.map((e) => e.msg_id).sort()).toEqual([...doneBefore.get(spec.name)!].sort());

      const { rows: dead } = await setup.query(`select key, key_seq::int, attempts, status from bucketq.dead_letters where group_name = $1 order by msg_id`, [spec.name]);
      const status = spec.onExhausted === 'skip' ? 'skipped' : 'blocking';
      expect(dead).toEqual(
        DRIVEN_KEYS.filter((k) => scenarioOf(g, k) === 'dead').map((key) => ({ key, key_seq: 1, attempts: spec.maxAttempts, status })),
      );
      const { rows: lag } = await setup.query(
        `select sum(ready)::int as ready, sum(leased)::int as leased, sum(delayed)::int as delayed, sum(waiting)::int as waiting,
                sum(dead_blocking)::int as dead_blocking, sum(expired_leases)::int as expired_leases
           from bucketq.lag where group_name = $1`,
        [spec.name],
      );
      const b = before[spec.name]!;
      expect(lag[0]).toEqual({
        ready: b.ready,
        leased: b.leased,
        delayed: b.delayed,
        waiting: b.waiting,
        dead_blocking: spec.onExhausted === 'block' ? b.dead : 0,
        expired_leases: 0, // the leases are still running
      });
    }
    expect(lockedAcks, 'acks under claim_locked').toBeGreaterThan(0);
    console.log(`upgrade test: ${sent.length} messages; states before the upgrade per group:`, JSON.stringify(before));

    // --- 4. upgrade in place, the way `bucketq migrate` does ---------------------------
    laterPool = new pg.Pool({ connectionString: db.connectionString, max: 12, options: `-c bucketq.clock_offset=${AFTER_UPGRADE_CLOCK}` });
    laterPool.on('error', () => {});
    bq = new BucketQ({ pool: laterPool });
    const upgraded = await bq.migrate();
    expect(upgraded).toEqual({
      from: release.latestVersion,
      to: latestVersion,
      definitions: release.definitions.hash === embeddedDefinitions.hash ? 'current' : 'applied',
    });
    await assertSchemaCurrent(db.pool);
    expect(await readSchemaVersion(db.pool)).toBe(latestVersion);
    // The log's partitions made before the upgrade are no longer vacuumed for inserts (33)
    const { rows: vacuumOptions } = await setup.query<{ rel: string; options: string[] | null }>(
      `select p.message_rel as rel, r.reloptions as options from bucketq.log_partition p
         join pg_class r on r.oid = ('bucketq.' || quote_ident(p.message_rel))::regclass`,
    );
    expect(vacuumOptions.length).toBeGreaterThan(0);
    for (const r of vacuumOptions) expect(r.options, r.rel).toContain('autovacuum_vacuum_insert_threshold=-1');
    const sentBefore = sent.length;

    // --- 5. the new release sends too: every old key goes on behind its old messages, a
    // new key, unkeyed messages (new storage behind old, in one key)
    for (const key of [...DRIVEN_KEYS, 'fresh0', 'fresh1', 'later']) {
      const last = Math.max(...sent.filter((m) => m.key === key).map((m) => m.keySeq!));
      await send(key, last + 1);
    }
    for (const seq of [1, 2]) await send('new', seq);
    for (let i = 0; i < 2; i++) await send(null, null);
    const { rows: keySeqs } = await setup.query<{ id: string; key_seq: number | null }>(
      `select msg_id::text as id, key_seq::int from bucketq.messages where msg_id = any($1::bigint[])`,
      [sent.slice(sentBefore).map((m) => m.id)],
    );
    expect(Object.fromEntries(keySeqs.map((r) => [r.id, r.key_seq]))).toEqual(Object.fromEntries(sent.slice(sentBefore).map((m) => [m.id, m.keySeq])));

    // --- 6. deliver everything: the clock past leases and delays, dead letters replayed
    const replayed = await laterPool.query<{ n: number }>(
      `select ${GROUPS.map((_, i) => `bucketq.replay_dead($${i + 1})`).join(' + ')} as n`,
      GROUPS.map((s) => s.name),
    );
    const deadKeys = (g: number) => DRIVEN_KEYS.filter((k) => scenarioOf(g, k) === 'dead');
    expect(replayed.rows[0]!.n).toBe(GROUPS.reduce((n, _, g) => n + deadKeys(g).length, 0));

    const expectedAfter = new Map(GROUPS.map((s) => [s.name, sent.filter((m) => !doneBefore.get(s.name)!.has(m.id))]));
    // The consumers' warnings and errors, kept to be shown and checked below.
    const logged: { level: number; msg: string; group?: string; err?: { message?: string } }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    // Two consumers per group, sharing its buckets: batches with a savepoint per message,
    // and concurrent transactions of one message each.
    const modes = [
      { transaction: 'batch', batchSize: 8 },
      { transaction: 'message', batchSize: 4, concurrency: 4 },
    ] as const;
    for (const spec of GROUPS) {
      for (const [i, mode] of modes.entries()) {
        consumers.push(
          await bq.consume(
            {
              ...mode,
              group: spec.name,
              consumerId: `after.${spec.name}.${i}`,
              pollIntervalMs: 100,
              maintenanceIntervalMs: 0,
              handler: async (message, ctx) => {
                await ctx.client.query(
                  `insert into upgrade_effect (phase, group_name, msg_id, key, key_seq, attempt) values ('after', $1, $2, $3, $4, $5)`,
                  [spec.name, message.msgId, message.key, message.keySeq, ctx.attempt],
                );
              },
            },
            logger,
          ),
        );
      }
    }
    const total = [...expectedAfter.values()].reduce((n, ms) => n + ms.length, 0);
    // Until every message is done in every group (or time is up: the checks below then
    // name what is missing).
    await waitFor(`${total} deliveries after the upgrade`, async () => {
      const { rows } = await setup.query<{ n: number }>(`select count(*)::int as n from upgrade_effect where phase = 'after'`);
      const { rows: open } = await setup.query<{ n: number }>(`select count(*)::int as n from bucketq.message_states where state <> 'done'`);
      return rows[0]!.n >= total && open[0]!.n === 0;
    }, 15_000 + 300 * DRIVEN_KEYS.length).catch(async (err: Error) => {
      // Say what is left, in the public views and the tables under them, before the
      // checks below fail on it: a stall after the upgrade is otherwise hard to read.
      console.error(`upgrade test: ${err.message}\n${await leftOver()}`);
    });
    await Promise.all(consumers.splice(0).map((c) => c.stop({ timeoutMs: 5000 })));
    // Nothing went wrong on the way: no refused ack, no dead letter, no failed
    // transaction (a refused batch is handled again, and only its attempts would show it).
    const errors = logged.filter((l) => l.level >= 50).map((l) => `${l.group}: ${l.msg}: ${l.err?.message ?? ''}`);
    expect(errors, `the consumers' errors (warnings: ${logged.filter((l) => l.level < 50).length})`).toEqual([]);

    // --- 7. exactly once, in key order --------------------------------------------------
    for (const [g, spec] of GROUPS.entries()) {
      const { rows: effects } = await setup.query<{ id: string; phase: string; msg_id: string; key: string | null; key_seq: string | null; attempt: number }>(
        `select id::text, phase, msg_id::text, key, key_seq::text, attempt from upgrade_effect e where group_name = $1 order by e.id`,
        [spec.name],
      );
      const after = effects.filter((e) => e.phase === 'after');
      // every message not acked before the upgrade, once; none acked before, again
      expect(after.map((e) => e.msg_id).sort(), spec.name).toEqual(expectedAfter.get(spec.name)!.map((m) => m.id).sort());
      expect(new Set(effects.map((e) => e.msg_id)).size, `${spec.name}: no message twice`).toBe(effects.length);
      // attempts carried across: the lease lost or the nack before the upgrade counted
      // one (a lease the two consumers' rebalance voided may count one more)
      const carried = (m: Sent) => m.expected[g] === 'leased' || (m.expected[g] === 'delayed' && m.key !== 'later');
      const attempts = new Map(after.map((e) => [e.msg_id, e.attempt]));
      const tooFew = expectedAfter.get(spec.name)!.filter((m) => attempts.get(m.id)! < (carried(m) ? 2 : 1));
      expect(tooFew.map((m) => `${m.id} (${m.key}#${m.keySeq}): attempt ${attempts.get(m.id)}`), `${spec.name}: attempts`).toEqual([]);
      expect(expectedAfter.get(spec.name)!.filter(carried).length).toBeGreaterThan(0);

      // per key, in key_seq order: after the upgrade, and across it (but a skip group's
      // replayed dead letter comes back after the later messages its key moved on to)
      const replayedSkip = new Set(
        spec.onExhausted === 'skip' ? sent.filter((m) => m.expected[g] === 'dead').map((m) => m.id) : [],
      );
      for (const key of new Set(sent.map((m) => m.key).filter((k) => k !== null))) {
        const seqs = (rows: typeof effects) => rows.filter((e) => e.key === key).map((e) => Number(e.key_seq));
        const ascending = (xs: number[]) => xs.every((x, i) => i === 0 || xs[i - 1]! < x);
        expect(ascending(seqs(after)), `${spec.name} key ${key} after the upgrade: ${seqs(after)}`).toBe(true);
        const all = seqs(effects.filter((e) => !replayedSkip.has(e.msg_id)));
        expect(all, `${spec.name} key ${key}: ${all}`).toEqual(sent.filter((m) => m.key === key && !replayedSkip.has(m.id)).map((m) => m.keySeq));
      }
      const states = await statesBy(spec.name);
      expect(count([...states.values()]), spec.name).toEqual({ done: sent.length });
      const { rows: dead } = await setup.query(`select status from bucketq.dead_letters where group_name = $1`, [spec.name]);
      expect(dead.map((d) => d.status)).toEqual(deadKeys(g).map(() => 'replayed'));
    }
  });
});
