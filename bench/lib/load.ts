// Producers at full speed for the e2e and soak workloads: keyed batches (bucketq keyed,
// graphile-worker plain jobs, as everywhere; `unkeyed`: no keys for bucketq either),
// optionally held back while the backlog
// (sent and not yet completed) is at `maxBacklog`.
import { keyedMessages, sleep, throughputKey, type RunContext, type Subject } from './common.js';
import type { QueueSystem } from '../systems/types.js';

export interface Producers {
  readonly sent: number;
  /** Milliseconds the producers spent held back by maxBacklog. */
  readonly heldMs: number;
  stop(): Promise<void>;
}

export function startProducers(
  sys: QueueSystem,
  subject: Subject,
  ctx: RunContext,
  o: { producers: number; batch: number; maxBacklog?: number; completed?: () => number; unkeyed?: boolean },
): Producers {
  let running = true;
  let sent = 0;
  let heldMs = 0;
  const loops = Array.from({ length: o.producers }, async (_, p) => {
    let offset = p * 7919;
    while (running) {
      if (o.maxBacklog !== undefined && o.completed && sent - o.completed() >= o.maxBacklog) {
        await sleep(5);
        heldMs += 5;
        continue;
      }
      const batch = keyedMessages(o.batch, ctx.sizes.keys, offset).map((m) => ({ ...m, key: o.unkeyed ? null : throughputKey(subject, m.key) }));
      offset += o.batch;
      await sys.sendBatch(batch);
      sent += batch.length;
    }
  });
  return {
    get sent() {
      return sent;
    },
    get heldMs() {
      return heldMs;
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}
