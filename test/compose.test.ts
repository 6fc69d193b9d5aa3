// docker-compose.yml and the monitoring files beside it. CI has no Docker engine, so
// the file is checked as data (always) and, wherever a compose is installed, by
// `compose config`, which parses and validates it without an engine. The alert rules
// and the Grafana dashboards may only use metrics a worker or the exporter really exports.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EXPORTED_METRICS } from '../src/exporter.js';
import { ConsumerMetrics } from '../src/worker/metrics.js';
import { ROOT } from './support/private-copy.js';

type Service = {
  image?: string;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  profiles?: string[];
  stop_grace_period?: string;
  healthcheck?: { test: string[] };
};

const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;
const worker = services.worker!;

function findCompose(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) return cmd;
  }
  return undefined;
}
const composeCmd = findCompose();
if (!composeCmd) console.log('compose.test.ts: no docker compose or docker-compose installed: `compose config` checks skipped');

/** `compose config` (normalised: anchors merged, variables filled in) as data. */
function composeConfig(): { services: Record<string, Service> } {
  const r = spawnSync(composeCmd![0]!, [...composeCmd!.slice(1), '-f', 'docker-compose.yml', 'config'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).not.toMatch(/invalid|error/i);
  expect(r.status).toBe(0);
  return parse(r.stdout) as { services: Record<string, Service> };
}

/** The default of a ${VAR:-default} reference, or the text itself. */
const withDefaults = (s: string) => s.replace(/\$\{\w+:-([^}]*)\}/g, '$1');
const seconds = (d: string) => Number(/^(\d+)s$/.exec(d)?.[1] ?? NaN);
const words = (c: string | string[] | undefined) => (Array.isArray(c) ? c.join(' ') : (c ?? ''));

