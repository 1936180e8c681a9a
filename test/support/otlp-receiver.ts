// Tiny OTLP trace collectors on free loopback ports: over HTTP (POST /v1/traces, protobuf) and
// over gRPC (TraceService/Export), each answering as a collector does and decoding every export
// into plain spans. The messages are the parts of opentelemetry-proto's trace.proto the tests
// read (field numbers exact); the rest of a body is skipped, as protobuf skips unknown fields.
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const OTLP = protobuf.Root.fromJSON({
  nested: {
    ExportTraceServiceRequest: { fields: { resourceSpans: { rule: 'repeated', type: 'ResourceSpans', id: 1 } } },
    ResourceSpans: { fields: { resource: { type: 'Resource', id: 1 }, scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 } } },
    Resource: { fields: { attributes: { rule: 'repeated', type: 'KeyValue', id: 1 } } },
    ScopeSpans: { fields: { spans: { rule: 'repeated', type: 'Span', id: 2 } } },
    Span: {
      fields: {
        traceId: { type: 'bytes', id: 1 },
        spanId: { type: 'bytes', id: 2 },
        parentSpanId: { type: 'bytes', id: 4 },
        name: { type: 'string', id: 5 },
        kind: { type: 'int32', id: 6 },
        attributes: { rule: 'repeated', type: 'KeyValue', id: 9 },
        status: { type: 'Status', id: 15 },
      },
    },
    Status: { fields: { message: { type: 'string', id: 2 }, code: { type: 'int32', id: 3 } } },
    KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } } },
    AnyValue: {
      fields: {
        stringValue: { type: 'string', id: 1 },
        boolValue: { type: 'bool', id: 2 },
        intValue: { type: 'int64', id: 3 },
        doubleValue: { type: 'double', id: 4 },
      },
    },
  },
}).lookupType('ExportTraceServiceRequest');

/** A W3C traceparent of a new trace, sampled or not, as Envoy sends it when it traces; ids in hex. */
export function traceparent(sampled = true): { traceId: string; parentId: string; header: string } {
  const traceId = randomBytes(16).toString('hex');
  const parentId = randomBytes(8).toString('hex');
  return { traceId, parentId, header: `00-${traceId}-${parentId}-${sampled ? '01' : '00'}` };
}

/** OTLP's SpanKind. */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
/** OTLP's StatusCode. */
export const STATUS_CODE = { UNSET: 0, OK: 1, ERROR: 2 } as const;

export interface ReceivedSpan {
  /** Hex, as in a traceparent. */
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  status: { code: number; message: string };
  /** The exporting process's resource: service.name and the rest. */
  resource: Record<string, unknown>;
}

export interface OtlpReceiver {
  /** Where to export: http://127.0.0.1:PORT/v1/traces, or http://127.0.0.1:PORT for gRPC. */
  url: string;
  /** Export requests received so far. */
  readonly requests: number;
  /** Every span received so far, in order of arrival. */
  readonly spans: ReceivedSpan[];
  /** Resolves once `count` spans have arrived in all (at once if they have). */
  waitForSpans(count: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

interface WireKeyValue {
  key: string;
  value?: { stringValue?: string; boolValue?: boolean; intValue?: number; doubleValue?: number };
}

interface WireSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId?: Uint8Array;
  name: string;
  kind?: number;
  attributes?: WireKeyValue[];
  status?: { code?: number; message?: string };
}

interface WireRequest {
  resourceSpans?: { resource?: { attributes?: WireKeyValue[] }; scopeSpans?: { spans?: WireSpan[] }[] }[];
}

/** What both collectors keep: the spans of every export, and who waits for them. */
class Received {
  readonly spans: ReceivedSpan[] = [];
  requests = 0;
  private readonly arrived = new EventEmitter();

  add(body: Buffer): void {
    this.requests++;
    this.spans.push(...decode(body));
    this.arrived.emit('spans');
  }

  waitForSpans(count: number, timeoutMs: number): Promise<ReceivedSpan[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.spans.length < count) return;
        clearTimeout(timer);
        this.arrived.off('spans', check);
        resolve(this.spans.slice(0, count));
      };
      const timer = setTimeout(() => {
        this.arrived.off('spans', check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${count} spans; received ${this.spans.length}: ${this.spans.map((s) => s.name).join(', ')}`));
      }, timeoutMs);
      this.arrived.on('spans', check);
      check();
    });
  }

  receiver(url: string, close: () => Promise<void>): OtlpReceiver {
    const received = this;
    return {
      url,
      get requests() {
        return received.requests;
      },
      spans: this.spans,
      waitForSpans: (count, timeoutMs = 20_000) => this.waitForSpans(count, timeoutMs),
      close,
    };
  }
}

/** A collector of OTLP/HTTP with protobuf bodies, as a collector's otlp receiver serves it on 4318. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const received = new Received();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
        res.writeHead(404).end();
        return;
      }
      received.add(Buffer.concat(chunks));
      // An empty ExportTraceServiceResponse: everything was accepted.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return received.receiver(`http://127.0.0.1:${port}/v1/traces`, () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  });
}

/** A collector of OTLP/gRPC: opentelemetry.proto.collector.trace.v1.TraceService/Export, bodies decoded here. */
export async function startOtlpGrpcReceiver(): Promise<OtlpReceiver> {
  const received = new Received();
  const server = new Server();
  const raw = (value: Buffer) => value;
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestDeserialize: raw,
        requestSerialize: raw,
        responseDeserialize: raw,
        responseSerialize: raw,
      },
    },
    {
      Export: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        received.add(call.request);
        callback(null, Buffer.alloc(0));
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return received.receiver(`http://127.0.0.1:${port}`, () => new Promise((resolve) => server.tryShutdown(() => resolve())));
}

function decode(body: Buffer): ReceivedSpan[] {
  const request = OTLP.toObject(OTLP.decode(body), { longs: Number, defaults: false }) as WireRequest;
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = attributesOf(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((span) => ({
        traceId: hex(span.traceId),
        spanId: hex(span.spanId),
        parentSpanId: hex(span.parentSpanId),
        name: span.name,
        kind: span.kind ?? 0,
        attributes: attributesOf(span.attributes),
        status: { code: span.status?.code ?? 0, message: span.status?.message ?? '' },
        resource,
      })),
    );
  });
}

function attributesOf(list: WireKeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, value?.stringValue ?? value?.boolValue ?? value?.intValue ?? value?.doubleValue]));
}

function hex(bytes: Uint8Array | undefined): string {
  return bytes ? Buffer.from(bytes).toString('hex') : '';
}
