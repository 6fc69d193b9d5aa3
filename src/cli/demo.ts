// `bucketq demo`: the whole path on a real Postgres in one command. Sends keyed
// messages, drains them with claim/ack, and checks what bucketq promises: per-key
// order with no gaps and every message acked exactly once.
import { randomBytes } from 'node:crypto';
import { BucketQ } from '../client.js';
import { ConflictError } from '../errors.js';
import type { ClaimedMessage } from '../queries/consume.js';
import { resolveDatabase } from './database.js';

const MESSAGES = 1_000;
const KEYS = 100;
const BUCKETS = 16;
const CLAIM_MAX = 100;
const CONSUMER = 'demo-worker-1';
/** Well within the default 10 s session timeout. */
const HEARTBEAT_MS = 2_000;

interface Sent {
  id: string;
  key: string;
  orderId: number;
}

export async function demoCommand(opts: { databaseUrl?: string | undefined }): Promise<number> {
  const out = (line = '') => console.log(line);
  out('bucketq demo');
  const db = await resolveDatabase(opts.databaseUrl, { allowEmbedded: true });
  out(`  database  ${db.description}`);
  const client = new BucketQ({ connectionString: db.connectionString });
  try {
    const { from, to } = await client.migrate();
    out(`  schema    ${from === to ? `already at version ${to}` : `migrated from version ${from} to ${to}`}`);

    const { topic, group } = await createTopicAndGroup(client, out);
    const sent = await sendAll(client, topic, out);
    const drained = await drain(client, group, out);
    const backlog = await client.backlog(group);
    const failures = verify(sent, drained);
    const left = backlog.ready + backlog.leased + backlog.delayed + backlog.waiting + backlog.deadBlocking;
    if (left > 0) failures.push(`bucketq.lag still shows ${left} unfinished messages for ${group}: ${JSON.stringify(backlog)}`);

    out();
    out('  checks');
    out(`    per-key order   ${KEYS} keys, key_seq delivered as 1, 2, ..., ${MESSAGES / KEYS} for each, in send order`);
    out(`    exactly once    ${n(sent.length)} sent, ${n(drained.ackedOnce.size)} acked once, ${drained.duplicateAcks} acked twice, ${n(sent.length - drained.ackedOnce.size)} never acked`);
    out(`    redeliveries    ${drained.redeliveries} (attempt > 1)`);
    out(`    backlog         ${left} unfinished in bucketq.lag for ${group}`);
    out();
    if (failures.length > 0) {
      out(`FAILED (${failures.length} problem${failures.length > 1 ? 's' : ''}):`);
      for (const f of failures.slice(0, 20)) out(`  - ${f}`);
      if (failures.length > 20) out(`  ... and ${failures.length - 20} more`);
      return 1;
    }
    out(`VERIFIED: ${n(sent.length)} messages over ${KEYS} keys delivered in per-key order, each acked exactly once.`);
    return 0;
  } finally {
    await client.close();
    await db.release();
  }
}

/** Creates demo.orders and billing; on a shared database that already has them, suffixed names keep runs apart. */
async function createTopicAndGroup(client: BucketQ, out: (s?: string) => void): Promise<{ topic: string; group: string }> {
  const suffix = randomBytes(3).toString('hex');
  let topic = 'demo.orders';
  if (!(await client.createTopic(topic, { buckets: BUCKETS }).catch(existedElsewhere))) {
    out(`  note      topic ${topic} already exists in this database; using ${topic}.${suffix} so earlier runs do not mix in`);
    topic = `${topic}.${suffix}`;
    await client.createTopic(topic, { buckets: BUCKETS });
  }
  out(`  topic     ${topic} created with ${BUCKETS} buckets`);

  let group = 'billing';
  if (!(await client.createGroup(group, topic, { startAt: 'earliest' }).catch(existedElsewhere))) {
    out(`  note      group ${group} already exists in this database; using ${group}.${suffix}`);
    group = `${group}.${suffix}`;
    await client.createGroup(group, topic, { startAt: 'earliest' });
  }
  out(`  group     ${group} created on ${topic}, starting at earliest`);
  return { topic, group };
}

// "Exists with other settings" is as good as "exists" here: either way, pick a new name.
function existedElsewhere(err: unknown): false {
  if (err instanceof ConflictError) return false;
  throw err;
}

async function sendAll(client: BucketQ, topic: string, out: (s?: string) => void): Promise<Sent[]> {
  const messages = Array.from({ length: MESSAGES }, (_, i) => {
    const key = `customer-${String(i % KEYS).padStart(3, '0')}`;
    return { key, payload: { orderId: i + 1, customer: key, amountCents: ((i * 7919) % 50_000) + 100 } };
  });
  const started = performance.now();
  const ids = await client.sendBatch(topic, messages);
  const ms = performance.now() - started;
  out(`  sent      ${n(ids.length)} messages over ${KEYS} keys in one sendBatch call (${ms.toFixed(0)} ms, ${rate(ids.length, ms)} msg/s)`);
  return messages.map((m, i) => ({ id: ids[i]!, key: m.key, orderId: m.payload.orderId }));
}

interface Drained {
  /** Every claim, in delivery order. */
  deliveries: ClaimedMessage[];
  ackedOnce: Set<string>;
  duplicateAcks: number;
  redeliveries: number;
  notAcked: string[];
}

