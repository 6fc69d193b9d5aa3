// The handler's transaction, opened on first use. Most of a batch's cost is round
// trips; a handler that writes nothing (or only elsewhere) should cost none of them.
// Each message's handler gets its own view of the connection, so that a handler given
// up on (it ran past its deadline) can be cut off before the next message uses it.
import type pg from 'pg';

/** One handler's use of the connection: its queries in flight, and whether it was cut off. */
interface HandlerUse {
  pending: Set<Promise<unknown>>;
  revoked: boolean;
}

export class HandlerGoneError extends Error {
  constructor() {
    super('this handler ran past its deadline (handlerTimeoutMs) or the consumer stopped: its transaction is no longer its own, so the query was not sent');
    this.name = 'HandlerGoneError';
  }
}

/** A handler given up on would not let go of the connection: it was terminated, and the transaction with it. */
export class TransactionLostError extends Error {
  constructor(pid: number, waitMs: number) {
    super(`a timed-out handler's query on backend ${pid} did not end within ${waitMs} ms of being cancelled; the backend was terminated and the transaction rolled back`);
    this.name = 'TransactionLostError';
  }
}

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
  private current: HandlerUse = { pending: new Set(), revoked: false };

  constructor(
    private readonly client: pg.PoolClient,
    /** null: the transaction is open already. */
    private readonly beginSql: string | null,
    /** One savepoint per message (batch mode); off when the transaction holds one message. */
    private readonly savepoints = true,
  ) {
    this.began = beginSql === null;
  }

  /** The client for the next message's handler: begin (and a savepoint) queued before its first query. */
  next(): pg.ClientBase {
    this.taken = false;
    const use: HandlerUse = { pending: new Set(), revoked: false };
    this.current = use;
    const take = () => this.take();
    return new Proxy(this.client, {
      get(target, prop) {
        if (prop === 'query') {
          return (...args: unknown[]) => {
            if (use.revoked) {
              const gone = new HandlerGoneError();
              // pg's callback form: report through the callback, as pg itself would.
              const callback = args.at(-1);
              if (typeof callback === 'function') return void (callback as (e: Error) => void)(gone);
              return Promise.reject(gone);
            }
            take();
            const result = (target.query as (...a: unknown[]) => unknown)(...args);
            if (result instanceof Promise) {
              use.pending.add(result);
              const settled = () => use.pending.delete(result);
              result.then(settled, settled);
            }
            return result;
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
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

  /**
   * Cut the current handler off: its later queries fail without being sent, and one it
   * is running now is cancelled (`signal` asks Postgres to, from another connection).
   * Resolves once none of its queries is left on the connection, so that what follows
   * (a rollback to its savepoint, the ack) runs on a connection that is ours again. If
   * a cancelled query does not end within waitMs, the backend is terminated and this
   * throws TransactionLostError: the transaction is gone.
   */
  async abandon(signal: (fn: 'cancel' | 'terminate', pid: number) => Promise<void>, waitMs: number): Promise<void> {
    const use = this.current;
    use.revoked = true;
    if (use.pending.size === 0) return;
    const pid = (this.client as unknown as { processID: number }).processID;
    // A failed cancel (the database unreachable) ends like one that did not work.
    await signal('cancel', pid).catch(() => {});
    if (await settledWithin(use.pending, waitMs)) return;
    await signal('terminate', pid).catch(() => {});
    await settledWithin(use.pending, waitMs);
    throw new TransactionLostError(pid, waitMs);
  }

  /** Undo what the current message's handler wrote (nothing to undo if it wrote nothing). */
  async rollbackMessage(): Promise<void> {
    if (this.taken) await this.client.query('rollback to savepoint bucketq_message');
  }
}

/** Whether all the promises settle within ms. */
async function settledWithin(pending: Set<Promise<unknown>>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const ok = await Promise.race([Promise.allSettled([...pending]).then(() => true), late]);
  clearTimeout(timer);
  return ok;
}
