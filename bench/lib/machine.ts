// What the whole machine did over an interval, from Linux's /proc: CPU busy and stolen
// (by the hypervisor: a VM's neighbours) as shares of all cores, and CPU pressure (the
// share of time some runnable task waited for a core, /proc/pressure/cpu). The soaks
// print them per interval, so that a slow minute can be told apart: more steal is the
// host's neighbours; less busy time is waiting (I/O, locks); as busy, no more steal, is
// work. (Pressure rises with our own load too: at full speed on two cores, producers,
// workers and Postgres always have a task waiting.)
// null where /proc does not say (another OS, a kernel without PSI).
import { readdirSync, readFileSync } from 'node:fs';
import { round } from './common.js';

/**
 * CPU ticks (user + system, the unit of /proc/stat) used so far by the processes that
 * matter here, by kind: Postgres's client backends, its autovacuum, checkpointer, WAL
 * writer, background writer and I/O workers (Postgres 18), the rest of Postgres, and
 * this process (the bench: producers and in-process workers). A process that exits
 * between two samples (an autovacuum worker) takes the ticks it used since the first
 * with it.
 */
function processTicks(): Record<string, number> {
  const out: Record<string, number> = {};
  const add = (kind: string, ticks: number) => (out[kind] = (out[kind] ?? 0) + ticks);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (!cmd.startsWith('postgres') && !/\/postgres\b/.test(cmd.split(' ')[0] ?? '')) continue;
      // After the command's name: utime and stime are fields 14 and 15.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]);
      const kind = /^postgres: (autovacuum|checkpointer|walwriter|background writer|io worker)/.exec(cmd)?.[1]
        ?? (/^postgres: \S+ \S+ /.test(cmd) ? 'backends' : 'other postgres');
      add(kind, ticks);
    } catch {
      // gone since the listing
    }
  }
  const self = process.cpuUsage();
  add('bench process', ((self.user + self.system) / 1e6) * 100); // µs to ticks (USER_HZ 100)
  return out;
}

export interface CpuSample {
  /** jiffies: busy (user, nice, system, irq, softirq), steal, and all of them */
  busy: number;
  steal: number;
  total: number;
  /** µs some task waited for a CPU since boot; null without PSI */
  pressureUs: number | null;
  atMs: number;
  processes: Record<string, number>;
}

export interface MachineInterval {
  /** Share of all cores busy, stolen, and time some task waited for a core, in % */
  busyPct: number;
  stealPct: number;
  pressurePct: number | null;
  /** Share of all cores each kind of process used (processTicks), in % */
  processesPct: Record<string, number>;
}

export function cpuSample(): CpuSample | null {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is counted in user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpu;
    let pressureUs: number | null = null;
    try {
      const some = readFileSync('/proc/pressure/cpu', 'utf8').split('\n').find((l) => l.startsWith('some'));
      const total = some?.match(/total=(\d+)/)?.[1];
      pressureUs = total === undefined ? null : Number(total);
    } catch {
      pressureUs = null;
    }
    const busy = user + nice + system + irq + softirq;
    return { busy, steal, total: busy + idle + iowait + steal, pressureUs, atMs: performance.now(), processes: processTicks() };
  } catch {
    return null;
  }
}

export function machineBetween(a: CpuSample | null, b: CpuSample | null): MachineInterval | null {
  if (!a || !b || b.total <= a.total) return null;
  const total = b.total - a.total;
  const ms = b.atMs - a.atMs;
  return {
    busyPct: round(((b.busy - a.busy) / total) * 100, 1),
    stealPct: round(((b.steal - a.steal) / total) * 100, 1),
    pressurePct: a.pressureUs === null || b.pressureUs === null || ms <= 0 ? null : round(((b.pressureUs - a.pressureUs) / 1000 / ms) * 100, 1),
    processesPct: Object.fromEntries(
      Object.entries(b.processes).map(([k, t]) => [k, round((Math.max(0, t - (a.processes[k] ?? 0)) / total) * 100, 1)]),
    ),
  };
}
