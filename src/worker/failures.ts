// How the worker classifies what went wrong: a handler's failure is recorded as text
// (the nack's error, the dead letter's last_error); a refused ack is either a lost
// lease or bucket (fencing) or a conflict Postgres asks us to retry.
import { FencedError, StaleLeaseError } from '../errors.js';
import type { ClaimedMessage } from '../queries/consume.js';

/** A message whose handler threw, and what it threw. */
export interface Failure {
  m: ClaimedMessage;
  err: unknown;
}

/** Deadlock or serialization failure: Postgres rolled us back; a retry may succeed. */
export function isRetryableConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** The ack was refused because the lease or the bucket is gone: our effects must roll back. */
export function isFenced(err: unknown): err is StaleLeaseError | FencedError {
  return err instanceof StaleLeaseError || err instanceof FencedError;
}

const MAX_ERROR_TEXT = 4000;

/**
 * The text stored as the message's error (nack) and logged. Never throws: handlers may
 * throw anything, including values String() cannot convert (Object.create(null), a
 * Proxy, an object whose toString throws), and a describe() that throws inside the
 * settle path would fail the whole batch instead of the one message.
 */
export function describe(err: unknown): string {
  for (const attempt of [asText, asJson, asTag]) {
    try {
      const text = attempt(err);
      if (text !== undefined) return text.slice(0, MAX_ERROR_TEXT);
    } catch {
      // try the next, plainer form
    }
  }
  return 'a thrown value that cannot be described';
}

function asText(err: unknown): string | undefined {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

function asJson(err: unknown): string | undefined {
  return JSON.stringify(err);
}

function asTag(err: unknown): string {
  return Object.prototype.toString.call(err);
}

/** What a log line carries under err: the Error itself (pino serializes its type, message and stack), else describe()'s text. */
export function logged(err: unknown): unknown {
  return err instanceof Error ? err : describe(err);
}
