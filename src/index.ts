// Public API of the bucketq package.
export { BucketQ, type TypedConsumeOptions } from './client.js';
export { startExporter, exporterRegistry, EXPORTED_METRICS, type Exporter, type ExportedMetric } from './exporter.js';
export { TypedTopic } from './typed-topic.js';
export { migrate, assertSchemaCurrent, readSchemaVersion, MigrationError } from './migrate.js';
export { latestVersion } from './generated/migrations.js';
export { startEmbeddedPostgres, type EmbeddedPostgresOptions, type EmbeddedPostgresHandle } from './db/embedded.js';
export {
  BucketqError,
  ConfigError,
  PayloadValidationError,
  SchemaTooNewError,
  SchemaNotMigratedError,
  InvalidNameError,
  UnknownTopicError,
  UnknownGroupError,
  PayloadTooLargeError,
  InvalidArgumentError,
  StaleLeaseError,
  ConflictError,
  FencedError,
  mapPgError,
} from './errors.js';
export type {
  ClientOptions,
  CreateTopicOptions,
  CreateGroupOptions,
  JoinOptions,
  SendOptions,
  SendBatchOptions,
  BatchMessage,
  ClaimOptions,
  AckItem,
  AckOptions,
  NackItem,
  NackOptions,
} from './options.js';
export type { ClaimedMessage, LeasedMessage, AckResult, NackResult } from './queries/consume.js';
export type { MaintenanceAction, GroupBacklog } from './queries/admin.js';
export type { OwnedBucket } from './queries/lobby.js';
export type { ScheduleDefinition, ScheduleRow, FiredSchedule } from './queries/schedules.js';
export { nextSlot } from './queries/schedules.js';
export { Consumer, consume, defaultConsumerId, type ConsumerStats, type StopOptions } from './worker/consumer.js';
export { HandlerTimeoutError } from './worker/batch-executor.js';
export type { Handler, HandlerContext, ConsumeOptionsInput as ConsumeOptions } from './worker/options.js';
