// Handler for `bucketq worker` processes in the scaling and failover workloads.
// BENCH_HANDLER=noop (default): nothing. BENCH_HANDLER=effect: one row in bench_effects
// through ctx.client, the transaction the ack commits in (exactly-once effects).
import type { ClaimedMessage } from '../../src/queries/consume.js';
import type { HandlerContext } from '../../src/worker/options.js';

const mode = process.env.BENCH_HANDLER ?? 'noop';

export default async function benchHandler(m: ClaimedMessage, ctx: HandlerContext): Promise<void> {
  if (mode !== 'effect') return;
  const p = m.payload as { k: string | null; s: number };
  await ctx.client.query('insert into bench_effects (msg_id, k, s, bucket, consumer) values ($1, $2, $3, $4, $5)', [
    m.msgId,
    p.k,
    p.s,
    m.bucket,
    ctx.consumerId,
  ]);
}
