// OpenTelemetry (issue 12): send and handle are spans through @opentelemetry/api, the
// trace context travels in the message headers as W3C traceparent, and nothing happens
// without an SDK. The SDK here is sdk-trace-base with an in-memory exporter, with no
// global propagator: bucketq writes and reads traceparent itself then.
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketQ } from '../src/client.js';
import { useDatabase } from './helpers/sql.js';
import { waitFor } from './support/wait.js';

const ctx = useDatabase();
const quiet = pino({ level: 'silent' });
const exporter = new InMemorySpanExporter();
let bq: BucketQ;

const headersOf = async (id: string) =>
  (await ctx.db.pool.query<{ headers: Record<string, string> | null }>('select headers from bucketq.messages where msg_id = $1', [id])).rows[0]!.headers;
const spans = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

beforeAll(async () => {
  bq = new BucketQ({ connectionString: ctx.db.connectionString, poolMax: 4 });
  await bq.createTopic('ot.t', { buckets: 2 });
  await bq.createGroup('ot.g', 'ot.t', { startAt: 'earliest', maxAttempts: 1 });
});
afterAll(async () => {
  trace.disable();
  context.disable();
  await bq?.close();
});

describe('without an SDK', () => {
  it('adds no headers and records nothing', async () => {
    const id = await bq.send('ot.t', { plain: true }, { key: 'none' });
    expect(await headersOf(id)).toBeNull();
    const withOwn = await bq.send('ot.t', { plain: true }, { key: 'none', headers: { source: 'test' } });
    expect(await headersOf(withOwn)).toEqual({ source: 'test' });
  });
});

describe('with an SDK', () => {
  beforeAll(async () => {
    // Drain what the test above sent, untraced.
    const drain = await bq.consume({ group: 'ot.g', handler: () => {}, pollIntervalMs: 50 }, quiet);
    await waitFor('drained', async () => (await ctx.db.pool.query(`select pending from bucketq.groups where group_name = 'ot.g'`)).rows[0].pending === '0');
    await drain.stop();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  });

  it('send is a PRODUCER span whose context goes in the headers; the handler runs in a CONSUMER span under it, its own spans nested', async () => {
    const app = trace.getTracer('app');
    const [id, requestSpanId] = await app.startActiveSpan('POST /orders', async (span) => {
      try {
        return [await bq.send('ot.t', { amount: 1 }, { key: 'k1', headers: { source: 'shop' } }), span.spanContext().spanId] as const;
      } finally {
        span.end();
      }
    });
    const [send] = spans('send ot.t');
    expect(send).toBeDefined();
    expect(send!.kind).toBe(SpanKind.PRODUCER);
    expect(parentOf(send!)).toBe(requestSpanId);
    expect(send!.attributes).toMatchObject({ 'messaging.system': 'bucketq', 'messaging.destination.name': 'ot.t', 'messaging.message.id': id });
    const headers = await headersOf(id);
    expect(headers).toEqual({ source: 'shop', traceparent: `00-${send!.spanContext().traceId}-${send!.spanContext().spanId}-01` });

    const consumer = await bq.consume(
      {
        group: 'ot.g',
        pollIntervalMs: 50,
        handler: async (message) => {
          await app.startActiveSpan('charge card', async (s) => {
            s.setAttribute('order', String((message.payload as { amount: number }).amount));
            s.end();
          });
          if ((message.payload as { fail?: boolean }).fail) throw new Error('card declined');
        },
      },
      quiet,
    );
    try {
      await waitFor('process span', () => spans('process ot.t').length === 1);
      const [process] = spans('process ot.t');
      expect(process!.kind).toBe(SpanKind.CONSUMER);
      expect(process!.spanContext().traceId).toBe(send!.spanContext().traceId);
      expect(parentOf(process!)).toBe(send!.spanContext().spanId);
      expect(process!.attributes).toMatchObject({
        'messaging.consumer.group.name': 'ot.g',
        'messaging.message.id': id,
        'messaging.destination.name': 'ot.t',
        'bucketq.message.key': 'k1',
        'bucketq.attempt': 1,
      });
      expect(process!.status.code).not.toBe(SpanStatusCode.ERROR);
      const [charge] = spans('charge card');
      expect(parentOf(charge!)).toBe(process!.spanContext().spanId);

      // A failing handler: the span says so, with the exception.
      const failing = await bq.send('ot.t', { amount: 2, fail: true }, { key: 'k2' });
      await waitFor('failed process span', () => spans('process ot.t').length === 2);
      const failed = spans('process ot.t').find((s) => s.attributes['messaging.message.id'] === failing)!;
      expect(failed.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'card declined' });
      expect(failed.events.map((e) => e.name)).toContain('exception');
    } finally {
      await consumer.stop();
    }
  }, 60_000);

  it('sendBatch is one span; every message carries its context', async () => {
    exporter.reset();
    const ids = await bq.sendBatch('ot.t', [{ payload: { n: 1 }, key: 'b' }, { payload: { n: 2 }, key: 'b', headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } }]);
    const [send] = spans('send ot.t');
    expect(send!.attributes).toMatchObject({ 'messaging.batch.message_count': 2 });
    expect((await headersOf(ids[0]!))!.traceparent).toBe(`00-${send!.spanContext().traceId}-${send!.spanContext().spanId}-01`);
    // A traceparent the caller set is kept.
    expect((await headersOf(ids[1]!))!.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });
});
