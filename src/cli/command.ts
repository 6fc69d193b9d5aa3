// What every command shares on top of commander: the database option's value, the exit
// code an action returns, and options declared once with their environment variable.
import { Option, type Command } from 'commander';

let exitCode = 0;

/** Wraps an action that returns its exit code; main() reads it with takeExitCode(). */
export function runs<A extends unknown[]>(fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    exitCode = await fn(...args);
  };
}

/** The exit code of the last action, reset for the next run. */
export function takeExitCode(): number {
  const code = exitCode;
  exitCode = 0;
  return code;
}

/** --database-url (global: accepted before or after the command), falling back to DATABASE_URL, then the PG* variables. */
export function databaseUrl(cmd: Command): string | undefined {
  return (cmd.optsWithGlobals() as { databaseUrl?: string }).databaseUrl;
}

/** An option taking a value, optionally read from an environment variable when not given. */
export function opt(flags: string, description: string, env?: string): Option {
  const o = new Option(flags, description);
  return env ? o.env(env) : o;
}

/** "1 message", "2 messages". */
export const plural = (n: number | string, word: string) => `${n} ${word}${Number(n) === 1 ? '' : 's'}`;
