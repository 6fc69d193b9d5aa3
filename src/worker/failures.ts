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

/** The text stored as the message's error (nack) and logged. */
export function describe(err: unknown): string {
  if (err instanceof Error) return (err.stack ?? `${err.name}: ${err.message}`).slice(0, 4000);
  return String(err).slice(0, 4000);
}
