// Prometheus metrics for one consumer, on its own registry (never prom-client's global
// one, so several consumers in one process do not clash), and the HTTP server that
// serves them with a readiness probe:
//   GET /metrics  Prometheus text format
//   GET /health   200 {"ready":true,...} (group, topic, owned buckets) once joined; 503 {"ready":false} before joining
//                 and from the moment the consumer starts stopping
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds; fine at the low end where the latency targets are (0.5 ms p50, 2 ms p99). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export class ConsumerMetrics {
  readonly registry = new Registry();
  private readonly labels: { group: string; topic: string };
  private readonly processed: Counter<'group' | 'topic'>;
  private readonly failed: Counter<'group' | 'topic'>;
  private readonly retried: Counter<'group' | 'topic'>;
  private readonly deadLettered: Counter<'group' | 'topic'>;
  private readonly handlerDuration: Histogram<'group' | 'topic'>;
  private readonly endToEnd: Histogram<'group' | 'topic'>;
  private readonly lag: Gauge<'group' | 'topic'>;
  private readonly ownedBuckets: Gauge<'group'>;
  private readonly rebalances: Counter<'group'>;
  private readonly fenced: Counter<'group'>;

  constructor(group: string, topic: string) {
    this.labels = { group, topic };
    const registers = [this.registry];
    const gt = ['group', 'topic'] as const;
    this.processed = new Counter({ name: 'bucketq_messages_processed_total', help: 'Messages handled and acked', labelNames: gt, registers });
    this.failed = new Counter({ name: 'bucketq_messages_failed_total', help: 'Handler failures (each failed attempt, retried or dead-lettered)', labelNames: gt, registers });
    this.retried = new Counter({ name: 'bucketq_messages_retried_total', help: 'Failed attempts scheduled for a retry with backoff', labelNames: gt, registers });
    this.deadLettered = new Counter({ name: 'bucketq_messages_dead_lettered_total', help: 'Messages dead-lettered after their last attempt failed', labelNames: gt, registers });
    this.handlerDuration = new Histogram({
      name: 'bucketq_handler_duration_seconds',
      help: 'Handler run time per message (every attempt, success or failure)',
      labelNames: gt,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.endToEnd = new Histogram({
      name: 'bucketq_end_to_end_latency_seconds',
      help: 'From the message sent_at (database clock) to the start of its first handler attempt (this host clock)',
      labelNames: gt,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.lag = new Gauge({ name: 'bucketq_lag_messages', help: 'Messages pending for the group (not yet acked or dead-lettered), from bucketq.groups, read every heartbeat interval, or ten times as long as the count took if longer (a large backlog)', labelNames: gt, registers });
    this.ownedBuckets = new Gauge({ name: 'bucketq_owned_buckets', help: 'Buckets this consumer owns now', labelNames: ['group'], registers });
    this.rebalances = new Counter({ name: 'bucketq_rebalances_total', help: 'Changes of this consumer\'s bucket ownership (the initial join counts as one)', labelNames: ['group'], registers });
    this.fenced = new Counter({ name: 'bucketq_fenced_total', help: 'Acks refused because the lease or bucket was lost (effects rolled back)', labelNames: ['group'], registers });
    // Series exist from the start (at 0), so rate() and alerts work before the first event.
    for (const c of [this.processed, this.failed, this.retried, this.deadLettered]) c.inc(this.labels, 0);
    this.rebalances.inc({ group }, 0);
    this.fenced.inc({ group }, 0);
    this.ownedBuckets.set({ group }, 0);
  }

  onProcessed(n: number): void {
    if (n > 0) this.processed.inc(this.labels, n);
  }
  onFailed(n: number): void {
    if (n > 0) this.failed.inc(this.labels, n);
  }
  onRetried(): void {
    this.retried.inc(this.labels);
  }
  onDeadLettered(): void {
    this.deadLettered.inc(this.labels);
  }
  onRebalance(): void {
    this.rebalances.inc({ group: this.labels.group });
  }
  onOwned(owned: number): void {
    this.ownedBuckets.set({ group: this.labels.group }, owned);
  }
  onFenced(): void {
    this.fenced.inc({ group: this.labels.group });
  }
  setLag(pending: number): void {
    this.lag.set(this.labels, pending);
  }

  /**
   * Call at handler start; returns the function to call when it ends. The end-to-end
   * latency is recorded for first attempts only: a retry's wait is its backoff.
   */
  handlerStarted(sentAt: Date, attempt: number): () => void {
    if (attempt === 1) this.endToEnd.observe(this.labels, Math.max(0, (Date.now() - sentAt.getTime()) / 1000));
    return this.handlerDuration.startTimer(this.labels);
  }
}

export interface HealthState {
  ready: boolean;
  [k: string]: unknown;
}

/** Serves /metrics and /health on a port; close() when the consumer stops. */
export class MetricsServer {
  private constructor(private readonly server: Server) {}

  static async start(port: number, registry: Registry, health: () => HealthState, host?: string): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/metrics') {
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err)),
        );
      } else if (path === '/health') {
        const state = health();
        res.writeHead(state.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(state));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n');
      }
    });
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new MetricsServer(server);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get host(): string {
    return (this.server.address() as AddressInfo).address;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections(); // idle keep-alive scrapers must not hold stop()
    });
  }
}
