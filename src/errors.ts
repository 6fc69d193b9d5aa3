// Typed errors. SQL functions raise our own SQLSTATEs (BQ001..BQ008) with a HINT;
// mapPgError turns those into classes callers can `instanceof` without parsing text.
import pg from 'pg';

export interface BucketqErrorOptions {
  hint?: string | undefined;
  detail?: string | undefined;
  cause?: unknown;
}

export class BucketqError extends Error {
  /** SQLSTATE for errors raised by the database, or a BQ_* name for client-side ones. */
  readonly code: string;
  readonly hint?: string;
  readonly detail?: string;

  constructor(code: string, message: string, opts: BucketqErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    if (opts.hint !== undefined) this.hint = opts.hint;
    if (opts.detail !== undefined) this.detail = opts.detail;
  }
}

type SqlErrorClass = new (message: string, opts?: BucketqErrorOptions) => BucketqError;

/** BQ001: a topic, group or consumer name is not allowed. */
export class InvalidNameError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ001', message, opts);
  }
}

/** BQ002: no topic by that name. */
export class UnknownTopicError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ002', message, opts);
  }
}

/** BQ003: no consumer group by that name (or not on that topic). */
export class UnknownGroupError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ003', message, opts);
  }
}

/** BQ004: the payload exceeds the topic's max_payload_bytes. */
export class PayloadTooLargeError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ004', message, opts);
  }
}

/** BQ005: an argument is out of range or malformed. */
export class InvalidArgumentError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ005', message, opts);
  }
}

/** BQ006: the lease token no longer matches: the lease expired and may have been reissued. */
export class StaleLeaseError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ006', message, opts);
  }
}

/** BQ007: the topic or group already exists with different settings. */
export class ConflictError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ007', message, opts);
  }
}

/** BQ008: wrong epoch or not the bucket owner: this consumer lost the bucket. */
export class FencedError extends BucketqError {
  constructor(message: string, opts?: BucketqErrorOptions) {
    super('BQ008', message, opts);
  }
}

const BY_SQLSTATE: Readonly<Record<string, SqlErrorClass>> = {
  BQ001: InvalidNameError,
  BQ002: UnknownTopicError,
  BQ003: UnknownGroupError,
  BQ004: PayloadTooLargeError,
  BQ005: InvalidArgumentError,
  BQ006: StaleLeaseError,
  BQ007: ConflictError,
  BQ008: FencedError,
};

/** Converts a pg DatabaseError with a bucketq SQLSTATE into its typed error; returns anything else unchanged. */
export function mapPgError(err: unknown): unknown {
  if (!isDatabaseError(err) || err instanceof BucketqError) return err;
  const cls = Object.hasOwn(BY_SQLSTATE, err.code) ? BY_SQLSTATE[err.code] : undefined;
  return cls ? new cls(err.message, { hint: err.hint, detail: err.detail, cause: err }) : err;
}

// Duck-typed rather than `instanceof pg.DatabaseError`: a caller's pool may come from
// another copy of pg whose DatabaseError class is a different object.
function isDatabaseError(err: unknown): err is pg.DatabaseError & { code: string } {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && 'severity' in err;
}

/** Options or arguments failed validation before anything was sent to the database. */
export class ConfigError extends BucketqError {
  readonly issues: readonly string[];
  constructor(message: string, issues: readonly string[] = [], opts?: BucketqErrorOptions) {
    super('BQ_CONFIG', message, opts);
    this.issues = issues;
  }
}

/** A typed topic's payload did not match its zod schema; nothing was sent. */
export class PayloadValidationError extends ConfigError {
  readonly topic: string;
  constructor(topic: string, message: string, issues: readonly string[]) {
    super(message, issues);
    this.topic = topic;
  }
}

/** The database was migrated by a newer bucketq than this one. */
export class SchemaTooNewError extends BucketqError {
  constructor(
    readonly databaseVersion: number,
    readonly packageVersion: number,
  ) {
    super(
      'BQ_SCHEMA_TOO_NEW',
      `bucketq schema in the database is version ${databaseVersion}, but this bucketq package only knows up to version ${packageVersion}; upgrade the bucketq package`,
    );
  }
}

/** The database has not been migrated to this package's schema version yet. */
export class SchemaNotMigratedError extends BucketqError {
  constructor(
    readonly databaseVersion: number,
    readonly packageVersion: number,
  ) {
    super(
      'BQ_SCHEMA_NOT_MIGRATED',
      `bucketq schema in the database is version ${databaseVersion}, but this package needs version ${packageVersion}; run \`bucketq migrate\` or \`client.migrate()\``,
    );
  }
}
