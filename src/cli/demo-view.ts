// What `bucketq demo` shows while it runs: a monitor that reads the group's state from
// the bucketq views a few times a second (who owns which bucket at which epoch, the
// backlog per bucket, acks per worker), notices bucket moves, and a view that draws it:
// redrawn in place on a terminal, or one status line per second with --plain.
import type pg from 'pg';

export interface BucketState {
  bucket: number;
  /** Consumer id of the owner, null while released. */
  owner: string | null;
  epoch: string;
  /** false once the owner's heartbeat is older than the session timeout. */
  live: boolean;
  /** Unfinished messages: ready, leased, delayed, waiting behind their key. */
  backlog: number;
  leased: number;
}

export interface Snapshot {
  /** ms since the demo started */
  t: number;
  buckets: BucketState[];
  acked: number;
  ackedBy: Map<string, number>;
  /** Delivery records with attempt > 1: delivered again after a crash. */
  redelivered: number;
  leasedBy: Map<string, number>;
}

export type WorkerStatus = 'starting' | 'running' | 'killed' | 'stopping' | 'stopped' | 'exited';

export interface WorkerInfo {
  id: string;
  pid: number | undefined;
  status: WorkerStatus;
}

export interface Progress {
  sent: number;
  target: number;
  workers: WorkerInfo[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads the group's state from the views; one call is one snapshot. */
export async function takeSnapshot(pool: pg.Pool, group: string, t: number): Promise<Snapshot> {
  const [buckets, deliveries, consumers] = await Promise.all([
    pool.query<{ bucket: number; owner: string | null; epoch: string | null; live: boolean | null; backlog: number; leased: number }>(
      `select l.bucket, b.owner, b.epoch::text as epoch, b.owned as live,
              (l.ready + l.leased + l.delayed + l.waiting + l.dead_blocking)::int as backlog, l.leased::int as leased
         from bucketq.lag l
         left join bucketq.buckets b on b.group_name = l.group_name and b.bucket = l.bucket
        where l.group_name = $1
        order by l.bucket`,
      [group],
    ),
    pool.query<{ consumer_id: string | null; n: number; again: number }>(
      `select d.consumer_id, count(*)::int as n, count(*) filter (where d.attempt > 1)::int as again
         from bucketq.deliveries d
        where d.group_name = $1
        group by d.consumer_id`,
      [group],
    ),
    pool.query<{ consumer_id: string; leased: number }>(
      'select consumer_id, leased::int as leased from bucketq.consumers where group_name = $1',
      [group],
    ),
  ]);
  const ackedBy = new Map<string, number>();
  let acked = 0;
  let redelivered = 0;
  for (const r of deliveries.rows) {
    acked += r.n;
    redelivered += r.again;
    if (r.consumer_id !== null) ackedBy.set(r.consumer_id, r.n);
  }
  return {
    t,
    buckets: buckets.rows.map((r) => ({
      bucket: r.bucket,
      owner: r.owner,
      epoch: r.epoch ?? '0',
      live: r.live === true,
      backlog: r.backlog,
      leased: r.leased,
    })),
    acked,
    ackedBy,
    redelivered,
    leasedBy: new Map(consumers.rows.map((r) => [r.consumer_id, r.leased])),
  };
}

/**
 * Polls the group every `intervalMs`, reports bucket moves as events and hands each
 * snapshot to the view. `until` waits for a snapshot that satisfies a condition.
 */
export class Monitor {
  latest: Snapshot | undefined;
  private prev: Snapshot | undefined;
  private running = true;
  private loop: Promise<void> | undefined;
  private waiters: { pred: (s: Snapshot) => boolean; resolve: (s: Snapshot) => void }[] = [];
  /** Throughput over the last second or so, from the ack counts of recent snapshots. */
  private history: { t: number; acked: number }[] = [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly group: string,
    private readonly view: View,
    private readonly progress: () => Progress,
    private readonly started: number,
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (this.running) {
        const t0 = performance.now();
        await this.tick();
        await sleep(Math.max(20, this.intervalMs - (performance.now() - t0)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Takes one snapshot now (also used for the final picture). */
  async tick(): Promise<Snapshot | undefined> {
    let s: Snapshot;
    try {
      s = await takeSnapshot(this.pool, this.group, performance.now() - this.started);
    } catch {
      return undefined; // a busy moment or a dropped connection: the next tick tries again
    }
    this.report(s);
    this.latest = s;
    this.history.push({ t: s.t, acked: s.acked });
    while (this.history.length > 2 && s.t - this.history[1]!.t >= 1000) this.history.shift();
    this.view.update(s, this.progress(), this.throughput());
    for (const w of this.waiters.splice(0)) {
      if (w.pred(s)) w.resolve(s);
      else this.waiters.push(w);
    }
    return s;
  }

  throughput(): number {
    const first = this.history[0];
    const last = this.history.at(-1);
    if (!first || !last || last.t - first.t < 200) return 0;
    return ((last.acked - first.acked) * 1000) / (last.t - first.t);
  }

  /** Resolves with the first snapshot (from now on) for which `pred` holds; rejects after timeoutMs. */
  until(what: string, pred: (s: Snapshot) => boolean, timeoutMs: number): Promise<Snapshot> {
    if (this.latest && pred(this.latest)) return Promise.resolve(this.latest);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}`));
      }, timeoutMs);
      const waiter = {
        pred,
        resolve: (s: Snapshot) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Bucket moves since the previous snapshot, as event lines. */
  private report(s: Snapshot): void {
    const prev = this.prev;
    this.prev = s;
    if (!prev) return;
    const moves = new Map<string, { from: string | null; to: string | null; buckets: BucketState[] }>();
    const expired = new Map<string, number[]>();
    for (const b of s.buckets) {
      const before = prev.buckets[b.bucket];
      if (!before) continue;
      if (before.epoch !== b.epoch) {
        const k = `${before.owner}>${b.owner}`;
        const m = moves.get(k) ?? { from: before.owner, to: b.owner, buckets: [] };
        m.buckets.push(b);
        moves.set(k, m);
      } else if (before.live && !b.live && b.owner !== null) {
        expired.set(b.owner, [...(expired.get(b.owner) ?? []), b.bucket]);
      }
    }
    for (const [owner, buckets] of expired) {
      this.view.event(s.t, `${owner}'s heartbeat is older than the session timeout: its buckets ${buckets.join(' ')} are up for grabs`);
    }
    for (const m of moves.values()) {
      const list = m.buckets.map((b) => (m.to === null ? String(b.bucket) : `${b.bucket}@${b.epoch}`)).join(' ');
      if (m.to === null) this.view.event(s.t, `${m.from} released bucket${plural(m.buckets)} ${list} (to be taken by a worker with fewer)`);
      else if (m.from === null) this.view.event(s.t, `${m.to} took bucket${plural(m.buckets)} ${list}  (bucket@epoch)`);
      else this.view.event(s.t, `bucket${plural(m.buckets)} moved ${m.from} → ${m.to}: ${list}  (bucket@new epoch)`);
    }
  }
}

const plural = (xs: unknown[]) => (xs.length === 1 ? '' : 's');

// ---------------------------------------------------------------------------------

const COLORS = [36, 35, 33, 32, 34, 31]; // cyan, magenta, yellow, green, blue, red
const BARS = ' ▁▂▃▄▅▆▇█';

/**
 * Live mode (a terminal): a frame at the bottom is redrawn in place; events and phase
 * captions scroll above it. Plain mode: events and captions as they come, plus one
 * status line per second.
 */
export class View {
  private frameLines = 0;
  private lastPlain = -Infinity;
  private last: { s: Snapshot; p: Progress; rate: number } | undefined;
  private readonly color: boolean;
  private readonly workerColor = new Map<string, number>();
  private closed = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    readonly live: boolean,
  ) {
    this.color = live && !process.env.NO_COLOR;
    if (live) this.out.write('\x1b[?25l'); // hide the cursor while redrawing
  }

  /** A line that stays (not part of the live frame). */
  line(text = ''): void {
    this.clearFrame();
    this.out.write(`${text}\n`);
    this.drawFrame();
  }

  phase(step: number, steps: number, title: string, caption: string[]): void {
    this.line();
    this.line(this.paint(`[${step}/${steps}] ${title}`, 1));
    for (const c of caption) this.line(this.paint(`      ${c}`, 2));
  }

  event(tMs: number, text: string): void {
    this.line(`  ${this.paint(stamp(tMs), 2)}  ${text}`);
  }

  update(s: Snapshot, p: Progress, rate: number): void {
    this.last = { s, p, rate };
    if (this.live) {
      this.clearFrame();
      this.drawFrame();
    } else if (s.t - this.lastPlain >= 1000) {
      this.lastPlain = s.t;
      this.out.write(`${this.plainStatus(s, p, rate)}\n`);
    }
  }

  /** Ends live drawing: the last picture stays on screen (as a last status line with --plain). */
  finish(): void {
    if (this.closed || !this.last) return this.close();
    const { s, p, rate } = this.last;
    this.close();
    if (this.live) this.out.write(`${this.frame(s, p, rate).join('\n')}\n`);
    else if (s.t > this.lastPlain) this.out.write(`${this.plainStatus(s, p, rate)}\n`);
  }

  /** Removes the live frame and restores the cursor. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.live) return;
    this.clearFrame();
    this.out.write('\x1b[?25h');
  }

  private clearFrame(): void {
    if (!this.live || this.frameLines === 0) return;
    this.out.write(`\x1b[${this.frameLines}F\x1b[J`);
    this.frameLines = 0;
  }

  private drawFrame(): void {
    if (!this.live || !this.last || this.closed) return;
    const lines = this.frame(this.last.s, this.last.p, this.last.rate);
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const fitted = lines.map((l) => (visible(l).length > width ? visible(l).slice(0, width) : l));
    this.out.write(`${fitted.join('\n')}\n`);
    this.frameLines = fitted.length;
  }

  private paint(text: string, code: number): string {
    return this.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  private colorOf(worker: string): number {
    let c = this.workerColor.get(worker);
    if (c === undefined) {
      c = COLORS[this.workerColor.size % COLORS.length]!;
      this.workerColor.set(worker, c);
    }
    return c;
  }

  private frame(s: Snapshot, p: Progress, rate: number): string[] {
    const backlog = s.buckets.reduce((a, b) => a + b.backlog, 0);
    const max = Math.max(20, ...s.buckets.map((b) => b.backlog));
    const cell = (text: string) => text.padStart(4);
    const row = (label: string, cells: string[]) => `  ${label.padEnd(8)}${cells.join('')}`;
    const lines = [
      '',
      `  ${stamp(s.t)}   sent ${n(p.sent)} / ${n(p.target)}   acked ${n(s.acked)}   ${n(Math.round(rate))} msg/s   backlog ${n(backlog)}`,
      row('bucket', s.buckets.map((b) => cell(String(b.bucket)))),
      row(
        'owner',
        s.buckets.map((b) => {
          if (b.owner === null) return cell('--');
          const text = cell(b.live ? b.owner : `${b.owner}?`);
          return b.live ? this.paint(text, this.colorOf(b.owner)) : this.paint(text, 2);
        }),
      ),
      row('epoch', s.buckets.map((b) => cell(b.epoch))),
      row('backlog', s.buckets.map((b) => cell(short(b.backlog)))),
      row('', s.buckets.map((b) => cell(BARS[Math.min(8, Math.ceil((8 * b.backlog) / max))]!.repeat(2)))),
    ];
    for (const w of p.workers) {
      const owned = s.buckets.filter((b) => b.owner === w.id && b.live);
      const id = this.paint(w.id.padEnd(4), this.colorOf(w.id));
      const status = w.status === 'killed' ? this.paint('KILLED'.padEnd(8), 31) : w.status.padEnd(8);
      const epochs = owned.map((b) => `${b.bucket}@${b.epoch}`).join(' ');
      lines.push(
        `  ${id} pid ${String(w.pid ?? '-').padEnd(7)} ${status} acked ${n(s.ackedBy.get(w.id) ?? 0).padStart(6)}  ${String(owned.length).padStart(2)} buckets ${epochs}`,
      );
    }
    return lines;
  }

  private plainStatus(s: Snapshot, p: Progress, rate: number): string {
    const backlog = s.buckets.reduce((a, b) => a + b.backlog, 0);
    const owners = p.workers
      .filter((w) => w.status !== 'exited' && w.status !== 'stopped')
      .map((w) => {
        const owned = s.buckets.filter((b) => b.owner === w.id && b.live).map((b) => b.bucket);
        return `${w.id}${w.status === 'killed' ? '(killed)' : ''}:${owned.length ? ranges(owned) : '-'}`;
      })
      .join(' ');
    return (
      `  ${stamp(s.t)}  sent ${p.sent}/${p.target}  acked ${s.acked}  ${Math.round(rate)} msg/s  backlog ${backlog}` +
      `  lag/bucket ${s.buckets.map((b) => b.backlog).join(',')}  owners ${owners}`
    );
  }
}

function stamp(ms: number): string {
  return `${(ms / 1000).toFixed(1).padStart(5)}s`;
}

export function n(value: number): string {
  return value.toLocaleString('en-US');
}

function short(v: number): string {
  if (v < 1000) return String(v);
  if (v < 10_000) return `${(v / 1000).toFixed(1)}k`;
  return `${Math.round(v / 1000)}k`;
}

/** 0 1 2 3 7 9 10 → "0-3,7,9-10" */
export function ranges(xs: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    parts.push(j > i ? `${xs[i]}-${xs[j]}` : String(xs[i]));
    i = j + 1;
  }
  return parts.join(',');
}

function visible(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}
