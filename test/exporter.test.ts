// `bucketq exporter` and bucketq.metrics() (issue 12): metrics of the whole database from
// the public views, served to Prometheus by one process, with no worker running.
import { once } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORTED_METRICS, exporterRegistry } from '../src/exporter.js';
import { claim, nack, useDatabase } from './helpers/sql.js';
import { spawnCliProcess } from './support/cli.js';
import { waitFor } from './support/wait.js';

const ctx = useDatabase();

/** Prometheus text format: `name{labels} value` lines as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

beforeAll(async () => {
  const c = ctx.db.pool;
  await c.query(`select bucketq.create_topic('x.t', 2)`);
  await c.query(`select bucketq.create_group(group_name => 'x.g', topic => 'x.t', start_at => 'earliest', max_attempts => 1)`);
  await c.query(`select bucketq.create_group(group_name => 'x.paused', topic => 'x.t', start_at => 'earliest')`);
  for (const key of ['a', 'a', 'b', 'c']) await c.query(`select bucketq.send('x.t', '{}'::jsonb, key => $1)`, [key]);
  await c.query(`select * from bucketq.join('x.g', 'c1')`);
  const heads = await claim(c, 'x.g', 'c1');
  await nack(c, 'x.g', heads.filter((m) => m.key === 'c'), { error: 'boom' }); // dead
  await c.query(`select bucketq.pause_group('x.paused')`);
});

describe('bucketq.metrics()', () => {
  it('returns every metric the exporter knows, and only those', async () => {
    const { rows } = await ctx.db.pool.query<{ metric: string }>('select distinct metric from bucketq.metrics() order by 1');
    expect(rows.map((r) => r.metric)).toEqual(Object.keys(EXPORTED_METRICS).sort());
  });
});

describe('bucketq exporter', () => {
  let exporter: ReturnType<typeof spawnCliProcess> | undefined;
  afterAll(() => {
    exporter?.child.kill('SIGKILL');
  });

  it('serves lag, oldest age, dead letters, consumers and process metrics; /health; stops on SIGINT', async () => {
    exporter = spawnCliProcess(['exporter', '--port', '0', '--database-url', ctx.db.connectionString]);
    let url = '';
    await waitFor('exporter address', () => {
      url = /bucketq exporter: (http:\/\/\S+\/metrics)/.exec(exporter!.output())?.[1] ?? '';
      return url !== '' || exporter!.child.exitCode !== null;
    }, 30_000);
    expect(url, exporter.output()).not.toBe('');
    const res = await fetch(url);
    expect(res.status).toBe(200);
    const m = samples(await res.text());
    const g = (name: string, labels: string) => m.get(`${name}{${labels}}`);
    expect(m.get('bucketq_up')).toBe(1);
    // x.g: a2 waits behind a1 (leased), b1 leased, c1 dead; x.paused: all four ready or waiting.
    expect(g('bucketq_group_messages', 'group="x.g",topic="x.t",state="leased"')).toBe(2);
    expect(g('bucketq_group_messages', 'group="x.g",topic="x.t",state="waiting"')).toBe(1);
    expect(g('bucketq_group_messages', 'group="x.g",topic="x.t",state="ready"')).toBe(0);
    expect(g('bucketq_group_messages', 'group="x.paused",topic="x.t",state="ready"')).toBe(3);
    expect(g('bucketq_group_messages', 'group="x.paused",topic="x.t",state="waiting"')).toBe(1);
    expect((g('bucketq_bucket_lag_messages', 'group="x.g",topic="x.t",bucket="0"') ?? 0) + (g('bucketq_bucket_lag_messages', 'group="x.g",topic="x.t",bucket="1"') ?? 0)).toBe(3);
    expect(g('bucketq_group_oldest_message_age_seconds', 'group="x.g",topic="x.t"')).toBeGreaterThan(0);
    expect(g('bucketq_bucket_oldest_message_age_seconds', 'group="x.paused",topic="x.t",bucket="0"')).toBeGreaterThanOrEqual(0);
    expect(g('bucketq_group_dead_letters', 'group="x.g",topic="x.t"')).toBe(1);
    expect(g('bucketq_group_consumers', 'group="x.g",topic="x.t",alive="true"')).toBe(1);
    expect(g('bucketq_group_consumers', 'group="x.paused",topic="x.t",alive="true"')).toBe(0);
    expect(g('bucketq_group_owned_buckets', 'group="x.g",topic="x.t"')).toBe(2);
    expect(g('bucketq_group_paused', 'group="x.paused",topic="x.t"')).toBe(1);
    expect(g('bucketq_group_paused', 'group="x.g",topic="x.t"')).toBe(0);
    expect(g('bucketq_topic_buckets', 'topic="x.t"')).toBe(2);
    expect(g('bucketq_topic_log_bytes', 'topic="x.t"')).toBeGreaterThan(0);
    // CPU counted from the registry's creation can still read 0 here (no clock tick charged
    // yet); its presence and the process start time are what this scrape can promise.
    expect(m.get('process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(m.get('process_start_time_seconds')).toBeGreaterThan(Date.now() / 1000 - 600);
    expect([...m.keys()].some((k) => k.startsWith('nodejs_heap_size_total_bytes'))).toBe(true);

    expect((await fetch(url.replace('/metrics', '/health'))).status).toBe(200);
    expect((await fetch(url.replace('/metrics', '/nope'))).status).toBe(404);
    exporter.child.kill('SIGINT');
    const [code] = (await once(exporter.child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }, 60_000);

  it('reports bucketq_up 0 (and still its process metrics) when the database does not answer', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', connectionTimeoutMillis: 2000 });
    pool.on('error', () => {});
    try {
      const m = samples(await exporterRegistry(pool).scrape());
      expect(m.get('bucketq_up')).toBe(0);
      // Present (prom-client counts CPU from the registry's creation: a scrape right after
      // it can read 0 when the kernel has not yet charged a clock tick).
      expect(m.get('process_cpu_user_seconds_total')).toBeTypeOf('number');
      expect(m.get('process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
      expect([...m.keys()].filter((k) => k.startsWith('bucketq_group_'))).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  it('serves scrapes that come while one runs from that one (a slow count is not queued once per scrape)', async () => {
    // On a backlog of millions, bucketq.metrics() counts for seconds; Prometheus gives up
    // on a scrape and sends the next, and each used to queue a call of its own. Here the
    // call waits on a lock (bucketq.groups reads the dead letters) while three scrapes come.
    const pool = new pg.Pool({ connectionString: ctx.db.connectionString, max: 4 });
    const locker = new pg.Client({ connectionString: ctx.db.connectionString });
    await locker.connect();
    try {
      const { scrape } = exporterRegistry(pool);
      await locker.query('begin');
      await locker.query('lock table bucketq.dead_letter in access exclusive mode');
      const scrapes = [scrape()];
      await waitFor('the first scrape to wait on the lock', async () => {
        const { rows } = await ctx.db.pool.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%bucketq.metrics()%'`);
        return rows[0]!.n === 1;
      });
      scrapes.push(scrape(), scrape());
      await new Promise((r) => setTimeout(r, 300));
      await locker.query('rollback');
      const texts = await Promise.all(scrapes);
      // One call served all three: the same text, down to the scrape's duration (the
      // lock's 300 ms and more) and the process's CPU time.
      expect(new Set(texts).size).toBe(1);
      const m = samples(texts[0]!);
      expect(m.get('bucketq_up')).toBe(1);
      expect(m.get('bucketq_scrape_duration_seconds')).toBeGreaterThan(0.3);
      expect(m.get('bucketq_group_dead_letters{group="x.g",topic="x.t"}')).toBe(1);
      // The next scrape calls again: a duration of its own.
      const next = samples(await scrape());
      expect(next.get('bucketq_up')).toBe(1);
      expect(next.get('bucketq_scrape_duration_seconds')).not.toBe(m.get('bucketq_scrape_duration_seconds'));
    } finally {
      await locker.end();
      await pool.end();
    }
  });

  it('refuses bad flags with exit code 2', async () => {
    const r = await spawnCliProcess(['exporter', '--port', 'http', '--database-url', ctx.db.connectionString]).exited;
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/--port must be a whole number from 0 to 65535/);
  }, 30_000);
});
