// Connections warmed before the first batch. A new backend's first claim and ack cost
// 40 to 85 ms (catalog caches, PL/pgSQL compilation, first plans: more with more daily
// partitions) against 4 to 7 ms for the next ones; a consumer that starts on a backlog,
// or a burst, paid that on every connection while the messages waited. Each connection
// the consumer will use claims one message and acks it in a transaction that rolls
// back: the backend has run every statement of the path, and nothing happened.
import type pg from 'pg';
import { mayClaimLocked } from './claim-loop.js';
import { checkout, type HeldConnection } from './connection.js';
import type { Runtime } from './runtime.js';

/** Marks the warm-up's statements in pg_stat_activity. */
export const WARM_UP_TAG = '/* bucketq warm-up */';

/** At most this many pool connections are opened and warmed at start (concurrency beyond it warms on first use). */
export const MAX_WARMED_CONNECTIONS = 16;

function warmUpSql(rt: Runtime, lit: (v: string) => string, locked: boolean): string {
  const g = lit(rt.group);
  const c = lit(rt.consumerId);
  const claim = locked
    ? `bucketq.claim_locked(${g}, ${c}, max_messages => 1, max_per_key => 1)`
    : `bucketq.claim(${g}, ${c}, max_messages => 1, max_per_key => 1)`;
  const tokens = locked ? 'null::bigint[]' : 'm.tokens';
  // With nothing to claim, the ack of an id that does not exist still runs most of
  // ack (strict => false: it reports the id instead of raising).
  return (
    `${WARM_UP_TAG} begin isolation level read committed; ` +
    `select count(*) from (select array_agg(msg_id) as ids${locked ? '' : ', array_agg(lease_token) as tokens'} from ${claim}) m ` +
    `cross join lateral bucketq.ack(${g}, coalesce(m.ids, '{0}'), ${tokens}, ${c}, strict => false); ` +
    `${WARM_UP_TAG} rollback`
  );
}

/**
 * Warm one connection of `pool` and hand it back still checked out (undefined if it
 * failed: only speed is at stake, so a failure, fenced already or a lost connection, is
 * logged and forgotten).
 */
async function warmHeld(rt: Runtime, pool: pg.Pool, locked: boolean): Promise<HeldConnection | undefined> {
  let held: HeldConnection;
  try {
    held = await checkout(rt, pool);
  } catch (err) {
    rt.log.debug({ err }, 'connection warm-up could not connect');
    return undefined;
  }
  try {
    await held.client.query(warmUpSql(rt, (v) => held.client.escapeLiteral(v), locked));
    return held;
  } catch (err) {
    rt.log.debug({ err }, 'connection warm-up failed');
    let broken: Error | undefined;
    await held.client.query('rollback').catch((e: Error) => (broken = e));
    held.release(broken);
    return undefined;
  }
}

async function warmOne(rt: Runtime, pool: pg.Pool, locked: boolean): Promise<void> {
  (await warmHeld(rt, pool, locked))?.release();
}

/**
 * Open and warm the connections claims and batches will use: `concurrency` pool
 * connections (at most MAX_WARMED_CONNECTIONS, and no more than the pool holds), and
 * the claim connection when claims may lease. Each holds its buckets' cursor rows for a
 * few milliseconds.
 *
 * Resolves once the connections the first claim and its batch need are warm (the claim
 * connection and one pool connection, warmed side by side), with a promise per other
 * pool connection, resolved when it is warm and back in the pool. Waiting for all of
 * them held a consumer's first message back by all their cold starts at once (on 2
 * cores, some 250 ms for a consumer of concurrency 4). The others are asked for while
 * the first pool connection is still held, so the pool opens a new connection for each
 * rather than warming the warm one again; the claim loop runs no more batches at once
 * than there are warm connections until they are done (ClaimLoop.allow), or the pool
 * would open cold ones beside those being warmed.
 */
export async function warmConnections(rt: Runtime): Promise<{ others: Promise<void>[] }> {
  const locked = mayClaimLocked(rt.opts);
  const leases = !locked || (rt.opts.claimMode ?? 'auto') !== 'lock';
  const poolMax = (rt.pool as unknown as { options: pg.PoolConfig }).options.max ?? 10;
  const n = Math.max(1, Math.min(rt.opts.concurrency, MAX_WARMED_CONNECTIONS, poolMax));
  const [warmed, claimConnection] = await Promise.allSettled([
    warmHeld(rt, rt.pool, locked),
    // In 'lock' mode the claim connection only records attempts: connected, nothing to warm.
    leases ? warmOne(rt, rt.claimPool, false) : rt.claimPool.query('select 1'),
  ]);
  const first = warmed.status === 'fulfilled' ? warmed.value : undefined;
  if (claimConnection.status === 'rejected') {
    first?.release(); // or the pool's end waits for it forever
    throw claimConnection.reason;
  }
  const others = Array.from({ length: n - 1 }, () => warmOne(rt, rt.pool, locked));
  first?.release();
  return { others };
}
