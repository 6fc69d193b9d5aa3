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

/** Warm one connection of `pool`; only speed is at stake, so a failure (fenced already, a lost connection) is logged and forgotten. */
async function warmOne(rt: Runtime, pool: pg.Pool, locked: boolean): Promise<void> {
  let held: HeldConnection;
  try {
    held = await checkout(rt, pool);
  } catch (err) {
    rt.log.debug({ err }, 'connection warm-up could not connect');
    return;
  }
  let broken: Error | undefined;
  try {
    await held.client.query(warmUpSql(rt, (v) => held.client.escapeLiteral(v), locked));
  } catch (err) {
    rt.log.debug({ err }, 'connection warm-up failed');
    await held.client.query('rollback').catch((e: Error) => (broken = e));
  }
  held.release(broken);
}

/**
 * Open and warm the connections claims and batches will use: `concurrency` pool
 * connections (at most MAX_WARMED_CONNECTIONS, and no more than the pool holds), and
 * the claim connection when claims may lease. They are asked for at once, so a pool
 * with room opens one for each; each holds its buckets' cursor rows for a few
 * milliseconds.
 */
export async function warmConnections(rt: Runtime): Promise<void> {
  const locked = mayClaimLocked(rt.opts);
  const leases = !locked || (rt.opts.claimMode ?? 'auto') !== 'lock';
  const poolMax = (rt.pool as unknown as { options: pg.PoolConfig }).options.max ?? 10;
  const n = Math.max(1, Math.min(rt.opts.concurrency, MAX_WARMED_CONNECTIONS, poolMax));
  await Promise.all([
    ...Array.from({ length: n }, () => warmOne(rt, rt.pool, locked)),
    // In 'lock' mode the claim connection only records attempts: connected, nothing to warm.
    leases ? warmOne(rt, rt.claimPool, false) : rt.claimPool.query('select 1'),
  ]);
}
