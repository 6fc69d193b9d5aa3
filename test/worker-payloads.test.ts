// Payload precision (issue 13 item 16): node-pg parses jsonb with JSON.parse, which
// rounds integers beyond 2^53 and long decimals. parsePayload hands the handler the
// exact JSON text (or what a parser of one's choice makes of it).
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import type { ClaimedMessage } from '../src/queries/consume.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { waitFor } from './support/wait.js';

let db: FreshDatabase;
let bq: BucketQ;
const quiet = pino({ level: 'silent' });
const EXACT = '{"big": 9007199254740993, "dec": 0.1000000000000000055511151231257827}';

beforeAll(async () => {
  db = await freshDatabase();
  bq = new BucketQ({ pool: db.pool });
});
afterAll(async () => {
  await bq.close();
  await db.drop();
});

async function consumeAll(group: string, options: Record<string, unknown>, count: number): Promise<ClaimedMessage[]> {
  const seen: ClaimedMessage[] = [];
  const c = await bq.consume({ group, handler: (m) => void seen.push(m), ...options }, quiet);
  try {
    await waitFor(`${count} messages`, () => seen.length >= count, 10_000);
  } finally {
    await c.stop();
  }
  return seen;
}

describe('payload precision', () => {
  let n = 0;
  async function topicWithExactPayload(group: Record<string, unknown> = {}): Promise<{ topic: string; group: string }> {
    const topic = `p.t${++n}`;
    await bq.createTopic(topic, { buckets: 1 });
    await bq.createGroup(`p.g${n}`, topic, { startAt: 'earliest', ...group });
    await db.pool.query(`select bucketq.send(topic => $1, payload => $2::jsonb, key => 'k')`, [topic, EXACT]);
    return { topic, group: `p.g${n}` };
  }

  it('by default payloads are parsed by JSON.parse: 9007199254740993 arrives rounded (documented)', async () => {
    const { group } = await topicWithExactPayload();
    const [m] = await consumeAll(group, {}, 1);
    expect((m!.payload as { big: number }).big).toBe(9007199254740992);
  });

  it.each(['lock', 'lease'] as const)('parsePayload gets the exact JSON text (%s claims)', async (claimMode) => {
    const { group } = await topicWithExactPayload();
    const [m] = await consumeAll(group, { claimMode, parsePayload: (text: string) => text }, 1);
    expect(typeof m!.payload).toBe('string');
    expect(m!.payload).toContain('"big": 9007199254740993');
    expect(m!.payload).toContain('"dec": 0.1000000000000000055511151231257827');
  });

  it('a parsePayload that throws fails that message only: it is nacked with the parser error and dead-lettered', async () => {
    const { topic, group } = await topicWithExactPayload({ maxAttempts: 1 });
    await bq.send(topic, { fine: true }, { key: 'other' });
    const parsePayload = (text: string) => {
      if (text.includes('big')) throw new Error('parser refuses this payload');
      return JSON.parse(text) as unknown;
    };
    const [m] = await consumeAll(group, { parsePayload }, 1);
    expect(m!.payload).toEqual({ fine: true });
    await waitFor('the dead letter', async () => {
      const r = await db.pool.query('select last_error from bucketq.dead_letters where group_name = $1', [group]);
      return r.rows.length === 1 && /parser refuses this payload/.test(r.rows[0].last_error);
    });
  });

  it('rejects a parsePayload that is not a function', async () => {
    const { group } = await topicWithExactPayload();
    await expect(bq.consume({ group, handler: () => {}, parsePayload: 'bigint' as unknown as (t: string) => unknown }, quiet)).rejects.toThrow(
      /parsePayload must be a function/,
    );
  });
});
