// The messages of an xDS stream, encoded and decoded with protobufjs from proto/ (the only source
// of message shapes). The resources of a response are left as bytes by the stream and decoded
// here one by one, so that one bad resource is named in a NACK instead of ending the stream.
import protobuf from 'protobufjs';
import { join } from 'node:path';
import { protoDir } from '../paths.js';
import type { RateLimitConfigMessage } from '../envoy/xds-config.js';

/** Every xDS message sluice knows (a management server written for tests uses them too). */
export const xdsRoot = new protobuf.Root();
// protobufjs has google/protobuf/* itself; everything else is in proto/.
xdsRoot.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : join(protoDir, target));
xdsRoot.loadSync(['envoy/service/discovery/v3/ads.proto', 'ratelimit/config/ratelimit/v3/rls_conf.proto'], { keepCase: true });
xdsRoot.resolveAll();

const DiscoveryRequest = xdsRoot.lookupType('envoy.service.discovery.v3.DiscoveryRequest');
const DiscoveryResponse = xdsRoot.lookupType('envoy.service.discovery.v3.DiscoveryResponse');
const RateLimitConfig = xdsRoot.lookupType('ratelimit.config.ratelimit.v3.RateLimitConfig');

export const ADS_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

export interface DiscoveryRequestMessage {
  version_info: string;
  node: { id: string; metadata: { fields: Record<string, { stringValue: string }> }; user_agent_name: string };
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail?: { code: number; message: string };
}

export interface DiscoveryResponseMessage {
  version_info: string;
  resources: { type_url: string; value: Buffer }[];
  type_url: string;
  nonce: string;
}

export function encodeRequest(request: DiscoveryRequestMessage): Buffer {
  return Buffer.from(DiscoveryRequest.encode(DiscoveryRequest.fromObject(request)).finish());
}

/** Throws on bytes that are not a DiscoveryResponse (gRPC then ends the stream with INTERNAL). */
export function decodeResponse(bytes: Buffer): DiscoveryResponseMessage {
  return DiscoveryResponse.toObject(DiscoveryResponse.decode(bytes), TO_OBJECT) as DiscoveryResponseMessage;
}

/** A resource's RateLimitConfig; throws on bytes that are not one. */
export function decodeRateLimitConfig(bytes: Buffer): RateLimitConfigMessage {
  return RateLimitConfig.toObject(RateLimitConfig.decode(bytes), TO_OBJECT) as RateLimitConfigMessage;
}
