// One span per execution, where the engine configured an OpenTelemetry tracer. The shapes are
// the part of the OpenTelemetry API's Tracer and Span the runner uses, declared here so the
// package depends on no tracing library: pass `trace.getTracer('steprun')` of @opentelemetry/api.

export type AttributeValue = string | number | boolean;

export interface SpanLike {
  spanContext(): { traceId: string; spanId: string };
  setAttribute(key: string, value: AttributeValue): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}

export interface TracerLike {
  startSpan(name: string, options?: { kind?: number; attributes?: Record<string, AttributeValue> }): SpanLike;
}

/** OpenTelemetry's SpanKind.CLIENT and SpanStatusCode.OK / ERROR. */
export const SPAN_KIND_CLIENT = 2;
export const STATUS_OK = 1;
export const STATUS_ERROR = 2;

/** The span's ids when they are real W3C ids (a no-op tracer's are all zeros). */
export function usableContext(span: SpanLike | undefined): { traceId: string; spanId: string } | undefined {
  const context = span?.spanContext();
  if (!context) return undefined;
  const valid =
    /^[0-9a-f]{32}$/.test(context.traceId) &&
    /^[0-9a-f]{16}$/.test(context.spanId) &&
    !/^0+$/.test(context.traceId) &&
    !/^0+$/.test(context.spanId);
  return valid ? { traceId: context.traceId, spanId: context.spanId } : undefined;
}
