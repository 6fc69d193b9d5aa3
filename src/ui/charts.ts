// Inline SVG and colours for the console: the throughput sparkline and the bucket map's
// two colourings (by owner, by lag). No chart library: a polyline is enough.
import { html, type Html } from './html.js';

/** A small area chart of a series (oldest first), scaled to its own maximum. */
export function sparkline(values: readonly number[], opts: { width?: number; height?: number; label: string }): Html {
  const width = opts.width ?? 160;
  const height = opts.height ?? 32;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const area = `0,${height} ${pts.join(' ')} ${width},${height}`;
  return html`<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${opts.label}">
<title>${opts.label}</title><polygon points="${area}" class="spark-area"/><polyline points="${pts.join(' ')}" class="spark-line"/></svg>`;
}

/** A stable hue per consumer id, so an owner keeps its colour across refreshes and pages. */
export function ownerHue(owner: string): number {
  let h = 2166136261;
  for (let i = 0; i < owner.length; i++) h = Math.imul(h ^ owner.charCodeAt(i), 16777619);
  return (h >>> 0) % 360;
}

export function ownerColour(owner: string | null, live: boolean): string {
  if (owner === null) return '#d9d9d9';
  return live ? `hsl(${ownerHue(owner)} 65% 72%)` : `hsl(${ownerHue(owner)} 15% 80%)`;
}

/** White for nothing pending, to deep red at or above `max` (log scale, so 1 already shows). */
export function lagColour(lag: number, max: number): string {
  if (lag <= 0) return '#f4f8f4';
  const t = Math.min(1, Math.log1p(lag) / Math.log1p(Math.max(max, 10)));
  const light = Math.round(92 - t * 50);
  return `hsl(${Math.round(45 - t * 45)} 90% ${light}%)`;
}
