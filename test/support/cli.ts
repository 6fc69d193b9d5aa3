// Running the real `bucketq` CLI in tests: in this process through run() (console output
// captured), or as a child process (node --import tsx src/cli.ts) with its own env and stdin.
import { spawn } from 'node:child_process';
import { expect, vi } from 'vitest';
import { run } from '../../src/cli.js';
import { ROOT } from './private-copy.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** `bucketq ...args --database-url <url()>` in this process. */
export function inProcessCli(url: () => string) {
  async function cli(...args: string[]): Promise<CliResult> {
    const out: string[] = [];
    const err: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.map(String).join(' ')));
    const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.map(String).join(' ')));
    const before = process.exitCode;
    process.exitCode = undefined;
    try {
      await run([...args, '--database-url', url()]);
      return { code: Number(process.exitCode ?? 0), out: out.join('\n'), err: err.join('\n') };
    } finally {
      process.exitCode = before;
      log.mockRestore();
      error.mockRestore();
    }
  }
  /** Exits 0 with nothing on stderr; returns stdout. */
  async function ok(...args: string[]): Promise<string> {
    const r = await cli(...args);
    expect(r, `bucketq ${args.join(' ')}`).toMatchObject({ code: 0, err: '' });
    return r.out;
  }
  /** Exits with `code`; returns stderr. */
  async function fails(code: 1 | 2, ...args: string[]): Promise<string> {
    const r = await cli(...args);
    expect(r.code, `bucketq ${args.join(' ')} should exit ${code}; printed: ${r.out}\n${r.err}`).toBe(code);
    return r.err;
  }
  return { cli, ok, fails };
}

/** `bucketq ...args` as a child process; `input` is written to its stdin. */
export function spawnCli(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; onOutput?: (out: string) => void } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    opts.onOutput?.(out);
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out, err });
    }),
  );
}

/** A long-running `bucketq ...args` child (exporter, ui, tail): its output so far, and its exit. */
export function spawnCliProcess(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; output: string }>((resolve) => child.on('exit', (code) => resolve({ code, output })));
  return { child, output: () => output, exited };
}
