// `bucketq exporter`: serves bucketq.metrics() (lag, oldest message age per group and
// bucket, dead letters, consumers, ...) to Prometheus, once for the whole database
// instead of from every worker, plus this process's own metrics. One query per scrape.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric bucketq.metrics() returns: help text and labels (the SQL columns that carry them). */
export const EXPORTED_METRICS = {
  bucketq_group_messages: { help: 'Messages a group has not finished, by state (ready, leased, delayed, waiting, dead_blocking)', labels: ['group', 'topic', 'state'] },
  bucketq_group_oldest_message_age_seconds: { help: "Age of the group's oldest unfinished message (0 when none)", labels: ['group', 'topic'] },
  bucketq_group_expired_leases: { help: 'Leases past their timeout, not yet handed out again', labels: ['group', 'topic'] },
  bucketq_bucket_lag_messages: { help: 'Unfinished messages per group and bucket', labels: ['group', 'topic', 'bucket'] },
  bucketq_bucket_oldest_message_age_seconds: { help: 'Age of the oldest unfinished message per group and bucket (0 when none)', labels: ['group', 'topic', 'bucket'] },
  bucketq_group_dead_letters: { help: 'Dead letters not replayed', labels: ['group', 'topic'] },
  bucketq_group_consumers: { help: 'Consumers in the lobby, alive (heartbeat within the session timeout) or not', labels: ['group', 'topic', 'alive'] },
  bucketq_group_owned_buckets: { help: 'Buckets owned by a live consumer', labels: ['group', 'topic'] },
  bucketq_group_paused: { help: '1 while the group is paused (bucketq group pause)', labels: ['group', 'topic'] },
  bucketq_topic_buckets: { help: 'Buckets of the topic', labels: ['topic'] },
  bucketq_topic_partitions: { help: 'Log partitions of the topic', labels: ['topic'] },
  bucketq_topic_log_bytes: { help: "Size of the topic's log on disk", labels: ['topic'] },
  bucketq_rotation_due_seconds: { help: "How long a TRUNCATE rotation of maintain() (key_counter, consumer_beat) has been due: rows wait that no one appends to (0 while nothing is due). Over 300: a reader holds the part, or nobody runs maintain() (view bucketq.rotations)", labels: ['rotation'] },
  bucketq_rotation_kept_runs: { help: 'maintain() runs in a row that gave up on a rotation\'s lock (500 ms) since it last emptied its part', labels: ['rotation'] },
  bucketq_rotation_bytes: { help: "Size of a rotation's two parts on disk, with indexes", labels: ['rotation'] },
} as const satisfies Record<string, { help: string; labels: readonly string[] }>;

export type ExportedMetric = keyof typeof EXPORTED_METRICS;

interface MetricRow {
  metric: string;
  topic: string | null;
  group_name: string | null;
  bucket: number | null;
  state: string | null;
  value: number;
}

export interface Exporter {
  url: string;
  port: number;
  registry: Registry;
  close(): Promise<void>;
}

/** The registry a scrape reads: process metrics, bucketq_up, and the gauges filled from one bucketq.metrics() call. */
export function exporterRegistry(pool: pg.Pool): { registry: Registry; scrape(): Promise<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const up = new Gauge({ name: 'bucketq_up', help: '1 when the last scrape could read bucketq.metrics() from the database', registers: [registry] });
  const duration = new Gauge({ name: 'bucketq_scrape_duration_seconds', help: 'How long the last bucketq.metrics() call took', registers: [registry] });
  const gauges = new Map<string, Gauge>(
    Object.entries(EXPORTED_METRICS).map(([name, m]) => [name, new Gauge({ name, help: m.help, labelNames: [...m.labels], registers: [registry] })]),
  );
  const scrapeOnce = async () => {
    const started = performance.now();
    for (const g of gauges.values()) g.reset();
    try {
      const { rows } = await pool.query<MetricRow>('select metric, topic, group_name, bucket, state, value from bucketq.metrics()');
      for (const r of rows) {
        const gauge = gauges.get(r.metric);
        if (!gauge) continue; // a newer schema's metric this package does not know yet
        const labels: Record<string, string> = {};
        for (const l of EXPORTED_METRICS[r.metric as ExportedMetric].labels) {
          const v = l === 'group' ? r.group_name : l === 'bucket' ? r.bucket : l === 'topic' ? r.topic : r.state;
          if (v !== null) labels[l] = String(v);
        }
        gauge.set(labels, r.value);
      }
      up.set(1);
    } catch {
      up.set(0);
    }
    duration.set((performance.now() - started) / 1000);
    return registry.metrics();
  };
  // One scrape at a time, and scrapes that come while one runs share its result: a
  // second must not reset the gauges under the first, and on a backlog of millions (a
  // count of seconds) each scrape Prometheus gave up on would otherwise still queue a
  // call of its own.
  let running: Promise<string> | undefined;
  const scrape = () => {
    running ??= scrapeOnce().finally(() => (running = undefined));
    return running;
  };
  return { registry, scrape };
}

/** Serves GET /metrics and GET /health (200 while the database answers) on host:port. */
export async function startExporter(opts: { pool: pg.Pool; port: number; host: string }): Promise<Exporter> {
  const { registry, scrape } = exporterRegistry(opts.pool);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      scrape().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err)),
      );
    } else if (path === '/health') {
      opts.pool.query('select 1').then(
        () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'),
        (err: unknown) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`database: ${(err as Error).message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.port, host: opts.host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/metrics`,
    port: address.port,
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
