// The public client: validates arguments once, then calls one SQL function per method.
import pg from 'pg';
import type { z } from 'zod';
import { preparedStatementsOffByEnv, withoutPreparedStatements } from './db/prepared.js';
import { readCommittedOnPool } from './db/read-committed.js';
import { migrate } from './migrate.js';
import {
  type AckItem,
  type AckOptions,
  type BatchMessage,
  type ClaimOptions,
  type ClientOptions,
  type CreateGroupOptions,
  type CreateTopicOptions,
  type JoinOptions,
  type NackItem,
  type NackOptions,
  type SendBatchOptions,
  type SendOptions,
  ackItemsSchema,
  ackOptionsSchema,
  batchMessagesSchema,
  claimOptionsSchema,
  clientOptionsSchema,
  consumerIdSchema,
  createGroupOptionsSchema,
  createTopicOptionsSchema,
  groupNameSchema,
  joinOptionsSchema,
  msgIdsSchema,
  nackItemsSchema,
  nackOptionsSchema,
  parseOrThrow,
  sendBatchOptionsSchema,
  scheduleDefinitionSchema,
  scheduleNameSchema,
  sendOptionsSchema,
  topicNameSchema,
} from './options.js';
import * as admin from './queries/admin.js';
import * as consume from './queries/consume.js';
import * as lobby from './queries/lobby.js';
import * as schedules from './queries/schedules.js';
import * as producer from './queries/send.js';
import { traceSend } from './tracing.js';
import * as topics from './queries/topics.js';
import { TypedTopic } from './typed-topic.js';
import type { Logger } from 'pino';
import { Consumer } from './worker/consumer.js';
import type { ConsumeOptionsInput, Handler } from './worker/options.js';

/** consume() options whose handler gets payloads of type P. */
export type TypedConsumeOptions<P> = Omit<ConsumeOptionsInput, 'handler'> & { handler: Handler<P> };

// Methods are async even where validation could throw synchronously, so every
// failure, bad input included, arrives as a rejected promise.
export class BucketQ {
  /** The pool every method uses unless given a client. */
  readonly pool: pg.Pool;
  // Only a pool we created is ours to end; a caller's pool outlives us.
  private readonly ownsPool: boolean;
  private readonly prepares: boolean;

  constructor(options: ClientOptions) {
    const o = parseOrThrow(clientOptionsSchema, options, 'BucketQ options');
    if (o.pool) {
      this.pool = o.pool;
      this.ownsPool = false;
    } else {
      this.pool = new pg.Pool({ connectionString: o.connectionString, max: o.poolMax ?? 10 });
      // An idle client losing its connection must not crash the process; the pool replaces it.
      this.pool.on('error', () => {});
      this.ownsPool = true;
    }
    preparedStatementsOffByEnv(); // a bad BUCKETQ_PREPARED_STATEMENTS fails here, not on the first send
    if (o.preparedStatements === false) withoutPreparedStatements(this.pool);
    this.prepares = o.preparedStatements !== false;
  }

  /** A caller's client runs as the pool would (no prepared statements if turned off). */
  private own<C extends pg.ClientBase | undefined>(client: C): C {
    if (client && !this.prepares) withoutPreparedStatements(client);
    return client;
  }

  /** Applies pending schema migrations (safe to call from many processes at once). */
  async migrate(): Promise<{ from: number; to: number; definitions: 'applied' | 'current' }> {
    return migrate(this.pool);
  }

  /** Creates a topic; true if created, false if it already existed with the same settings. */
  async createTopic(name: string, options: CreateTopicOptions = {}): Promise<boolean> {
    const topic = parseOrThrow(topicNameSchema, name, 'topic name');
    const o = parseOrThrow(createTopicOptionsSchema, options, 'createTopic options');
    return topics.createTopic(this.pool, topic, o);
  }

