// The handler the `bucketq demo` worker processes run (`bucketq worker --handler` this
// file). It "bills" an order by writing one effect row THROUGH ctx.client: that is the
// transaction the ack commits in, so the row exists if and only if the ack committed.
// The table has no unique constraint on msg_id: a message processed twice would show
// up as two rows, and the demo's verification would say so.
import type { ClaimedMessage } from '../queries/consume.js';
import type { HandlerContext } from '../worker/options.js';

/** Created by the demo before the workers start. */
export const DEMO_EFFECTS_TABLE = 'bucketq_demo_effects';

export const DEMO_EFFECTS_DDL = `create table if not exists ${DEMO_EFFECTS_TABLE} (
  id         bigserial primary key,
  group_name text not null,
  msg_id     bigint not null,
  key        text,
  key_seq    bigint,
  worker     text not null,
  at         timestamptz not null default clock_timestamp()
)`;

export default async function demoHandler(message: ClaimedMessage, ctx: HandlerContext): Promise<void> {
  await ctx.client.query(
    `insert into ${DEMO_EFFECTS_TABLE} (group_name, msg_id, key, key_seq, worker) values ($1, $2, $3, $4, $5)`,
    [ctx.group, message.msgId, message.key, message.keySeq, ctx.consumerId],
  );
}

// A demo worker must not outlive the demo that started it (say the demo was killed
// with SIGKILL and could not clean up): when its parent is gone, it exits.
const parentPid = Number(process.env.BUCKETQ_DEMO_PARENT_PID ?? 0);
if (parentPid > 0) {
  setInterval(() => {
    if (process.ppid !== parentPid) process.exit(1);
  }, 1000).unref();
}
