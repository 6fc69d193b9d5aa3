// A tiny terminal table: header, rule, rows; numbers right-aligned, long cells cut,
// control characters in cells shown as escapes.
import { printable } from './terminal-text.js';

export type Cell = string | number | boolean | null | undefined;

export interface TableOptions {
  /** Cells longer than this are cut with an ellipsis. Default 60. */
  maxWidth?: number;
  /** Indent every line by this many spaces. Default 2. */
  indent?: number;
}

export function formatTable(headers: string[], rows: Cell[][], opts: TableOptions = {}): string {
  const maxWidth = opts.maxWidth ?? 60;
  const pad = ' '.repeat(opts.indent ?? 2);
  if (rows.length === 0) return `${pad}(none)`;
  const text = rows.map((r) => headers.map((_, i) => cut(cellText(r[i]), maxWidth)));
  const right = headers.map((_, i) => rows.every((r) => r[i] === null || r[i] === undefined || typeof r[i] === 'number'));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    (pad + cells.map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ')).trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n');
}

function cellText(v: Cell): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : String(v);
  return printable(v.replace(/\s*\n\s*/g, ' '));
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** 0.4s, 12s, 3m04s, 2h05m, 3d04h; '-' for null. */
export function formatAge(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  const neg = seconds < 0 ? '-' : '';
  const s = Math.abs(seconds);
  if (s < 10) return `${neg}${s.toFixed(1)}s`;
  if (s < 60) return `${neg}${Math.floor(s)}s`;
  const two = (n: number) => String(Math.floor(n)).padStart(2, '0');
  if (s < 3600) return `${neg}${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${neg}${Math.floor(s / 3600)}h${two((s % 3600) / 60)}m`;
  return `${neg}${Math.floor(s / 86400)}d${two((s % 86400) / 3600)}h`;
}

/** 512 B, 8.0 kB, 1.2 MB, ... (powers of 1024, as pg_size_pretty). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '-';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** [0,1,2,3,7,9,10] -> "0-3,7,9-10". */
export function formatRanges(ns: number[]): string {
  const sorted = [...ns].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
