// bucketq's own readers turn JIT compilation off. The views' plans are estimated dear
// enough to be compiled, and on a server with JIT (Debian's Postgres 15 has it, on by
// default) compiling cost far more than running them: the console's overview 1.5 s
// against 0.16 s, a message's lookup 1.55 s against 7 ms, a metrics() scrape 1.34 s
// against 0.12 s. Here every plan is made eligible (jit_above_cost = 0) and auto_explain
// reports each plan, nested ones too, to the session: none may have been compiled.
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { readSnapshot } from '../src/db/read-snapshot.js';
import { readStatus } from '../src/queries/status.js';
import { lookupMessages, readOverview } from '../src/ui/queries.js';
import { ack, claim, nack, send, topicAndGroup, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

/** A session where every plan would be compiled, and every plan is reported to it. */
async function watchedSession(): Promise<{ c: pg.Client; plans: string[] }> {
  const c = await ctx.session();
  const plans: string[] = [];
  c.on('notice', (n) => {
    if (/plan:/.test(n.message ?? '')) plans.push(n.message ?? '');
  });
  await c.query(`load 'auto_explain'`);
  await c.query(`set auto_explain.log_min_duration = 0`);
  await c.query(`set auto_explain.log_nested_statements = on`);
  await c.query(`set auto_explain.log_analyze = on`);
  await c.query(`set client_min_messages = log`);
  await c.query(`set jit = on`);
  await c.query(`set jit_above_cost = 0`);
  return { c, plans };
}

/** Whether this Postgres can compile plans (the embedded one cannot; CI's second run, on Debian's Postgres 15, can). */
async function jitAvailable(): Promise<boolean> {
  const { rows } = await ctx.db.pool.query<{ jit: boolean }>('select pg_jit_available() as jit');
  return rows[0]!.jit;
}

describe('JIT compilation', () => {
  it('is off for the console\'s and status\'s reads and for metrics(), and only there', async (test) => {
    if (!(await jitAvailable())) test.skip();
    const admin = await ctx.session();
    const { topic } = await topicAndGroup(admin, ctx, { buckets: 4, consumer: null });
    const id = await send(admin, topic, { n: 1 }, { key: 'k' });

    const { c, plans } = await watchedSession();
    // The check itself: a plain query in this session is compiled.
    await c.query('select count(*) from bucketq.lag');
    expect(plans.some((p) => p.includes('JIT:')), plans.join('\n')).toBe(true);

    plans.length = 0;
    await readOverview(c);
    await readStatus(c);
    const found = await lookupMessages(c, { id: String(id) });
    expect(found.messages).toHaveLength(1);
    // (This statement's own plan is the caller's, a function scan, compiled here only for
    // jit_above_cost = 0; the plans inside metrics() are bucketq's.)
    await c.query('select count(*) from bucketq.metrics() as metrics_call');
    expect(plans.length).toBeGreaterThan(10);
    expect(plans.filter((p) => p.includes('JIT:') && !p.includes('metrics_call')), 'plans compiled').toEqual([]);

    // SET LOCAL: the session's own setting is back after each read.
    const { rows: after } = await c.query<{ jit: string }>(`select current_setting('jit') as jit`);
    expect(after[0]!.jit).toBe('on');
  });

  it('readSnapshot reads in one read-only snapshot and leaves the session as it was, also when fn throws', async () => {
    const c = await ctx.session();
    const inside = await readSnapshot(c, async (s) =>
      (await s.query<{ jit: string; ro: string; iso: string }>(
        `select current_setting('jit') as jit, current_setting('transaction_read_only') as ro, current_setting('transaction_isolation') as iso`)).rows[0]);
    expect(inside).toEqual({ jit: 'off', ro: 'on', iso: 'repeatable read' });
    await expect(readSnapshot(c, async (s) => s.query(`create table bucketq_jit_test (x int)`))).rejects.toThrow(/read-only transaction/);
    const { rows } = await c.query<{ jit: string }>(`select current_setting('jit') as jit`);
    expect(rows[0]!.jit).toBe('on');
  });

  it('is off in every public function, so the hot path never compiles a plan', async (test) => {
    // On a log of a few hundred thousand messages the claim's generic plans passed
    // jit_above_cost, and each claim compiled them again: 265 ms a claim of one message
    // instead of 2.4 (Debian's Postgres 15, pgbench). Every public function has
    // `set jit = off` (sql/README.md), as do the internal ones the views call.
    const { rows: missing } = await ctx.db.pool.query<{ name: string }>(
      `select p.proname as name from pg_proc p
        where p.pronamespace = 'bucketq'::regnamespace
          and (p.proname !~ '^_' or p.proname in ('_log_backlog_any', '_log_backlog_buckets', '_log_backlog_total'))
          and not coalesce('jit=off' = any(p.proconfig), false)
        order by 1`);
    expect(missing).toEqual([]);

    if (!(await jitAvailable())) test.skip();
    const admin = await ctx.session();
    const { topic, group } = await topicAndGroup(admin, ctx, { buckets: 4, consumer: null });
    const { c, plans } = await watchedSession();
    // (The calls' own statements are the caller's plans: compiled here only for
    // jit_above_cost = 0, and told apart by the word "caller" in them.)
    await c.query(`select * from bucketq.join($1, 'c1') as caller`, [group]);
    for (let i = 0; i < 3; i++) await send(c, topic, { i }, { key: `k${i % 2}` });
    const first = await claim(c, group, 'c1', 10);
    expect(first.length).toBeGreaterThan(0);
    await nack(c, group, first.slice(0, 1), { retryDelay: '0 seconds' });
    await ack(c, group, first.slice(1));
    await c.query(`select bucketq.heartbeat($1, 'c1') as caller`, [group]);
    expect(plans.length).toBeGreaterThan(10);
    const compiled = plans.filter((p) => p.includes('JIT:') && !/caller|bucketq\.(send|claim|ack|nack)\(/.test(p.split('\n').slice(0, 3).join(' ')));
    expect(compiled, 'plans compiled inside bucketq').toEqual([]);
  });
});

