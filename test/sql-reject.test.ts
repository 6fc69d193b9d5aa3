// bucketq.reject: dead-letter claimed messages at once (a payload the consumer cannot
// read), with nack's checks of the lease or the claim_locked lock, and the attempts
// really made in the dead letter.
import { describe, expect, it } from 'vitest';
import { claim, expectBqError, inTx, send, stateFingerprint, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

async function reject(c: Parameters<typeof send>[0], group: string, ids: number[], tokens: string[] | null, opts: { consumer?: string; strict?: boolean } = {}) {
  const { rows } = await c.query(
    `select msg_id::int, status from bucketq.reject(group_name => $1, msg_ids => $2::bigint[], lease_tokens => $3::bigint[],
                                                   errors => $4::text[], strict => $5, consumer_id => $6)`,
    [group, ids, tokens, ids.map(() => 'unreadable'), opts.strict ?? true, opts.consumer ?? null],
  );
  return rows as { msg_id: number; status: string }[];
}

const deadLetters = async (c: Parameters<typeof send>[0], group: string) =>
  (await c.query(`select msg_id::int, attempts, last_error from bucketq.dead_letters where group_name = $1 order by msg_id`, [group])).rows;

describe('reject', () => {
  it('a leased message is dead-lettered on its first attempt; its key moves on (skip)', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { buckets: 1, group: { max_attempts: 5 } });
    const bad = await send(s, topic, { bad: true }, { key: 'k' });
    const next = await send(s, topic, { ok: true }, { key: 'k' });
    const [m] = await claim(s, group, consumer);
    expect(m!.msg_id).toBe(bad);
    expect(await reject(s, group, [bad], [m!.lease_token])).toEqual([{ msg_id: bad, status: 'dead' }]);
    expect(await deadLetters(s, group)).toEqual([{ msg_id: bad, attempts: 1, last_error: 'unreadable' }]);
    expect((await claim(s, group, consumer)).map((x) => x.msg_id)).toEqual([next]);
  });

  it('a message held by claim_locked, in the claiming transaction: dead at once, attempts 1; with block the key waits', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { buckets: 1, group: { max_attempts: 5, on_exhausted: 'block' } });
    const bad = await send(s, topic, { bad: true }, { key: 'k' });
    await send(s, topic, { ok: true }, { key: 'k' });
    await inTx(s, async () => {
      const { rows } = await s.query('select msg_id::int from bucketq.claim_locked($1, $2, 10)', [group, consumer]);
      expect(rows.map((r) => r.msg_id)).toEqual([bad]);
      expect(await reject(s, group, [bad], null, { consumer })).toEqual([{ msg_id: bad, status: 'dead' }]);
    });
    expect(await deadLetters(s, group)).toEqual([{ msg_id: bad, attempts: 1, last_error: 'unreadable' }]);
    expect(await claim(s, group, consumer)).toEqual([]); // block: the key waits for a replay
  });

  it('refuses what the caller does not hold, as nack does, and changes nothing', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { buckets: 1, group: { max_attempts: 5 } });
    const id = await send(s, topic, { n: 1 }, { key: 'k' });
    const [m] = await claim(s, group, consumer);
    const before = await stateFingerprint(s);
    // A wrong lease token: BQ006 (strict), nothing dead, attempts untouched.
    await expectBqError(reject(s, group, [id], [String(BigInt(m!.lease_token) + 1n)]), 'BQ006');
    // Not strict: reported stale.
    expect(await reject(s, group, [id], [String(BigInt(m!.lease_token) + 1n)], { strict: false })).toEqual([{ msg_id: id, status: 'stale' }]);
    // Locked form for a message that is leased, not locked, or another consumer's.
    await expectBqError(inTx(s, () => reject(s, group, [id], null, { consumer: 'someone-else' })), 'BQ006');
    await expectBqError(reject(s, group, [id], null), 'BQ005', /consumer_id/);
    expect(await stateFingerprint(s)).toEqual(before);
    expect(await deadLetters(s, group)).toEqual([]);
    const { rows } = await s.query('select state, attempts from bucketq.message_states where group_name = $1 and msg_id = $2', [group, id]);
    expect(rows).toEqual([{ state: 'leased', attempts: 1 }]);
  });

  it('the locked form refuses a row of its own bucket that this transaction did not claim: stale when not strict, not a bug report', async () => {
    const s = await ctx.session();
    const { topic, group, consumer } = await topicAndGroup(s, ctx, { buckets: 1, group: { max_attempts: 5 } });
    await send(s, topic, { n: 1 }, { key: 'k' });
    const waiting = await send(s, topic, { n: 2 }, { key: 'k' });
    await claim(s, group, consumer); // the head, leased; the second waits in the inbox behind it
    const before = await stateFingerprint(s);
    expect(await inTx(s, () => reject(s, group, [waiting], null, { consumer, strict: false }))).toEqual([{ msg_id: waiting, status: 'stale' }]);
    await expectBqError(inTx(s, () => reject(s, group, [waiting], null, { consumer })), 'BQ006');
    expect(await stateFingerprint(s)).toEqual(before);
    expect(await deadLetters(s, group)).toEqual([]);
  });
});
