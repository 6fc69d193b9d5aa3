// OpenTelemetry through @opentelemetry/api alone: a no-op unless the application
// installs an SDK. A send is a PRODUCER span whose context travels in the message's
// headers (W3C `traceparent`, `tracestate`, plus whatever propagator the app set up);
// a handler run is a CONSUMER span, a child of that context, active while the handler
// runs so that its own spans (queries, HTTP calls) nest under it.
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  context,
  isSpanContextValid,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import type { Handler } from './worker/options.js';

const tracer = () => trace.getTracer('bucketq');

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The headers with the trace context of `ctx` (the active one by default) added; the
 * caller's own headers win. Unchanged when there is no trace to carry (no SDK).
 */
export function injectTraceContext(headers: Record<string, unknown> | undefined, ctx: Context = context.active()): Record<string, unknown> | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  const sc = trace.getSpanContext(ctx);
  if (carrier.traceparent === undefined && sc && isSpanContextValid(sc)) {
    carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00'}`;
    const state = sc.traceState?.serialize();
    if (state) carrier.tracestate = state;
  }
  if (Object.keys(carrier).length === 0) return headers;
  return { ...carrier, ...headers };
}

/** The trace context a message carries in its headers (ROOT_CONTEXT when none). */
export function extractTraceContext(headers: Record<string, unknown> | null | undefined): Context {
  if (!headers) return ROOT_CONTEXT;
  const carrier: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') carrier[k] = v;
  if (Object.keys(carrier).length === 0) return ROOT_CONTEXT;
  const extracted = propagation.extract(ROOT_CONTEXT, carrier);
  if (trace.getSpanContext(extracted) || carrier.traceparent === undefined) return extracted;
  // No propagator installed (or another format): read W3C traceparent ourselves.
  const m = TRACEPARENT.exec(carrier.traceparent.trim().toLowerCase());
  if (!m) return extracted;
  const sc = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED, isRemote: true };
  return isSpanContextValid(sc) ? trace.setSpanContext(extracted, sc) : extracted;
}

/** Runs a send in a PRODUCER span `send TOPIC`; `fn` gets a function that adds the trace context to headers. */
export async function traceSend<T>(
  topic: string,
  batchSize: number | undefined,
  fn: (withContext: (headers: Record<string, unknown> | undefined) => Record<string, unknown> | undefined) => Promise<T>,
  ids: (result: T) => string[],
): Promise<T> {
  const attributes: Attributes = {
    'messaging.system': 'bucketq',
    'messaging.operation.type': 'send',
    'messaging.operation.name': 'send',
    'messaging.destination.name': topic,
    ...(batchSize !== undefined && { 'messaging.batch.message_count': batchSize }),
  };
  return tracer().startActiveSpan(`send ${topic}`, { kind: SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      const result = await fn((headers) => injectTraceContext(headers));
      const sent = ids(result);
      if (sent.length === 1) span.setAttribute('messaging.message.id', sent[0]!);
      return result;
    } catch (err) {
      fail(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * Wraps a handler: each run is a CONSUMER span `process TOPIC`, child of the context the
 * message carries, ended when the handler settles or its signal aborts (deadline, hard stop).
 */
export function traceHandler<P>(handler: Handler<P>, group: string, topic: string): Handler<P> {
  return (message, ctx) => {
    const parent = extractTraceContext(message.headers);
    const span = tracer().startSpan(
      `process ${topic}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'bucketq',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.destination.name': topic,
          'messaging.destination.partition.id': String(message.bucket),
          'messaging.consumer.group.name': group,
          'messaging.message.id': message.msgId,
          'bucketq.attempt': message.attempt,
          ...(message.key !== null && { 'bucketq.message.key': message.key }),
        },
      },
      parent,
    );
    if (!span.isRecording()) {
      // No SDK (the usual case without tracing): nothing to record, run it as it is.
      span.end();
      return context.with(trace.setSpan(parent, span), () => handler(message, ctx));
    }
    let ended = false;
    const end = (err?: unknown) => {
      if (ended) return;
      ended = true;
      ctx.signal.removeEventListener('abort', onAbort);
      if (err !== undefined) fail(span, err);
      span.end();
    };
    const onAbort = () => end(ctx.signal.reason ?? new Error('handler aborted'));
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const result = context.with(trace.setSpan(parent, span), () => handler(message, ctx));
      return Promise.resolve(result).then(
        () => end(),
        (err: unknown) => {
          end(err);
          throw err;
        },
      );
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

function fail(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}
