// The handler's transaction, opened on first use. Most of a batch's cost is round
// trips; a handler that writes nothing (or only elsewhere) should cost none of them.
import type pg from 'pg';

/**
 * The batch's transaction and a savepoint per message, opened only when a handler uses
 * its client: a handler that writes nothing (or only elsewhere) costs no round trip.
 * begin and the savepoint are queued right before the handler's first query (pg sends
 * a connection's queries in order), and the previous message's savepoint is released
 * in the same round trip.
 */
export class LazyTransaction {
  began = false;
  private taken = false; // the current message's savepoint exists
  private open = false; // an earlier message's savepoint is still open
  /** What handlers get: the client, with begin (and a savepoint) queued before a first query. */
  private readonly handlerClient: pg.ClientBase;

  constructor(
    private readonly client: pg.PoolClient,
    /** null: the transaction is open already. */
    private readonly beginSql: string | null,
    /** One savepoint per message (batch mode); off when the transaction holds one message. */
    private readonly savepoints = true,
  ) {
    this.began = beginSql === null;
    const take = () => this.take();
    this.handlerClient = new Proxy(client, {
      get(target, prop) {
        if (prop === 'query') {
          return (...args: unknown[]) => {
            take();
            return (target.query as (...a: unknown[]) => unknown)(...args);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }

  /** The client for the next message's handler. */
  next(): pg.ClientBase {
    this.taken = false;
    return this.handlerClient;
  }

  private take(): void {
    if (this.taken) return;
    this.taken = true;
    const statements = [];
    if (!this.began && this.beginSql !== null) statements.push(this.beginSql);
    if (this.savepoints) {
      if (this.open) statements.push('release savepoint bucketq_message');
      statements.push('savepoint bucketq_message');
      this.open = true;
    }
    this.began = true;
    // A failure here fails the handler's own query, which follows on this connection.
    if (statements.length) this.client.query(statements.join('; ')).catch(() => {});
  }

  /** Undo what the current message's handler wrote (nothing to undo if it wrote nothing). */
  async rollbackMessage(): Promise<void> {
    if (this.taken) await this.client.query('rollback to savepoint bucketq_message');
  }
}