  /** Creates a consumer group on a topic; true if created, false if it already existed with the same settings. */
  async createGroup(name: string, topic: string, options: CreateGroupOptions = {}): Promise<boolean> {
    const group = parseOrThrow(groupNameSchema, name, 'group name');
    const topicName = parseOrThrow(topicNameSchema, topic, 'topic name');
    const o = parseOrThrow(createGroupOptionsSchema, options, 'createGroup options');
    const startAt = o.startAt instanceof Date ? o.startAt.toISOString() : o.startAt;
    return topics.createGroup(this.pool, group, topicName, { ...o, startAt });
  }

  /**
   * Sends one message and returns its id as a string (int8 ids can exceed 2^53).
   * Pass `client` to send inside your own transaction (transactional outbox).
   */
  async send(topic: string, payload: unknown, options: SendOptions = {}): Promise<string> {
    const topicName = parseOrThrow(topicNameSchema, topic, 'topic name');
    const { client, ...message } = parseOrThrow(sendOptionsSchema, options, 'send options');
    return traceSend(
      topicName,
      undefined,
      (withContext) => producer.send(this.own(client) ?? this.pool, topicName, { payload, ...message, headers: withContext(message.headers) }),
      (id) => [id],
    );
  }

  /** Sends many messages in one statement; returns their ids (strings) in input order. */
  async sendBatch(topic: string, messages: readonly BatchMessage[], options: SendBatchOptions = {}): Promise<string[]> {
    const topicName = parseOrThrow(topicNameSchema, topic, 'topic name');
    const parsed = parseOrThrow(batchMessagesSchema, messages, 'sendBatch messages');
    const { client } = parseOrThrow(sendBatchOptionsSchema, options, 'sendBatch options');
    return traceSend(
      topicName,
      parsed.length,
      (withContext) => producer.sendBatch(this.own(client) ?? this.pool, topicName, parsed.map((m) => ({ ...m, headers: withContext(m.headers) }))),
      (ids) => ids,
    );
  }

  /** Registers a consumer in a group and takes its fair share of buckets; returns the buckets it owns. */
  async join(group: string, consumerId: string, options: JoinOptions = {}): Promise<lobby.OwnedBucket[]> {
    const groupName = parseOrThrow(groupNameSchema, group, 'group name');
    const consumer = parseOrThrow(consumerIdSchema, consumerId, 'consumerId');
    return lobby.join(this.pool, groupName, consumer, parseOrThrow(joinOptionsSchema, options, 'join options').meta);
  }

  /** Keeps a consumer alive and rebalances; call well within the group's sessionTimeout. Returns the buckets it owns now. */
  async heartbeat(group: string, consumerId: string): Promise<lobby.OwnedBucket[]> {
    return lobby.heartbeat(this.pool, parseOrThrow(groupNameSchema, group, 'group name'), parseOrThrow(consumerIdSchema, consumerId, 'consumerId'));
  }

  /** Releases the consumer's buckets and leaves the group; returns how many buckets were released. */
  /**
   * Start a worker in this process: joins the group, claims in the buckets it owns and
   * runs `handler` inside the transaction that acks. Stop it with `consumer.stop()`.
   */
  async consume<P = unknown>(options: TypedConsumeOptions<P>, logger?: Logger): Promise<Consumer> {
    // P is the caller's word for what was sent (`consume<Order>()`); for payloads checked
    // on receive, use bq.topic(name, schema).consume().
    return Consumer.start({ pool: this.pool }, options as unknown as ConsumeOptionsInput, logger);
  }

  async leave(group: string, consumerId: string): Promise<number> {
    return lobby.leave(this.pool, parseOrThrow(groupNameSchema, group, 'group name'), parseOrThrow(consumerIdSchema, consumerId, 'consumerId'));
  }

  /** Leases up to `max` ready messages in buckets the consumer owns (join first). */
  async claim(group: string, consumerId: string, options: ClaimOptions = {}): Promise<consume.LeasedMessage[]> {
    const groupName = parseOrThrow(groupNameSchema, group, 'group name');
    const consumer = parseOrThrow(consumerIdSchema, consumerId, 'consumerId');
    const opts = parseOrThrow(claimOptionsSchema, options, 'claim options');
    return readCommittedOnPool(this.pool, (db) => consume.claim(db, groupName, consumer, opts));
  }

