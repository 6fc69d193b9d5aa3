// What the parts of a running consumer share: its identity, connections, options,
// counters and the signals that say it is stopping. The Consumer builds one and hands
// it to the lobby (membership.ts), the claim loop and the batch executor, so that none
// of them reaches into another for state.
import type pg from 'pg';
import type { Logger } from 'pino';
import type { GroupSettings } from '../queries/lobby.js';
import type { ConsumerMetrics } from './metrics.js';
import type { ConsumeOptions } from './options.js';
import type { Wakeup } from './wakeup.js';

export interface ConsumerStats {
  processed: number;
  failed: number;
  deadLettered: number;
  fenced: number;
  rebalances: number;
}

export interface Runtime {
  readonly group: string;
  readonly consumerId: string;
  readonly opts: ConsumeOptions;
  readonly settings: GroupSettings;
  /** Handlers' transactions, acks, nacks and the lobby. */
  readonly pool: pg.Pool;
  /**
   * Claims, on a connection of their own with synchronous_commit off (see Consumer).
   * Also records the attempts of locked batches.
   */
  readonly claimPool: pg.Pool;
  readonly log: Logger;
  readonly stats: ConsumerStats;
  /** Prometheus metrics, when started with metricsPort. */
  readonly metrics: ConsumerMetrics | undefined;
  readonly wakeup: Wakeup;
  /** Aborted when the consumer stops hard: handlers see it as ctx.signal. */
  readonly abort: AbortController;
  /** false from the moment stop() is called. */
  running(): boolean;
}