/** Claims and acks batch by batch until a claim comes back empty. */
async function drain(client: BucketQ, group: string, out: (s?: string) => void): Promise<Drained> {
  const drained: Drained = { deliveries: [], ackedOnce: new Set(), duplicateAcks: 0, redeliveries: 0, notAcked: [] };
  const batchSizes: number[] = [];
  out();
  // A consumer must be a live member owning buckets before it can claim; alone in
  // the group it owns all of them.
  const owned = await client.join(group, CONSUMER, { meta: { demo: true, pid: process.pid } });
  out(`  consumer  ${CONSUMER} joined ${group} and owns ${owned.length} of ${BUCKETS} buckets`);
  out(`  consuming: claim up to ${CLAIM_MAX}, ack the batch, repeat`);
  const started = performance.now();
  let lastHeartbeat = started;
  // A key's next message is ready only after the previous one is acked, so with 10
  // messages per key at least 10 rounds are needed; the cap only stops a runaway loop.
  for (let round = 0; round < MESSAGES * 2; round++) {
    if (performance.now() - lastHeartbeat > HEARTBEAT_MS) {
      await client.heartbeat(group, CONSUMER);
      lastHeartbeat = performance.now();
    }
    const batch = await client.claim(group, CONSUMER, { max: CLAIM_MAX });
    if (batch.length === 0) break;
    if (batchSizes.length === 0) printSamples(batch, out);
    batchSizes.push(batch.length);
    drained.deliveries.push(...batch);
    drained.redeliveries += batch.filter((m) => m.attempt > 1).length;
    const results = await client.ack(group, batch, { consumerId: CONSUMER });
    for (const r of results) {
      if (r.status !== 'acked') drained.notAcked.push(`${r.msgId} (${r.status})`);
      else if (drained.ackedOnce.has(r.msgId)) drained.duplicateAcks++;
      else drained.ackedOnce.add(r.msgId);
    }
  }
  const ms = performance.now() - started;
  await client.leave(group, CONSUMER);
  out(`    ${batchSizes.length} batches claimed (sizes ${summariseSizes(batchSizes)})`);
  out(`    ${n(drained.deliveries.length)} messages claimed and acked in ${ms.toFixed(0)} ms: ${rate(drained.deliveries.length, ms)} msg/s`);
  return drained;
}

function printSamples(batch: ClaimedMessage[], out: (s?: string) => void): void {
  out('    first messages claimed:');
  for (const m of batch.slice(0, 3)) {
    out(`      id ${m.msgId}  key ${m.key}  key_seq ${m.keySeq}  bucket ${m.bucket}  attempt ${m.attempt}  ${JSON.stringify(m.payload)}`);
  }
}

/** Everything that would make the demo's claims false, one line each. */
function verify(sent: Sent[], d: Drained): string[] {
  const failures: string[] = [];
  const sentById = new Map(sent.map((s) => [s.id, s]));

  // Per key: key_seq goes up by exactly 1 at each delivery, and send order is kept.
  const lastSeq = new Map<string, bigint>();
  const lastOrder = new Map<string, number>();
  for (const m of d.deliveries) {
    const s = sentById.get(m.msgId);
    if (!s) {
      failures.push(`claimed message ${m.msgId} that this run did not send`);
      continue;
    }
    if (m.key !== s.key) failures.push(`message ${m.msgId}: sent with key ${s.key}, delivered with key ${m.key}`);
    if ((m.payload as { orderId?: unknown }).orderId !== s.orderId) failures.push(`message ${m.msgId}: payload differs from what was sent`);
    if (m.keySeq === null) {
      failures.push(`message ${m.msgId} (key ${s.key}) has no key_seq`);
      continue;
    }
    const seq = BigInt(m.keySeq);
    const prev = lastSeq.get(s.key);
    if (prev !== undefined && seq !== prev + 1n) failures.push(`key ${s.key}: key_seq ${seq} delivered after ${prev} (expected ${prev + 1n})`);
    const prevOrder = lastOrder.get(s.key);
    if (prevOrder !== undefined && s.orderId < prevOrder) failures.push(`key ${s.key}: order ${s.orderId} delivered after order ${prevOrder}`);
    lastSeq.set(s.key, seq);
    lastOrder.set(s.key, s.orderId);
  }

  // A new topic numbers each key from 1; every key must have reached its last message.
  for (const [key, seq] of lastSeq) if (seq !== BigInt(MESSAGES / KEYS)) failures.push(`key ${key}: last key_seq delivered is ${seq}, expected ${MESSAGES / KEYS}`);
  const firstSeq = new Map<string, string | null>();
  for (const m of d.deliveries) if (m.key !== null && !firstSeq.has(m.key)) firstSeq.set(m.key, m.keySeq);
  for (const [key, seq] of firstSeq) if (seq !== '1') failures.push(`key ${key}: first key_seq delivered is ${seq}, expected 1`);
  if (lastSeq.size !== KEYS) failures.push(`${lastSeq.size} keys delivered, expected ${KEYS}`);

  for (const s of sent) if (!d.ackedOnce.has(s.id)) failures.push(`message ${s.id} (key ${s.key}) was never acked`);
  if (d.duplicateAcks > 0) failures.push(`${d.duplicateAcks} messages were acked more than once`);
  for (const n of d.notAcked) failures.push(`ack did not acknowledge message ${n}`);
  const delivered = new Set(d.deliveries.map((m) => m.msgId));
  if (delivered.size !== d.deliveries.length) failures.push(`${d.deliveries.length - delivered.size} messages were delivered more than once`);
  return failures;
}

function n(value: number): string {
  return value.toLocaleString('en-US');
}

function rate(count: number, ms: number): string {
  return ms > 0 ? Math.round((count * 1000) / ms).toLocaleString('en-US') : '-';
}

function summariseSizes(sizes: number[]): string {
  return sizes.length <= 12 ? sizes.join(', ') : `${sizes.slice(0, 10).join(', ')}, ... ${sizes.at(-1)}`;
}
