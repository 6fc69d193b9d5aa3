// The worker's lease claims and attempt notes commit without waiting for the WAL flush
// (src/queries/consume.ts, ASYNC_COMMIT). What they write is committed and visible to
// every other session at once, and the setting does not outlive the statement's own
// transaction: the session's next transaction (an ack with the handler's effects)
// commits synchronously again.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { claim, recordAttempt } from '../src/queries/consume.js';
import { sendBatch, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

async function syncCommit(c: pg.Client): Promise<string> {
  const { rows } = await c.query<{ s: string }>(`select current_setting('synchronous_commit') as s`);
  return rows[0]!.s;
}

describe('asynchronous commit of the worker\'s leases and attempt notes', () => {
  it('a lease claimed with asyncCommit is committed and seen by other sessions; the session stays synchronous', async () => {
    const c = await ctx.session();
    const other = await ctx.session();
    const { topic, group } = await topicAndGroup(c, ctx);
    await sendBatch(c, topic, [{ n: 1 }, { n: 2 }], { keys: ['a', 'b'] });
    const got = await claim(c, group, 'c1', { max: 10, asyncCommit: true });
    expect(got.map((m) => m.payload)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(await syncCommit(c)).toBe('on');
    const { rows } = await other.query(
      `select count(*)::int as n from bucketq.message_states where group_name = $1 and state = 'leased'`,
      [group],
    );
    expect(rows[0].n).toBe(2);
    // and the lease holds: a second claim gets nothing
    expect(await claim(other, group, 'c1', { max: 10 })).toEqual([]);
  });

  it('an attempt note recorded with asyncCommit counts when the claiming transaction dies', async () => {
    const holder = await ctx.session();
    const noter = await ctx.session();
    const observer = await ctx.session();
    const { topic, group } = await topicAndGroup(observer, ctx, { group: { max_attempts: 5 } });
    await sendBatch(observer, topic, [{ n: 1 }], { keys: ['k'] });
    await holder.query('begin');
    const { rows } = await holder.query(`select msg_id::text, xact::text from bucketq.claim_locked($1, 'c1', 10)`, [group]);
    expect(rows).toHaveLength(1);
    await recordAttempt(noter, group, 'c1', rows[0].xact, [rows[0].msg_id], { asyncCommit: true });
    expect(await syncCommit(noter)).toBe('on');
    // the claiming backend dies, as a crashed worker's would
    const { rows: pid } = await holder.query('select pg_backend_pid() as pid');
    holder.on('error', () => {});
    await observer.query('select pg_terminate_backend($1)', [pid[0].pid]);
    await observer.query('begin');
    const again = await observer.query(`select msg_id::text, attempt from bucketq.claim_locked($1, 'c1', 10)`, [group]);
    await observer.query('rollback');
    expect(again.rows).toEqual([{ msg_id: rows[0].msg_id, attempt: 2 }]);
  });
});
