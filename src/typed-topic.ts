// A topic bound to a zod schema: payloads are checked before anything is sent, so a
// malformed message fails in the producer, not in every consumer.
import type { z } from 'zod';
import type { BucketQ } from './client.js';
import { PayloadValidationError } from './errors.js';
import { formatIssues, type BatchMessage, type SendBatchOptions, type SendOptions } from './options.js';

export class TypedTopic<S extends z.ZodType> {
  constructor(
    private readonly client: BucketQ,
    readonly name: string,
    readonly schema: S,
  ) {}

  /** Validates then sends one message; returns its id. Sends the parsed value (defaults and transforms applied). */
  async send(payload: z.input<S>, options: SendOptions = {}): Promise<string> {
    return this.client.send(this.name, this.validate(payload, 'payload'), options);
  }

  /** Validates every payload, then sends all in one statement; nothing is sent if any is invalid. */
  async sendBatch(messages: readonly BatchMessage<z.input<S>>[], options: SendBatchOptions = {}): Promise<string[]> {
    const checked = messages.map((m, i) => ({ ...m, payload: this.validate(m.payload, `messages[${i}].payload`) }));
    return this.client.sendBatch(this.name, checked, options);
  }

  private validate(payload: unknown, where: string): z.output<S> {
    const result = this.schema.safeParse(payload);
    if (result.success) return result.data;
    const issues = formatIssues(result.error).map((i) => `${where}: ${i}`);
    throw new PayloadValidationError(this.name, `invalid payload for topic '${this.name}':\n${issues.map((i) => `  - ${i}`).join('\n')}`, issues);
  }
}
