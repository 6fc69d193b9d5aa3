// The CLI prints data that others chose (message keys, consumer ids, error texts) to a
// terminal: control characters in them must reach the screen as visible escapes, never
// as terminal commands (issue 13 item 15).
import { describe, expect, it, vi } from 'vitest';
import { run } from '../src/cli.js';
import { claim, nack, useDatabase } from './helpers/sql.js';

const ctx = useDatabase();

/** `bucketq ...args --database-url <test db>` in-process; what it printed. */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.map(String).join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.map(String).join(' ')));
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await run([...args, '--database-url', ctx.db.connectionString]);
    return { code: Number(process.exitCode ?? 0), out: out.join('\n'), err: err.join('\n') };
  } finally {
    process.exitCode = before;
    log.mockRestore();
    error.mockRestore();
  }
}

// C0 controls (ESC, BEL, ...), DEL and the C1 controls (U+0080-U+009F; U+009B is CSI).
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

const KEY = 'k\u001b[31mRED';
const CONSUMER = 'evil\u001b]0;pwned\u0007';
const ERROR = 'bad\u001b[2J\u009b31m card declined';

describe('terminal output of data with control characters', () => {
  it('status and dlq list show them escaped; --json keeps the exact values, without raw C1 controls', async () => {
    const c = ctx.db.pool;
    await c.query(`select bucketq.create_topic('term.t', 1)`);
    await c.query(`select bucketq.create_group(group_name => 'term.g', topic => 'term.t', start_at => 'earliest', max_attempts => 1)`);
    await c.query(`select bucketq.send(topic => 'term.t', payload => '{}'::jsonb, key => $1)`, [KEY]);
    await c.query(`select bucketq.send(topic => 'term.t', payload => '{}'::jsonb, key => $1)`, [`${KEY}2`]);
    await c.query('select * from bucketq.join($1, $2)', ['term.g', CONSUMER]);
    const claimed = await claim(c, 'term.g', CONSUMER);
    expect(claimed).toHaveLength(2);
    await nack(c, 'term.g', claimed.filter((m) => m.key === KEY), { error: ERROR });
    // the other stays leased by CONSUMER, so status lists it

    for (const args of [['status'], ['dlq', 'list']]) {
      const r = await cli(...args);
      expect(r.code, r.err).toBe(0);
      expect(r.out, `bucketq ${args.join(' ')} printed a raw control character`).not.toMatch(CONTROL);
    }
    const status = (await cli('status')).out;
    expect(status).toContain('evil\\x1b]0;pwned\\x07');
    const dlq = (await cli('dlq', 'list')).out;
    expect(dlq).toContain('k\\x1b[31mRED');
    expect(dlq).toContain('bad\\x1b[2J\\x9b31m card declined');

    for (const args of [['status', '--json'], ['dlq', 'list', '--json']]) {
      const r = await cli(...args);
      expect(r.out, `bucketq ${args.join(' ')} printed a raw control character`).not.toMatch(CONTROL);
    }
    // JSON is for programs: the exact values survive the escaping.
    const snapshot = JSON.parse((await cli('status', '--json')).out) as { consumers: { consumerId: string }[] };
    expect(snapshot.consumers.map((x) => x.consumerId)).toContain(CONSUMER);
    const letters = JSON.parse((await cli('dlq', 'list', '--json')).out) as { key: string; lastError: string }[];
    expect(letters).toEqual([expect.objectContaining({ key: KEY, lastError: ERROR })]);
  });

  it('an error naming a value with control characters prints it escaped', async () => {
    const r = await cli('status', '--group', 'no\u001b[2Jsuch');
    expect(r.code).not.toBe(0);
    expect(r.err).not.toMatch(CONTROL);
    expect(r.err).toContain('no\\x1b[2Jsuch');
  });
});
