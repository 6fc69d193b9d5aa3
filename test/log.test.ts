// Logs: pino-pretty lines on a terminal, JSON lines otherwise, the level from LOG_LEVEL,
// and errors under `err` as serialised Error objects (type, message, stack).
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { createLogger } from '../src/log.js';
import { ConfigError } from '../src/errors.js';
import { freshDatabase, type FreshDatabase } from './support/db.js';
import { ROOT } from './support/private-copy.js';

const LOG_SOME = `
  const { createLogger } = await import('./src/log.ts');
  const log = createLogger();
  log.debug('hidden at info');
  log.error({ err: new TypeError('boom') }, 'handler failed');
`;

function logSome(env: NodeJS.ProcessEnv, tty: boolean) {
  const node = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', LOG_SOME];
  // script(1) runs the command on a pseudo-terminal, as a person's shell would.
  const cmd = tty ? ['script', '-qec', node.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '), '/dev/null'] : node;
  return spawnSync(cmd[0]!, cmd.slice(1), { cwd: ROOT, env: { ...process.env, LOG_LEVEL: '', LOG_FORMAT: '', ...env }, encoding: 'utf8', timeout: 60_000 });
}

describe('createLogger', () => {
  it('writes one JSON object per line when stdout is not a terminal, errors under err with type and stack', () => {
    const r = logSome({}, false);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, msg: 'handler failed', err: { type: 'TypeError', message: 'boom' } });
    expect((lines[0]!.err as { stack: string }).stack).toContain('TypeError: boom');
  });

  it.runIf(spawnSync('script', ['--version']).status === 0)('writes pretty lines on a terminal', () => {
    const r = logSome({}, true);
    expect(r.stdout).toContain('ERROR');
    expect(r.stdout).toContain('handler failed');
    expect(r.stdout).toContain('TypeError: boom');
    expect(r.stdout).not.toMatch(/^\{"level"/m);
  });

  it('LOG_LEVEL sets the level; LOG_FORMAT=json forces JSON on a terminal', () => {
    const r = logSome({ LOG_LEVEL: 'debug', LOG_FORMAT: 'json' }, spawnSync('script', ['--version']).status === 0);
    expect(r.stdout.trim().split(/\r?\n/).map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['hidden at info', 'handler failed']);
  });

  it('rejects a bad LOG_LEVEL or LOG_FORMAT naming the valid values', () => {
    expect(() => createLogger({ env: { LOG_LEVEL: 'loud' } })).toThrow(ConfigError);
    expect(() => createLogger({ env: { LOG_LEVEL: 'loud' } })).toThrow("LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got 'loud'");
    expect(() => createLogger({ env: { LOG_FORMAT: 'xml' } })).toThrow("LOG_FORMAT must be 'json' or 'pretty', got 'xml'");
  });
});

describe('the worker logs a failing handler', () => {
  let db: FreshDatabase;
  let bq: BucketQ;
  beforeAll(async () => {
    db = await freshDatabase();
    bq = new BucketQ({ pool: db.pool });
  });
  afterAll(async () => {
    await bq.close();
    await db.drop();
  });

  it('with the thrown Error under err (type, message, stack), on retry and on dead-lettering', async () => {
    const records: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    await bq.createTopic('log.t', { buckets: 2 });
    await bq.createGroup('log.g', 'log.t', { startAt: 'earliest', maxAttempts: 2 });
    await db.pool.query(`update bucketq.consumer_group set backoff_base = '1 ms', backoff_max = '1 ms' where name = 'log.g'`);
    await bq.send('log.t', { n: 1 }, { key: 'k' });
    const consumer = await bq.consume(
      { group: 'log.g', handler: () => Promise.reject(new RangeError('no such order')), pollIntervalMs: 20 },
      pino({ level: 'info' }, sink),
    );
    try {
      for (let i = 0; i < 500 && !records.some((r) => r.msg === 'message dead-lettered'); i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await consumer.stop();
    }
    for (const msg of ['handler failed; will retry', 'message dead-lettered']) {
      const rec = records.find((r) => r.msg === msg);
      expect(rec, msg).toBeDefined();
      expect(rec!.err).toMatchObject({ type: 'RangeError', message: 'no such order' });
      expect((rec!.err as { stack: string }).stack).toMatch(/^RangeError: no such order\n\s+at /);
    }
  });
});
