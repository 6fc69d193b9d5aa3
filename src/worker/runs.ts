// Runs: a claim may hand out consecutive messages of one key together (see claim's
// max_per_key). They must be handled in order and acked in order; unkeyed messages
// have no order to keep, so each is a run of its own.
import type { ClaimedMessage } from '../queries/consume.js';

/** Consecutive messages of one key (a claimed run) together; unkeyed ones alone. */
export function runsOf(messages: ClaimedMessage[]): ClaimedMessage[][] {
  const runs: ClaimedMessage[][] = [];
  for (const m of messages) {
    const last = runs.at(-1);
    if (m.key !== null && last !== undefined && last[0]!.key === m.key) last.push(m);
    else runs.push([m]);
  }
  return runs;
}
