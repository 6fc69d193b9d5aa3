// Numbers, ages, sizes and times as the console shows them: ages and sizes as
// `bucketq status` prints them, so the two read alike.
export { formatAge as age, formatBytes as bytes } from '../cli/table.js';

export function time(d: Date | null | undefined): string {
  return d ? d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–';
}

export function json(value: unknown): string {
  return value === null || value === undefined ? '–' : JSON.stringify(value, null, 2);
}

export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
