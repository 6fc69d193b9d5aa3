// A stop whose timeout runs out aborts the handlers still running. Those messages were
// not tried and failed: they must come back at once, on their same attempt, without a
// backoff, whichever way they were held (lease, row lock, one transaction each).
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import type { Handler } from '../src/worker/options.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';

let db: FreshDatabase;
let bq: BucketQ;
const quiet = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
});
afterAll(async () => {
  await bq.close();
  await db.drop();
});

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const modes = [
  { name: 'leased batch', options: { claimMode: 'lease' as const } },
  { name: 'locked batch', options: { claimMode: 'lock' as const } },
  { name: 'one transaction per message', options: { transaction: 'message' as const } },
];

describe('stop({ timeoutMs }) that runs out', () => {
  it.each(modes)('($name) hands the aborted messages back on the same attempt, with no backoff', async ({ name, options }) => {
    const topic = `stop.${name.replace(/\W/g, '')}`;
    const group = `${topic}.g`;
    await bq.createTopic(topic, { buckets: 2 });
    // A failed attempt would wait an hour: a backoff is impossible to miss.
    await bq.createGroup(group, topic, { startAt: 'earliest', maxAttempts: 4, backoffBase: '1 hour', backoffMax: '1 hour' });
    const [slowId] = await bq.sendBatch(topic, [{ payload: { n: 1 }, key: 'slow' }, { payload: { n: 2 }, key: 'slow' }]);

    let started = 0;
    // A well-behaved handler: it gives up when the consumer aborts it.
    const hang: Handler = (_m, ctx) =>
      new Promise((_resolve, reject) => {
        started++;
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error));
      });
    const first = await bq.consume({ group, handler: hang, pollIntervalMs: 20, ...options }, quiet);
    await waitFor('the handler to start', () => started > 0);
    await first.stop({ timeoutMs: 100 });

    // Both are to be delivered again, none delayed (no backoff) nor held: in the inbox
    // (a lease handed back) or still ahead in the bucket's log (a locked batch rolled back).
    const { rows } = await db.pool.query<{ pending: number; delayed: number; leased: number }>(
      `select sum(ready + waiting)::int as pending, sum(delayed)::int as delayed, sum(leased)::int as leased
         from bucketq.lag where group_name = $1`,
      [group],
    );
    expect(rows[0], 'the aborted messages are still to be delivered, at once').toEqual({ pending: 2, delayed: 0, leased: 0 });
    const { rows: tried } = await db.pool.query<{ attempts: number }>(
      `select i.attempts from bucketq.inbox i join bucketq.consumer_group g using (group_id) where g.name = $1 and i.msg_id = $2`,
      [group, slowId],
    );
    expect(tried.map((r) => r.attempts), 'an aborted message used up an attempt').not.toContain(1);
    expect(first.stats.failed).toBe(0);

    const seen: { msgId: string; attempt: number }[] = [];
    const second = await bq.consume({ group, handler: (m, ctx) => void seen.push({ msgId: m.msgId, attempt: ctx.attempt }), pollIntervalMs: 20, ...options }, quiet);
    try {
      await waitFor('both messages to be handled by the next consumer', () => seen.length >= 2, 10_000);
    } finally {
      await second.stop();
    }
    expect(seen[0]).toEqual({ msgId: slowId, attempt: 1 });
  });
});