  /** Acknowledges leased messages (pass `client` to ack inside your own transaction). */
  async ack(group: string, items: readonly AckItem[], options: AckOptions = {}): Promise<consume.AckResult[]> {
    const groupName = parseOrThrow(groupNameSchema, group, 'group name');
    const parsed = parseOrThrow(ackItemsSchema, items, 'ack items');
    const { client, ...o } = parseOrThrow(ackOptionsSchema, options, 'ack options');
    return readCommittedOnPool(this.own(client) ?? this.pool, (db) => consume.ack(db, groupName, parsed, o));
  }

  /** Fails leased messages: retried after a backoff, or dead-lettered when attempts run out. */
  async nack(group: string, items: readonly NackItem[], options: NackOptions = {}): Promise<consume.NackResult[]> {
    const groupName = parseOrThrow(groupNameSchema, group, 'group name');
    const parsed = parseOrThrow(nackItemsSchema, items, 'nack items');
    const { client, ...o } = parseOrThrow(nackOptionsSchema, options, 'nack options');
    return readCommittedOnPool(this.own(client) ?? this.pool, (db) => consume.nack(db, groupName, parsed, o));
  }

  /** Puts a group's dead-lettered messages (all, or the given ids) back in line; returns how many. */
  async replayDead(group: string, msgIds?: readonly (string | bigint | number)[]): Promise<number> {
    const groupName = parseOrThrow(groupNameSchema, group, 'group name');
    const ids = msgIds === undefined ? undefined : parseOrThrow(msgIdsSchema, msgIds, 'msgIds');
    return admin.replayDead(this.pool, groupName, ids);
  }

  /** Runs housekeeping (partitions, retention, idempotency keys); returns the actions taken. */
  async maintain(): Promise<admin.MaintenanceAction[]> {
    return admin.maintain(this.pool);
  }

  /** A group's unfinished messages (ready, leased, delayed, waiting, dead and blocking), from bucketq.lag. */
  async backlog(group: string): Promise<admin.GroupBacklog> {
    return admin.groupBacklog(this.pool, parseOrThrow(groupNameSchema, group, 'group name'));
  }

  /**
   * Creates or replaces a scheduled message: `payload` is sent to `topic` at every
   * occurrence of `cron` (five fields, minute granularity, read in `timezone`, default
   * UTC). The workers of the topic's groups send it, once per slot across all of them.
   * Returns true when created or changed, false when it existed with this definition.
   */
  async schedule(name: string, definition: schedules.ScheduleDefinition): Promise<boolean> {
    const scheduleName = parseOrThrow(scheduleNameSchema, name, 'schedule name');
    const d = parseOrThrow(scheduleDefinitionSchema, definition, 'schedule options');
    return schedules.createSchedule(this.pool, scheduleName, { ...d, payload: definition.payload });
  }

  /** Deletes a scheduled message; true when it existed. */
  async unschedule(name: string): Promise<boolean> {
    return schedules.dropSchedule(this.pool, parseOrThrow(scheduleNameSchema, name, 'schedule name'));
  }

  /** The scheduled messages (of one topic, if given), from bucketq.schedules. */
  async schedules(topic?: string): Promise<schedules.ScheduleRow[]> {
    return schedules.listSchedules(this.pool, topic === undefined ? undefined : parseOrThrow(topicNameSchema, topic, 'topic name'));
  }

  /**
   * Sends the due scheduled messages of the group's topic now (workers do this on every
   * heartbeat); each slot is sent once whoever calls it.
   */
  async fireSchedules(group: string): Promise<schedules.FiredSchedule[]> {
    return schedules.fireDueSchedules(this.pool, parseOrThrow(groupNameSchema, group, 'group name'));
  }

  /** A topic whose payloads are validated against a zod schema before sending. */
  topic<S extends z.ZodType>(name: string, schema: S): TypedTopic<S> {
    return new TypedTopic(this, parseOrThrow(topicNameSchema, name, 'topic name'), schema);
  }

  /** Ends the pool if this client created it. */
  async close(): Promise<void> {
    if (this.ownsPool && !this.pool.ended) await this.pool.end();
  }
}
