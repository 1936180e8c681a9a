// An xDS client (ADS, state of the world) for one resource type: it asks the management server
// for every resource of the type, hands each response's resources to `accept`, and answers the
// server with an ACK (the response's version is applied) or a NACK (the previous version stays,
// error_detail says why). When the stream ends or cannot start, it reconnects after a backoff
// (backoff.ts), asking again with the version it has, and the backoff starts over once a
// response arrives. Responses past maxMessageBytes are refused by gRPC and end the stream.
import { credentials, Client, Metadata, status, type ChannelCredentials, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { XdsOptions } from '../config/policy.js';
import { backoffDelay } from './backoff.js';
import { ADS_METHOD, decodeRateLimitConfig, decodeResponse, encodeRequest, type DiscoveryRequestMessage, type DiscoveryResponseMessage } from './xds-protocol.js';
import type { RateLimitConfigMessage } from '../envoy/xds-config.js';

/** What a NACK says at most: the management server logs it, and the problems are in sluice's log too. */
export const MAX_ERROR_DETAIL = 4_096;

/** google.rpc.Code INVALID_ARGUMENT: the resources are not valid. */
const INVALID_ARGUMENT = 3;

export interface XdsClientOptions {
  xds: XdsOptions;
  /** The resource type asked for; resources of another type are refused. */
  typeUrl: string;
  log: Logger;
  /** Applies a response's resources; the problems that keep it from being applied (none: applied). */
  accept: (resources: RateLimitConfigMessage[], version: string) => string[];
  random?: () => number;
}

export class XdsClient {
  private readonly client: Client;
  private call: ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage> | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Reconnect attempts since the last response. */
  private attempt = 0;
  /** The version of the last response applied; sent again on every new stream. */
  private appliedVersion = '';
  private closed = false;

  constructor(private readonly options: XdsClientOptions) {
    const { xds } = options;
    this.client = new Client(xds.server, channelCredentials(xds), {
      'grpc.max_receive_message_length': xds.maxMessageBytes,
      // A connection whose peer is gone without a word is noticed, and the stream started again.
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_timeout_ms': 20_000,
      ...(xds.tls?.serverName ? { 'grpc.ssl_target_name_override': xds.tls.serverName, 'grpc.default_authority': xds.tls.serverName } : {}),
    });
  }

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.call = null;
    this.client.close();
  }

  private connect(): void {
    const { xds, log } = this.options;
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(xds.headers)) metadata.add(key, value);
    const call = this.client.makeBidiStreamRequest(ADS_METHOD, encodeRequest, decodeResponse, metadata);
    this.call = call;
    call.on('data', (response: DiscoveryResponseMessage) => {
      this.attempt = 0;
      if (this.call === call) call.write(this.answer(response));
    });
    // Every end of the stream comes with its status; the error event repeats it.
    call.on('error', () => undefined);
    call.on('status', (ended: StatusObject) => {
      if (this.call !== call || this.closed) return;
      this.call = null;
      const delayMs = backoffDelay(this.attempt++, xds.retry, this.options.random);
      log.warn({ server: xds.server, code: status[ended.code], details: ended.details, retryInMs: delayMs }, 'xDS stream ended; reconnecting');
      this.timer = setTimeout(() => this.connect(), delayMs);
    });
    call.write(this.request(this.appliedVersion, ''));
  }

  /** The ACK or NACK of a response. */
  private answer(response: DiscoveryResponseMessage): DiscoveryRequestMessage {
    const problems = this.apply(response);
    if (problems.length === 0) {
      this.appliedVersion = response.version_info;
      return this.request(response.version_info, response.nonce);
    }
    return { ...this.request(this.appliedVersion, response.nonce), error_detail: { code: INVALID_ARGUMENT, message: errorDetail(problems) } };
  }

  /** The problems of a response: its type, its resources' bytes, then what `accept` finds. */
  private apply(response: DiscoveryResponseMessage): string[] {
    const { typeUrl } = this.options;
    if (response.type_url !== typeUrl) return [`expected resources of type ${typeUrl}, not ${response.type_url || '(none)'}`];
    const problems: string[] = [];
    const resources: RateLimitConfigMessage[] = [];
    response.resources.forEach((resource, i) => {
      if (resource.type_url !== typeUrl) {
        problems.push(`resource [${i}]: expected type ${typeUrl}, not ${resource.type_url || '(none)'}`);
        return;
      }
      try {
        resources.push(decodeRateLimitConfig(resource.value));
      } catch (err) {
        problems.push(`resource [${i}]: not a RateLimitConfig: ${(err as Error).message}`);
      }
    });
    if (problems.length > 0) return problems;
    try {
      return this.options.accept(resources, response.version_info);
    } catch (err) {
      // A resource nested past what the stack holds, say: refused like any other bad resource.
      return [`cannot read the resources: ${(err as Error).message}`];
    }
  }

  private request(version: string, nonce: string): DiscoveryRequestMessage {
    const { xds, typeUrl } = this.options;
    const fields = Object.fromEntries(Object.entries(xds.nodeMetadata).map(([key, value]) => [key, { stringValue: value }]));
    return {
      version_info: version,
      node: { id: xds.nodeId, metadata: { fields }, user_agent_name: 'sluice' },
      resource_names: [],
      type_url: typeUrl,
      response_nonce: nonce,
    };
  }
}

function channelCredentials(xds: XdsOptions): ChannelCredentials {
  const tls = xds.tls;
  if (!tls) return credentials.createInsecure();
  const pem = (text: string | null) => (text === null ? null : Buffer.from(text));
  return credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** The problems as a NACK's message, cut to MAX_ERROR_DETAIL characters. */
export function errorDetail(problems: readonly string[]): string {
  const text = problems.join('\n');
  if (text.length <= MAX_ERROR_DETAIL) return text;
  const tail = `\n... cut short: ${problems.length} problem(s) in all, each in sluice's log`;
  return `${text.slice(0, MAX_ERROR_DETAIL - tail.length)}${tail}`;
}
