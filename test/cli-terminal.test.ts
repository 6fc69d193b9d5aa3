// The CLI prints data that others chose (message keys, consumer ids, error texts) to a
// terminal: control characters in them must reach the screen as visible escapes, never
// as terminal commands (issue 13 item 15).
import { describe, expect, it } from 'vitest';
import { claim, nack, useDatabase } from './helpers/sql.js';
import { inProcessCli } from './support/cli.js';

const ctx = useDatabase();

const { cli } = inProcessCli(() => ctx.db.connectionString);

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
