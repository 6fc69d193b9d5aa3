// Retry delays with jitter. bucketq.nack computes the group's exponential backoff
// (backoff_base * 2^(attempt-1), at most backoff_max) without jitter, and every message
// of one nack gets the same retry time: a batch that failed together (a dependency
// down) would come back together, again and again. The worker passes each message its
// own delay instead: the same backoff, scattered over its upper half ("equal jitter"),
// so no retry comes later than the group's backoff says, nor sooner than half of it.
import type { GroupSettings } from '../queries/lobby.js';

/** A retry delay for this attempt (1 = the first delivery failed), as a Postgres interval. */
export function jitteredRetryDelay(settings: Pick<GroupSettings, 'backoffBaseMs' | 'backoffMaxMs'>, attempt: number, random: () => number = Math.random): string {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const full = Math.min(settings.backoffMaxMs, settings.backoffBaseMs * 2 ** exponent);
  const ms = full / 2 + (random() * full) / 2;
  return `${ms.toFixed(3)} milliseconds`;
}