describe('docker-compose.yml', () => {
  it.skipIf(!composeCmd)('is accepted by `compose config`, with prometheus and grafana in the monitoring profile only', () => {
    const normalised = composeConfig().services;
    expect(Object.keys(normalised).sort()).toEqual(['exporter', 'grafana', 'migrate', 'postgres', 'producer', 'prometheus', 'worker']);
    for (const name of ['prometheus', 'grafana', 'exporter']) expect(normalised[name]!.profiles).toEqual(['monitoring']);
    for (const name of ['postgres', 'migrate', 'producer', 'worker']) expect(normalised[name]!.profiles).toBeUndefined();
    expect(normalised.worker!.stop_grace_period).toBe(worker.stop_grace_period);
  });

  it('installs nothing into the host checkout: the node services run a built image and mount no host directory', () => {
    for (const [name, s] of Object.entries(services)) {
      expect(`${words(s.command)} ${words(s.entrypoint)}`, name).not.toMatch(/npm (ci|install|i)\b/);
      for (const v of s.volumes ?? []) expect(v, `${name} mounts the checkout`).not.toMatch(/^\.\/?:/);
    }
    expect(services.migrate!.build).toBe('.');
    expect(worker.build).toBe('.');
    expect(read('Dockerfile')).toMatch(/RUN npm ci/);
    expect(read('.dockerignore')).toMatch(/^node_modules$/m);
  });

  it('publishes Postgres on a host port other than 5432, so a local Postgres keeps its port', () => {
    const [host, container] = withDefaults(services.postgres!.ports![0]!).split(':');
    expect(container).toBe('5432');
    expect(host).not.toBe('5432');
    expect(services.postgres!.ports![0]).toMatch(/^\$\{BUCKETQ_PG_PORT:-\d+\}:5432$/);
  });

  it('gives the worker a stop_grace_period above its stop timeout, and a healthcheck on /health', () => {
    const stopTimeoutS = Number(worker.environment!.BUCKETQ_STOP_TIMEOUT_MS) / 1000;
    expect(stopTimeoutS).toBeGreaterThan(0);
    expect(seconds(worker.stop_grace_period!)).toBeGreaterThan(stopTimeoutS + 5);
    const port = worker.environment!.BUCKETQ_METRICS_PORT;
    expect(worker.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${port}/health`);
    // exec form, no shell in between: the worker is PID 1 and gets Docker's SIGTERM itself
    expect(Array.isArray(worker.command)).toBe(true);
    expect(read('Dockerfile')).toMatch(/^ENTRYPOINT \["node", "bin\/bucketq.js"\]$/m);
  });

  it('runs prometheus and grafana only in the monitoring profile, with files that exist in the repo', () => {
    for (const name of ['prometheus', 'grafana']) {
      expect(services[name]!.profiles).toEqual(['monitoring']);
      for (const v of services[name]!.volumes!) expect(existsSync(path.join(ROOT, v.split(':')[0]!)), v).toBe(true);
    }
    for (const name of ['postgres', 'migrate', 'producer', 'worker']) expect(services[name]!.profiles).toBeUndefined();
  });
});

describe('monitoring/', () => {
  const exported = new Set(
    new ConsumerMetrics('g', 't').registry.getMetricsAsArray().flatMap((m) => {
      const name = m.name;
      return (m as unknown as { type: string }).type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
    }),
  );
  // What `bucketq exporter` serves besides process metrics: bucketq.metrics() and its own two.
  const fromExporter = new Set([...Object.keys(EXPORTED_METRICS), 'bucketq_up', 'bucketq_scrape_duration_seconds']);
  const metricsIn = (expr: string) => [...expr.matchAll(/\bbucketq_[a-z_]+/g)].map((m) => m[0]);

  const prometheus = parse(read('monitoring/prometheus.yml')) as {
    rule_files: string[];
    scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[]; static_configs?: { targets: string[] }[] }[];
  };
  const rules = (parse(read('monitoring/alerts.yml')) as { groups: { rules: Record<string, unknown>[] }[] }).groups.flatMap((g) => g.rules);
  const dashboard = JSON.parse(read('monitoring/grafana/dashboards/bucketq.json')) as { uid: string; panels: { title: string; targets: { expr: string }[] }[] };

  it('prometheus scrapes the worker service on its metrics port and loads the mounted alert rules', () => {
    const job = prometheus.scrape_configs.find((j) => j.job_name === 'bucketq-worker')!;
    expect(job.dns_sd_configs![0]!.names).toEqual(['worker']);
    expect(String(job.dns_sd_configs![0]!.port)).toBe(worker.environment!.BUCKETQ_METRICS_PORT);
    const exporterJob = prometheus.scrape_configs.find((j) => j.job_name === 'bucketq-exporter')!;
    const command = services.exporter!.command as string[];
    expect(exporterJob.static_configs![0]!.targets).toEqual([`exporter:${command[command.indexOf('--port') + 1]}`]);
    expect(command).toEqual(expect.arrayContaining(['exporter', '--host', '0.0.0.0']));
    expect(services.exporter!.profiles).toEqual(['monitoring']);
    const mounted = services.prometheus!.volumes!.map((v) => v.split(':')[1]);
    for (const f of prometheus.rule_files) expect(mounted).toContain(f);
  });

  it('every alert rule is complete and uses only metrics the worker or the exporter exports', () => {
    expect(rules.length).toBeGreaterThanOrEqual(5);
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Bucketq\w+$/);
      expect((r.labels as { severity: string }).severity).toMatch(/^(critical|warning|info)$/);
      expect((r.annotations as { summary: string }).summary).toBeTruthy();
      for (const m of metricsIn(r.expr as string)) expect([...exported, ...fromExporter], `${r.alert as string}: ${m}`).toContain(m);
    }
  });

  it('every dashboard panel queries only metrics the worker exports, from the provisioned data source', () => {
    const datasourceUid = (parse(read('monitoring/grafana/provisioning/datasources/prometheus.yml')) as { datasources: { uid: string }[] }).datasources[0]!.uid;
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(6);
    const used = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets as { expr: string; datasource: { uid: string } }[]) {
        expect(t.datasource.uid).toBe(datasourceUid);
        for (const m of metricsIn(t.expr)) {
          expect(exported, `${p.title}: ${m}`).toContain(m);
          used.add(m.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    }
    // Every metric the worker exports has a panel.
    for (const m of exported) expect(used, `no panel shows ${m}`).toContain(m.replace(/_(bucket|sum|count)$/, ''));
  });

  it('the queue dashboard queries only what the exporter serves, and shows all of it', () => {
    const queue = JSON.parse(read('monitoring/grafana/dashboards/bucketq-queue.json')) as { uid: string; panels: { title: string; targets: { expr: string; datasource: { uid: string } }[] }[] };
    expect(queue.uid).not.toBe(dashboard.uid);
    const used = new Set<string>();
    for (const p of queue.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) {
        expect(t.datasource.uid).toBe('prometheus');
        for (const m of metricsIn(t.expr)) {
          expect(fromExporter, `${p.title}: ${m}`).toContain(m);
          used.add(m);
        }
      }
    }
    for (const m of fromExporter) expect(used, `no panel shows ${m}`).toContain(m);
    // Some alert uses the exporter's metrics (they work with no worker running).
    expect(rules.some((r) => metricsIn(r.expr as string).some((m) => fromExporter.has(m) && !exported.has(m)))).toBe(true);
  });
});
