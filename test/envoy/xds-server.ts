// A small xDS management server for the tests (ADS, state of the world), as go-control-plane's
// snapshot cache serves envoyproxy/ratelimit in upstream's tests: each stream gets the snapshot
// set last (unless it already has that version), and every stream gets each new snapshot. It
// records every request a client sends (the first one, ACKs and NACKs), with the stream's headers.
import { Server, ServerCredentials, type Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import { xdsRoot, ADS_METHOD } from '../../src/grpc/xds-protocol.js';
import { RATE_LIMIT_CONFIG_TYPE } from '../../src/envoy/xds-config.js';

const DiscoveryRequest = xdsRoot.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
const DiscoveryResponse = xdsRoot.lookupType('envoy.service.discovery.v3.DiscoveryResponse');
const RateLimitConfig = xdsRoot.lookupType('ratelimit.config.ratelimit.v3.RateLimitConfig');

/** A RateLimitConfig as protobufjs takes it (snake_case fields, enum names). */
export interface RateLimitConfigObject {
  name: string;
  domain: string;
  descriptors?: unknown[];
}

/** A resource as it goes on the wire: a RateLimitConfig, or any bytes under any type. */
export type AnyResource = RateLimitConfigObject | { type_url: string; value: Buffer };

export interface RecordedRequest {
  version_info: string;
  response_nonce: string;
  type_url: string;
  node: { id: string; metadata: Record<string, string> };
  error_detail: { code: number; message: string } | null;
  /** The stream's gRPC metadata, first values. */
  headers: Record<string, string>;
}

export interface XdsServer {
  port: number;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Serves this snapshot to every stream (open now or later). */
  setSnapshot(version: string, resources: AnyResource[]): void;
  /** Sends these bytes as a response on every open stream (not a DiscoveryResponse, say). */
  sendRaw(bytes: Buffer): void;
  /** The first request from `after` on that matches, as soon as it comes. */
  waitForRequest(match: (request: RecordedRequest) => boolean, after?: number, timeoutMs?: number): Promise<RecordedRequest>;
  /** Streams open now. */
  streams(): number;
  /** Stops at once, cutting the streams; `start` serves again on the same port with the same snapshot. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** A RateLimitConfig resource as a DiscoveryResponse carries it (a google.protobuf.Any). */
export function packConfig(config: RateLimitConfigObject): { type_url: string; value: Buffer } {
  return { type_url: RATE_LIMIT_CONFIG_TYPE, value: Buffer.from(RateLimitConfig.encode(RateLimitConfig.fromObject(config)).finish()) };
}

type Stream = ServerDuplexStream<RecordedRequest, Buffer>;

export async function startXdsServer(options: { credentials?: ServerCredentials; port?: number } = {}): Promise<XdsServer> {
  let snapshot: { version: string; resources: AnyResource[] } | null = null;
  let nonce = 0;
  const open = new Set<Stream>();
  const requests: RecordedRequest[] = [];
  const send = (stream: Stream) => {
    if (!snapshot) return;
    const resources = snapshot.resources.map((resource) => ('value' in resource ? resource : packConfig(resource)));
    const response = { version_info: snapshot.version, resources, type_url: RATE_LIMIT_CONFIG_TYPE, nonce: String(++nonce) };
    stream.write(Buffer.from(DiscoveryResponse.encode(DiscoveryResponse.fromObject(response)).finish()));
  };
  const handler = (stream: Stream) => {
    open.add(stream);
    const headers = headersOf(stream.metadata);
    let first = true;
    stream.on('data', (request: RecordedRequest) => {
      requests.push({ ...request, headers });
      // The first request of a stream asks for the snapshot; later ones ACK or NACK what was sent.
      if (first && request.version_info !== snapshot?.version) send(stream);
      first = false;
    });
    stream.on('error', () => open.delete(stream));
    stream.on('end', () => {
      open.delete(stream);
      stream.end();
    });
    stream.on('cancelled', () => open.delete(stream));
  };
  const service = {
    StreamAggregatedResources: {
      path: ADS_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: (value: unknown) => value as Buffer,
      requestDeserialize: decodeRequest,
      responseSerialize: (bytes: Buffer) => bytes,
      responseDeserialize: (bytes: Buffer) => bytes,
    },
  };
  let server: Server | null = null;
  let port = options.port ?? 0;
  const start = async () => {
    server = new Server();
    server.addService(service, { StreamAggregatedResources: handler });
    port = await new Promise<number>((resolve, reject) =>
      server!.bindAsync(`127.0.0.1:${port}`, options.credentials ?? ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
  };
  await start();
  return {
    get port() {
      return port;
    },
    requests,
    setSnapshot(version, resources) {
      snapshot = { version, resources };
      for (const stream of open) send(stream);
    },
    sendRaw(bytes) {
      for (const stream of open) stream.write(bytes);
    },
    async waitForRequest(match, after = 0, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = requests.slice(after).find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no such xDS request in time; requests: ${JSON.stringify(requests.slice(after))}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    streams: () => open.size,
    async stop() {
      open.clear();
      server?.forceShutdown();
      server = null;
    },
    start,
  };
}

function decodeRequest(bytes: Buffer): RecordedRequest {
  const request = DiscoveryRequest.toObject(DiscoveryRequest.decode(bytes), { longs: Number, enums: String, defaults: true }) as {
    version_info: string;
    response_nonce: string;
    type_url: string;
    node: { id: string; metadata: { fields?: Record<string, { stringValue?: string }> } | null } | null;
    error_detail: { code: number; message: string } | null;
  };
  const fields = request.node?.metadata?.fields ?? {};
  return {
    version_info: request.version_info,
    response_nonce: request.response_nonce,
    type_url: request.type_url,
    node: { id: request.node?.id ?? '', metadata: Object.fromEntries(Object.entries(fields).map(([key, value]) => [key, value.stringValue ?? ''])) },
    error_detail: request.error_detail ?? null,
    headers: {},
  };
}

function headersOf(metadata: Metadata): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata.getMap()).map(([key, value]) => [key, String(value)]));
}
