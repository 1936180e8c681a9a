// OpenTelemetry tracing, as envoyproxy/ratelimit traces: a span per traced call, parented on the
// caller's trace context (W3C traceparent, or Zipkin's B3, in the call's metadata), and a child
// span per store call made while the call is under way; exported in batches over OTLP.
//
// This module is loaded only when the policy enables tracing (sidecar.ts imports it on demand):
// without it no OpenTelemetry code is loaded, and a call's path checks one null.
//
// Export never holds a decision up: ended spans wait in a bounded queue (past it new spans are
// dropped) and are sent in the background; an export that fails is logged, throttled, and its
// spans are dropped.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from 'pino';
import { randomUUID } from 'node:crypto';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type TextMapGetter, type Tracer } from '@opentelemetry/api';
import { status, type Metadata, type sendUnaryData } from '@grpc/grpc-js';
import { CompositePropagator, W3CTraceContextPropagator, setGlobalErrorHandler } from '@opentelemetry/core';
import { B3Propagator } from '@opentelemetry/propagator-b3';
import { detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter as OtlpHttpExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import type { TracingOptions } from '../config/policy.js';
import type { Environment } from '../config/upstream-env.js';
import type { Store } from '../store/store.js';
import { throttledWarn } from '../log.js';
import { batchSettings } from './batch-env.js';
import { TracedStore } from './traced-store.js';

/** The service name when neither the policy nor OTEL_SERVICE_NAME gives one. */
export const DEFAULT_SERVICE_NAME = 'sluice';

/** How long shutdown waits for the last spans to be exported. */
export const SHUTDOWN_FLUSH_MS = 5_000;

/** Longest attribute value: a caller's domain can be as long as its message allows. */
const ATTRIBUTE_VALUE_LIMIT = 1_024;

/** A traced call under way: store calls made in it are children of its span until it answers. */
interface TracedCall {
  context: Context;
  open: boolean;
}

/** gRPC metadata as a propagator reads it: keys are lowercase, values the call's text values. */
const METADATA_GETTER: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key).filter((value): value is string => typeof value === 'string');
    return values.length === 0 ? undefined : values;
  },
};

export class Tracing {
  private readonly provider: TracerProvider;
  private readonly tracer: Tracer;
  // Upstream's propagators, less baggage (sluice passes no context on).
  private readonly propagator = new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new B3Propagator()] });
  private readonly current = new AsyncLocalStorage<TracedCall>();

  constructor(options: TracingOptions, env: Environment, log: Logger) {
    const batch = batchSettings(env);
    for (const warning of batch.warnings) log.warn(`tracing: ${warning}`);
    const resource = resourceOf(options);
    this.provider = new TracerProvider({
      resource,
      // A caller's sampled trace is followed whatever the rate; traces that start here are sampled at it.
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.samplingRate) }),
      spanLimits: { attributeValueLengthLimit: ATTRIBUTE_VALUE_LIMIT },
      spanProcessors: [new BatchSpanProcessor({ exporter: exporterOf(options), ...batch.settings })],
    });
    this.tracer = this.provider.getTracer('sluice');
    // The batch processor reports failed exports here (nothing else in the process uses
    // OpenTelemetry); a dead collector fails every export, so the log is throttled.
    const exportFailed = throttledWarn(log, 5_000);
    setGlobalErrorHandler((err) => exportFailed({ err: String(err) }, 'tracing: could not export spans; they are dropped'));
    log.info(
      {
        exporter: options.exporter,
        endpoint: options.endpoint ?? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT or the exporter’s default',
        samplingRate: options.samplingRate,
        service: resource.attributes['service.name'],
        instance: resource.attributes['service.instance.id'],
        batch: batch.settings,
      },
      'tracing: exporting spans over OTLP',
    );
  }

  /**
   * Serves a unary call in a span named `name`, parented on the trace context in its metadata.
   * The span ends when `handler` answers, with the call's status and `describe`'s attributes of
   * its answer; the store calls made meanwhile are its children.
   */
  serveUnary<T>(
    name: string,
    metadata: Metadata,
    attributes: Attributes,
    answer: sendUnaryData<T>,
    handler: (answer: sendUnaryData<T>) => void,
    describe: (value: T) => Attributes,
  ): void {
    const parent = this.propagator.extract(ROOT_CONTEXT, metadata, METADATA_GETTER);
    const span = this.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
    // Not sampled: nothing to record, and its store calls are not sampled either.
    if (!span.isRecording()) {
      handler(answer);
      return;
    }
    const call: TracedCall = { context: trace.setSpan(parent, span), open: true };
    const answered: sendUnaryData<T> = (error, value, ...rest) => {
      call.open = false;
      if (error) {
        span.setAttribute('rpc.grpc.status_code', error.code ?? status.UNKNOWN);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.details ?? '' });
      } else {
        span.setAttribute('rpc.grpc.status_code', status.OK);
        if (value) span.setAttributes(describe(value));
      }
      span.end();
      answer(error, value, ...rest);
    };
    this.current.run(call, handler, answered);
  }

  /** `store`, with a span named `name` around each call made while a traced call is under way. */
  traceStore(store: Store, name: string): Store {
    return new TracedStore(store, (operation, work) => this.storeCall(name, operation, work));
  }

  private storeCall<T>(name: string, operation: string, work: () => Promise<T>): Promise<T> {
    const call = this.current.getStore();
    // Background work (lease refills, heartbeats) and work a call left behind belong to no call.
    if (!call?.open) return work();
    const span = this.tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes: { 'sluice.store.call': operation } }, call.context);
    const failed = (err: unknown) => {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      span.end();
      throw err;
    };
    let pending: Promise<T>;
    try {
      pending = work();
    } catch (err) {
      return failed(err);
    }
    return pending.then((value) => {
      span.end();
      return value;
    }, failed);
  }

  /** Exports the spans still queued, for at most `timeoutMs`, and stops. */
  async shutdown(timeoutMs = SHUTDOWN_FLUSH_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([this.provider.shutdown().catch(() => undefined), late]);
    clearTimeout(timer);
  }
}

/**
 * Who exports: the policy's names over OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, over
 * sluice's defaults. Each process is its own instance unless told otherwise, as upstream's is.
 */
function resourceOf(options: TracingOptions): Resource {
  const given: Attributes = {};
  if (options.serviceName) given['service.name'] = options.serviceName;
  if (options.serviceNamespace) given['service.namespace'] = options.serviceNamespace;
  if (options.serviceInstanceId) given['service.instance.id'] = options.serviceInstanceId;
  return resourceFromAttributes({ 'service.name': DEFAULT_SERVICE_NAME, 'service.instance.id': randomUUID() })
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes(given));
}

/** OTLP over HTTP (protobuf bodies, as upstream's) or gRPC; the endpoint, when the policy names none, from OTEL_* as the exporters read it. */
function exporterOf(options: TracingOptions): SpanExporter {
  const config = options.endpoint ? { url: options.endpoint } : {};
  return options.exporter === 'grpc' ? new OtlpGrpcExporter(config) : new OtlpHttpExporter(config);
}
