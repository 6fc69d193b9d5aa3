// A topic bound to a zod schema: payloads are checked before anything is sent, so a
// malformed message fails in the producer, not in every consumer; and checked again on
// receive, so a handler gets the schema's output type and never a payload that does not
// match it (one sent from SQL or another language, or under an older schema).
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { BucketQ, TypedConsumeOptions } from './client.js';
import { ConfigError, PayloadValidationError } from './errors.js';
import { formatIssues, type BatchMessage, type SendBatchOptions, type SendOptions } from './options.js';
import type { Consumer } from './worker/consumer.js';

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

  /**
   * Consumes a group of this topic; the handler gets `message.payload` as the schema's
   * output type. A payload that does not match the schema fails its attempt with a
   * PayloadValidationError listing the issues (no handler call) and is dead-lettered at
   * once with the issues as its error (bucketq.reject): a retry would not make it valid.
   */
  async consume(options: TypedConsumeOptions<z.output<S>>, logger?: Logger): Promise<Consumer> {
    const { rows } = await this.client.pool.query<{ topic: string }>('select topic from bucketq.groups where group_name = $1', [options.group]);
    if (rows[0] && rows[0].topic !== this.name) {
      throw new ConfigError(`group '${options.group}' reads topic '${rows[0].topic}', not '${this.name}': consume it from bq.topic('${rows[0].topic}', schema)`);
    }
    const handler = options.handler;
    if (typeof handler !== 'function') return this.client.consume(options, logger); // consume() reports it
    return this.client.consume<unknown>(
      {
        ...options,
        handler: (message, ctx) => {
          const result = this.schema.safeParse(message.payload);
          if (!result.success) throw this.invalid(result.error, `message ${message.msgId}: payload`, 'received');
          return handler({ ...message, payload: result.data }, ctx);
        },
      },
      logger,
    );
  }

  private invalid(error: z.ZodError, where: string, what: 'received' | 'sent'): PayloadValidationError {
    const issues = formatIssues(error).map((i) => `${where}: ${i}`);
    const err = new PayloadValidationError(
      this.name,
      `invalid payload ${what === 'received' ? 'received on' : 'for'} topic '${this.name}':\n${issues.map((i) => `  - ${i}`).join('\n')}`,
      issues,
    );
    // The message's stored error is the issues, not where in bucketq they were found.
    if (what === 'received') err.stack = `${err.name}: ${err.message}`;
    return err;
  }

  private validate(payload: unknown, where: string): z.output<S> {
    const result = this.schema.safeParse(payload);
    if (result.success) return result.data;
    throw this.invalid(result.error, where, 'sent');
  }
}
