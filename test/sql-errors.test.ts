// Bad input for every public SQL function: the right SQLSTATE, a HINT, and no change to
// any bucketq table (DESIGN guarantee 7). Plus: every public function and view is documented.
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { claim, expectBqError, send, stateFingerprint, useDatabase, type Claimed } from './helpers/sql.js';

const ctx = useDatabase();

const T = 'err.topic';
const SMALL = 'err.small';
const G = 'err.group';
const BLOCK = 'err.block';
let s: pg.Client;
let leased: Claimed;

beforeAll(async () => {
  s = await ctx.session();
  await s.query(`select bucketq.create_topic($1, 16)`, [T]);
  await s.query(`select bucketq.create_topic($1, 4, max_payload_bytes => 64)`, [SMALL]);
  await s.query(`select bucketq.create_group($1, $2, 'earliest')`, [G, T]);
  await s.query(`select bucketq.create_group($1, $2, 'earliest', on_exhausted => 'block')`, [BLOCK, T]);
  await s.query(`select * from bucketq.join($1, 'c1')`, [G]);
  await send(s, T, { n: 1 }, { key: 'k' });
  await send(s, T, { n: 2 }, { key: 'k' });
  const got = await claim(s, G, 'c1', 1);
  expect(got).toHaveLength(1);
  leased = got[0]!;
});

type Case = [label: string, sql: string, params: unknown[], code: string, message?: RegExp];

const long = (n: number) => 'x'.repeat(n);

const cases: Record<string, Case[]> = {
  create_topic: [
    ['name with a space', `select bucketq.create_topic('bad name')`, [], 'BQ001', /invalid topic name/],
    ['empty name', `select bucketq.create_topic('')`, [], 'BQ001'],
    ['NULL name', `select bucketq.create_topic(null)`, [], 'BQ001'],
    ['name starting with a dash', `select bucketq.create_topic('-t')`, [], 'BQ001'],
    ['name of 101 characters', `select bucketq.create_topic($1)`, [long(101)], 'BQ001'],
    ['0 buckets', `select bucketq.create_topic('t.new', 0)`, [], 'BQ005', /buckets/],
    ['4097 buckets', `select bucketq.create_topic('t.new', 4097)`, [], 'BQ005'],
    ['NULL buckets', `select bucketq.create_topic('t.new', null)`, [], 'BQ005'],
    ['partition_interval under a minute', `select bucketq.create_topic('t.new', partition_interval => '30 seconds')`, [], 'BQ005', /partition_interval/],
    ['partition_interval in months', `select bucketq.create_topic('t.new', partition_interval => '1 month', retention => '1 year')`, [], 'BQ005'],
    ['NULL partition_interval', `select bucketq.create_topic('t.new', partition_interval => null)`, [], 'BQ005'],
    ['retention below the partition interval', `select bucketq.create_topic('t.new', retention => '1 hour', partition_interval => '1 day')`, [], 'BQ005', /retention/],
    ['NULL retention', `select bucketq.create_topic('t.new', retention => null)`, [], 'BQ005'],
    ['max_payload_bytes 15', `select bucketq.create_topic('t.new', max_payload_bytes => 15)`, [], 'BQ005', /max_payload_bytes/],
    ['max_payload_bytes over 100 MiB', `select bucketq.create_topic('t.new', max_payload_bytes => 104857601)`, [], 'BQ005'],
    ['existing topic, other settings', `select bucketq.create_topic($1, 8)`, [T], 'BQ007'],
  ],
  create_group: [
    ['invalid group name', `select bucketq.create_group('g!', $1)`, [T], 'BQ001', /invalid group name/],
    ['NULL group name', `select bucketq.create_group(null, $1)`, [T], 'BQ001'],
    ['unknown topic', `select bucketq.create_group('g.new', 'no.such.topic')`, [], 'BQ002', /unknown topic/],
    ['NULL topic', `select bucketq.create_group('g.new', null)`, [], 'BQ002'],
    ['start_at not a timestamp', `select bucketq.create_group('g.new', $1, 'first')`, [T], 'BQ005', /start_at/],
    ['max_attempts 0', `select bucketq.create_group('g.new', $1, max_attempts => 0)`, [T], 'BQ005', /max_attempts/],
    ['max_attempts 1001', `select bucketq.create_group('g.new', $1, max_attempts => 1001)`, [T], 'BQ005'],
    ['NULL max_attempts', `select bucketq.create_group('g.new', $1, max_attempts => null)`, [T], 'BQ005'],
    ['on_exhausted unknown', `select bucketq.create_group('g.new', $1, on_exhausted => 'drop')`, [T], 'BQ005', /on_exhausted/],
    ['negative backoff_base', `select bucketq.create_group('g.new', $1, backoff_base => '-1 second')`, [T], 'BQ005', /backoff/],
    ['backoff_max below base', `select bucketq.create_group('g.new', $1, backoff_base => '10 seconds', backoff_max => '1 second')`, [T], 'BQ005'],
    ['zero lease_timeout', `select bucketq.create_group('g.new', $1, lease_timeout => '0')`, [T], 'BQ005', /lease_timeout/],
    ['lease_timeout over a day', `select bucketq.create_group('g.new', $1, lease_timeout => '25 hours')`, [T], 'BQ005'],
    ['session_timeout too short', `select bucketq.create_group('g.new', $1, session_timeout => '10 milliseconds')`, [T], 'BQ005', /session_timeout/],
    ['session_timeout too long', `select bucketq.create_group('g.new', $1, session_timeout => '2 hours')`, [T], 'BQ005'],
    ['existing group, other settings', `select bucketq.create_group($1, $2, 'latest')`, [G, T], 'BQ007'],
  ],
  send: [
    ['unknown topic', `select bucketq.send('no.such.topic', '{}')`, [], 'BQ002', /unknown topic/],
    ['NULL payload', `select bucketq.send($1, null)`, [T], 'BQ005'],
    ['JSON null payload', `select bucketq.send($1, 'null')`, [T], 'BQ005'],
    ['payload over the limit', `select bucketq.send($1, $2::jsonb)`, [SMALL, JSON.stringify({ x: long(100) })], 'BQ004', /over the limit/],
    ['empty key', `select bucketq.send($1, '{}', key => '')`, [T], 'BQ005', /key/],
    ['key over 1024 characters', `select bucketq.send($1, '{}', key => $2)`, [T, long(1025)], 'BQ005'],
    ['empty idempotency key', `select bucketq.send($1, '{}', idempotency_key => '')`, [T], 'BQ005', /idempotency/],
    ['headers not an object', `select bucketq.send($1, '{}', headers => '[1]')`, [T], 'BQ005', /headers/],
    ['headers and payload together over the limit', `select bucketq.send($1, '{"a":1}', headers => $2::jsonb)`, [SMALL, JSON.stringify({ h: long(60) })], 'BQ004', /headers 1 of 1 are \d+ bytes/],
    ['key over 2048 bytes', `select bucketq.send($1, '{}', key => $2)`, [T, '\u{1F600}'.repeat(600)], 'BQ005', /key 1 of 1 .* \(2400 bytes/],
    ['idempotency key over 1024 characters', `select bucketq.send($1, '{}', idempotency_key => $2)`, [T, long(1025)], 'BQ005', /idempotency key 1 of 1/],
    ['not_before infinity', `select bucketq.send($1, '{}', not_before => 'infinity')`, [T], 'BQ005', /not_before 1 of 1 is not a finite time/],
  ],
  send_batch: [
    ['unknown topic', `select bucketq.send_batch('no.such.topic', array['{}']::jsonb[])`, [], 'BQ002'],
    ['NULL payloads', `select bucketq.send_batch($1, null)`, [T], 'BQ005', /payloads/],
    ['keys of another length', `select bucketq.send_batch($1, array['{}', '{}']::jsonb[], keys => array['a'])`, [T], 'BQ005', /differ in length/],
    ['idempotency keys of another length', `select bucketq.send_batch($1, array['{}']::jsonb[], idempotency_keys => array['a', 'b'])`, [T], 'BQ005'],
    ['not_before of another length', `select bucketq.send_batch($1, array['{}']::jsonb[], not_before => array[now(), now()])`, [T], 'BQ005'],
    ['a NULL element', `select bucketq.send_batch($1, array['{}', null]::jsonb[])`, [T], 'BQ005', /payload 2 of 2/],
    ['one payload over the limit', `select bucketq.send_batch($1, array['{}', $2]::jsonb[])`, [SMALL, JSON.stringify({ x: long(100) })], 'BQ004', /payload 2 of 2/],
    ['an empty key', `select bucketq.send_batch($1, array['{}', '{}']::jsonb[], keys => array['a', ''])`, [T], 'BQ005', /key 2 of 2/],
    ['an idempotency key over 2048 bytes', `select bucketq.send_batch($1, array['{}', '{}']::jsonb[], idempotency_keys => array['a', $2])`, [T, '\u{1F600}'.repeat(600)], 'BQ005', /idempotency key 2 of 2 .* \(2400 bytes/],
    ['not_before infinity', `select bucketq.send_batch($1, array['{}', '{}']::jsonb[], not_before => array[now(), 'infinity'])`, [T], 'BQ005', /not_before 2 of 2/],
    ['headers and payload together over the limit', `select bucketq.send_batch($1, array['{}', '{"a":1}']::jsonb[], headers => array[null, $2::jsonb])`, [SMALL, JSON.stringify({ h: long(60) })], 'BQ004', /headers 2 of 2 are/],
    // A batch of one takes send's path: its elements by position, whatever the arrays' lower bounds.
    ['a batch of one whose payload (array from 0) is JSON null', `select bucketq.send_batch($1, '[0:0]={null}'::jsonb[])`, [T], 'BQ005', /payload 1 of 1 is null/],
    ['a batch of one whose key (array from 2) is empty', `select bucketq.send_batch($1, array['{}']::jsonb[], keys => '[2:2]={""}'::text[])`, [T], 'BQ005', /key 1 of 1 is empty/],
    ['a batch of one whose headers (array from 5) are not an object', `select bucketq.send_batch($1, array['{}']::jsonb[], headers => '[5:5]={"[1]"}'::jsonb[])`, [T], 'BQ005', /headers 1 of 1 is not a JSON object/],
    ['a batch of one whose not_before (array from 0) is infinity', `select bucketq.send_batch($1, array['{}']::jsonb[], not_before => '[0:0]={infinity}'::timestamptz[])`, [T], 'BQ005', /not_before 1 of 1/],
  ],
  join: [
    ['unknown group', `select * from bucketq.join('no.such.group', 'c')`, [], 'BQ003', /unknown consumer group/],
    ['NULL group', `select * from bucketq.join(null, 'c')`, [], 'BQ003'],
    ['empty consumer_id', `select * from bucketq.join($1, '')`, [G], 'BQ005', /consumer_id/],
    ['NULL consumer_id', `select * from bucketq.join($1, null)`, [G], 'BQ005'],
    ['consumer_id over 200 characters', `select * from bucketq.join($1, $2)`, [G, long(201)], 'BQ005'],
  ],
  heartbeat: [
    ['unknown group', `select * from bucketq.heartbeat('no.such.group', 'c1')`, [], 'BQ003'],
    ['not a member', `select * from bucketq.heartbeat($1, 'stranger')`, [G], 'BQ008', /not a member/],
    ['empty consumer_id', `select * from bucketq.heartbeat($1, '')`, [G], 'BQ005'],
  ],
  leave: [
    ['unknown group', `select bucketq.leave('no.such.group', 'c1')`, [], 'BQ003'],
    ['NULL consumer_id', `select bucketq.leave($1, null)`, [G], 'BQ005'],
  ],
  claim: [
    ['unknown group', `select * from bucketq.claim('no.such.group', 'c1', 10)`, [], 'BQ003'],
    ['empty consumer_id', `select * from bucketq.claim($1, '', 10)`, [G], 'BQ005'],
    ['not a member', `select * from bucketq.claim($1, 'stranger', 10)`, [G], 'BQ008', /not a live member/],
    ['max_messages 0', `select * from bucketq.claim($1, 'c1', 0)`, [G], 'BQ005', /max_messages/],
    ['max_messages 10001', `select * from bucketq.claim($1, 'c1', 10001)`, [G], 'BQ005'],
    ['NULL max_messages', `select * from bucketq.claim($1, 'c1', null)`, [G], 'BQ005'],
    ['bucket out of range', `select * from bucketq.claim($1, 'c1', 10, buckets => array[16])`, [G], 'BQ005', /out of range/],
    ['negative bucket', `select * from bucketq.claim($1, 'c1', 10, buckets => array[-1])`, [G], 'BQ005'],
    ['NULL bucket', `select * from bucketq.claim($1, 'c1', 10, buckets => array[null]::int[])`, [G], 'BQ005'],
    ['zero lease_timeout', `select * from bucketq.claim($1, 'c1', 10, lease_timeout => '0')`, [G], 'BQ005', /lease_timeout/],
    ['lease_timeout over a day', `select * from bucketq.claim($1, 'c1', 10, lease_timeout => '2 days')`, [G], 'BQ005'],
  ],
  ack: [
    ['unknown group', `select * from bucketq.ack('no.such.group', array[1]::bigint[], array[1]::bigint[])`, [], 'BQ003'],
    ['arrays of different lengths', `select * from bucketq.ack($1, array[1, 2]::bigint[], array[1]::bigint[])`, [G], 'BQ005', /same length/],
    ['NULL msg_ids', `select * from bucketq.ack($1, null, array[1]::bigint[])`, [G], 'BQ005'],
    ['NULL element', `select * from bucketq.ack($1, array[null]::bigint[], array[1]::bigint[])`, [G], 'BQ005', /NULL/],
    ['wrong lease token', `select * from bucketq.ack($1, array[$2]::bigint[], array[-1]::bigint[])`, [G, 'LEASED'], 'BQ006'],
    // An error lists 10 ids at most, then how many (it echoed all 3,000: 20 KB).
    ['3,000 unknown leases', `select * from bucketq.ack($1, array(select generate_series(1000000, 1002999))::bigint[], array_fill(-1::bigint, array[3000]))`, [G], 'BQ006',
      /^ack: 3000 of 3000 messages are not leased with these tokens in group err\.group \(msg_ids \{1000000,1000001,1000002,1000003,1000004,1000005,1000006,1000007,1000008,1000009,…\} \(3000 in all\)\)$/],
  ],
  nack: [
    ['unknown group', `select * from bucketq.nack('no.such.group', array[1]::bigint[], array[1]::bigint[])`, [], 'BQ003'],
    ['arrays of different lengths', `select * from bucketq.nack($1, array[1]::bigint[], array[]::bigint[])`, [G], 'BQ005'],
    ['errors of another length', `select * from bucketq.nack($1, array[$2]::bigint[], array[$3]::bigint[], array['a', 'b'])`, [G, 'LEASED', 'TOKEN'], 'BQ005', /errors/],
    ['negative retry_delay', `select * from bucketq.nack($1, array[$2]::bigint[], array[$3]::bigint[], retry_delay => '-1 second')`, [G, 'LEASED', 'TOKEN'], 'BQ005', /retry_delay/],
    ['wrong lease token', `select * from bucketq.nack($1, array[$2]::bigint[], array[-1]::bigint[])`, [G, 'LEASED'], 'BQ006'],
    ['3,000 unknown leases', `select * from bucketq.nack($1, array(select generate_series(1000000, 1002999))::bigint[], array_fill(-1::bigint, array[3000]))`, [G], 'BQ006',
      /^nack: 3000 of 3000 messages .* \(msg_ids \{1000000,1000001,1000002,1000003,1000004,1000005,1000006,1000007,1000008,1000009,…\} \(3000 in all\)\)$/],
  ],
  replay_dead: [
    ['unknown group', `select bucketq.replay_dead('no.such.group')`, [], 'BQ003'],
    ['ids that are not dead letters', `select bucketq.replay_dead($1, array[$2, 987654321]::bigint[])`, [BLOCK, 'LEASED'], 'BQ005', /not dead letters/],
    ['3,000 ids that are not dead letters', `select bucketq.replay_dead($1, array(select generate_series(1000000, 1002999))::bigint[])`, [BLOCK], 'BQ005',
      /^replay_dead: messages \{1000000,1000001,1000002,1000003,1000004,1000005,1000006,1000007,1000008,1000009,…\} \(3000 in all\) are not dead letters of group err\.block \(or were replayed already\)$/],
  ],
  delete_dead: [
    ['3,000 ids that are not dead letters', `select bucketq.delete_dead($1, array(select generate_series(1000000, 1002999))::bigint[])`, [BLOCK], 'BQ005',
      /^delete_dead: messages \{1000000,1000001,1000002,1000003,1000004,1000005,1000006,1000007,1000008,1000009,…\} \(3000 in all\) are not dead letters of group err\.block$/],
  ],
  rewind: [
    ['unknown group', `select bucketq.rewind('no.such.group', now())`, [], 'BQ003'],
    ['NULL time', `select bucketq.rewind($1, null)`, [G], 'BQ005', /to_time/],
  ],
  grant_group: [
    ['unknown group', `select bucketq.grant_group('no.such.group', 'postgres')`, [], 'BQ003'],
    ['a role that does not exist', `select bucketq.grant_group($1, 'no_such_role_bq')`, [G], 'BQ005', /does not exist/],
  ],
};

describe.each(Object.entries(cases))('%s: bad input raises a coded error with a hint and changes nothing', (_fn, list) => {
  it.each(list)('%s', async (_label, sql, params, code, message) => {
    const bound = params.map((p) => (p === 'LEASED' ? leased.msg_id : p === 'TOKEN' ? leased.lease_token : p));
    const before = await stateFingerprint(s);
    await expectBqError(s.query(sql, bound), code, message);
    expect(await stateFingerprint(s)).toEqual(before);
  });
});

describe('the setup still works after all that', () => {
  it('the leased message acks, and the key moves on', async () => {
    const { rows } = await s.query(`select status from bucketq.ack($1, array[$2]::bigint[], array[$3]::bigint[])`, [G, leased.msg_id, leased.lease_token]);
    expect(rows).toEqual([{ status: 'acked' }]);
    expect((await claim(s, G, 'c1', 10)).map((m) => m.key_seq)).toEqual([2]);
  });
});

describe('documentation', () => {
  const publicFunctions = ['ack', 'claim', 'create_group', 'create_topic', 'grant_group', 'heartbeat', 'join', 'leave', 'maintain', 'nack', 'replay_dead', 'revoke_group', 'rewind', 'send', 'send_batch'];
  const views = ['buckets', 'consumers', 'dead_letters', 'groups', 'lag', 'table_sizes', 'throughput', 'topics', 'vacuum_horizon'];

  it('every public function (name not starting with _) has a COMMENT', async () => {
    const { rows } = await s.query(`
      select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' as fn, p.proname as name,
             coalesce(obj_description(p.oid, 'pg_proc'), '') as doc
        from pg_proc p
       where p.pronamespace = 'bucketq'::regnamespace and p.proname !~ '^_'
       order by 1`);
    expect([...new Set(rows.map((r) => r.name))].sort()).toEqual(expect.arrayContaining(publicFunctions));
    expect(rows.filter((r) => r.doc.trim().length < 40).map((r) => r.fn)).toEqual([]);
  });

  it('every view has a COMMENT', async () => {
    const { rows } = await s.query(`
      select c.relname as name, coalesce(obj_description(c.oid, 'pg_class'), '') as doc
        from pg_class c where c.relnamespace = 'bucketq'::regnamespace and c.relkind = 'v' order by 1`);
    expect(rows.map((r) => r.name)).toEqual(expect.arrayContaining(views));
    expect(rows.filter((r) => r.doc.trim().length < 40).map((r) => r.name)).toEqual([]);
  });
});
