// envoy.service.ratelimit.v3.RateLimitService: Envoy's wire messages in, sluice's Envoy limiter
// (src/envoy) in the middle, Envoy's wire messages out. No decision logic lives here.
import { status, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Decider } from '../decide/decider.js';
import type { Metrics } from '../admin/metrics.js';
import type { EnvoyConfig } from '../envoy/config.js';
import type { EnvoyStats } from '../envoy/stats.js';
import { EnvoyStoreError, shouldRateLimit, type EnvoyAnswer, type LimiterHooks, type EnvoyDescriptor, type EnvoyRequest } from '../envoy/limiter.js';
import { UNIT_SECONDS, unitFromWire } from '../envoy/units.js';
import type { Metadata, MetadataValue } from '../envoy/metadata.js';
import { Overloaded, type Admission } from '../guard/admission.js';
import { internal, invalid, RequestError } from './request-error.js';
import { isStoreFailure } from '../guard/store-unavailable.js';
import type { Tracing } from '../trace/tracing.js';
import { SHOULD_RATE_LIMIT_SPAN } from '../trace/span-names.js';

export const ENVOY_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';

/** Caps on one request, so memory stays bounded whatever a caller sends. */
export const MAX_DOMAIN_BYTES = 256;
export const MAX_ENVOY_DESCRIPTORS = 64;
export const MAX_ENTRIES = 32;
export const MAX_KEY_BYTES = 256;
export const MAX_VALUE_BYTES = 4096;

export interface EnvoyServiceContext {
  decider: Decider;
  /** The config to decide with, read per request (it is reloaded); null without an `envoy:` section. */
  config: () => EnvoyConfig | null;
  metrics: Metrics;
  /** Upstream's per-rule statistics; null without an `envoy:` section. */
  stats: EnvoyStats | null;
  /** Decisions under way, bounded: past it requests are shed. */
  admission: Admission;
  /** Throttled: a dead store fails every request, and the log must not grow at that rate. */
  warn: (obj: object, msg: string) => void;
  /** Spans of each call and of its store calls; null when tracing is off. */
  tracing: Tracing | null;
}

/** RateLimitRequest as proto-loader decodes it (keepCase, longs as Number, enums as String). */
export interface WireRequest {
  domain: string;
  descriptors: WireDescriptor[];
  hits_addend: number;
}

interface WireDescriptor {
  entries: { key: string; value: string }[];
  limit: { requests_per_unit: number; unit: string | number } | null;
  hits_addend: { value: number } | null;
}

/** RateLimitResponse as a handler answers it (proto-loader's shape). */
export type WireResponse = ReturnType<typeof toResponse>;

/**
 * ShouldRateLimit from a decoded request to the response, for every transport that carries it
 * (gRPC, and the HTTP port's /json): the same checks, the same admission, the same limiter.
 * Rejects with what statusOf turns into the caller's status.
 */
export function envoyDecisions(ctx: EnvoyServiceContext): (wire: WireRequest) => Promise<WireResponse> {
  const hooks: LimiterHooks = { decided: (resource, decision) => ctx.metrics.decided(resource, decision), warn: ctx.warn, ...(ctx.stats ? { stats: ctx.stats } : {}) };
  return async (wire) => {
    const config = ctx.config();
    if (!config) {
      throw new RequestError(status.FAILED_PRECONDITION, 'Envoy rate limiting is not configured: add envoy: { config_dir: PATH } to the policy file');
    }
    const request = parseRequest(wire);
    if (!ctx.admission.tryEnter()) throw ctx.admission.refuse();
    try {
      return toResponse(await shouldRateLimit(ctx.decider, config, request, hooks));
    } finally {
      ctx.admission.leave();
    }
  };
}

export function envoyService(ctx: EnvoyServiceContext): UntypedServiceImplementation {
  const decide = envoyDecisions(ctx);
  const answer = (call: ServerUnaryCall<WireRequest, WireResponse>, callback: sendUnaryData<WireResponse>): void => {
    decide(call.request).then(
      (response) => callback(null, response),
      (err) => callback(statusOf(err, ctx)),
    );
  };
  return {
    ShouldRateLimit(call: ServerUnaryCall<WireRequest, WireResponse>, callback: sendUnaryData<WireResponse>) {
      if (ctx.tracing === null) {
        answer(call, callback);
        return;
      }
      // Upstream's span and attributes; the descriptors' values stay out of it (they name users).
      const attributes = { domain: call.request.domain, descriptors: call.request.descriptors.length };
      ctx.tracing.serveUnary(SHOULD_RATE_LIMIT_SPAN, call.metadata, attributes, callback, (traced) => answer(call, traced), describeAnswer);
    },
  };
}

function describeAnswer(response: WireResponse): Record<string, string> {
  return { overall_code: response.overall_code };
}

export function parseRequest(req: WireRequest): EnvoyRequest {
  const domain = req.domain;
  if (domain === '') throw invalid('domain: must not be empty');
  checkLength('domain', domain, MAX_DOMAIN_BYTES);
  if (req.descriptors.length === 0) throw invalid('descriptors: must not be empty');
  if (req.descriptors.length > MAX_ENVOY_DESCRIPTORS) throw invalid(`descriptors: more than ${MAX_ENVOY_DESCRIPTORS}`);
  const descriptors = req.descriptors.map((d, i): EnvoyDescriptor => {
    const at = `descriptors[${i}]`;
    if (d.entries.length === 0) throw invalid(`${at}.entries: must not be empty`);
    if (d.entries.length > MAX_ENTRIES) throw invalid(`${at}.entries: more than ${MAX_ENTRIES}`);
    const entries = d.entries.map((entry, j) => {
      if (entry.key === '') throw invalid(`${at}.entries[${j}].key: must not be empty`);
      checkLength(`${at}.entries[${j}].key`, entry.key, MAX_KEY_BYTES);
      checkLength(`${at}.entries[${j}].value`, entry.value, MAX_VALUE_BYTES);
      return { key: entry.key, value: entry.value };
    });
    let override: EnvoyDescriptor['override'] = null;
    if (d.limit) {
      const unit = unitFromWire(d.limit.unit);
      if (!unit) throw invalid(`${at}.limit.unit: expected one of ${Object.keys(UNIT_SECONDS).join(', ')}`);
      override = { requestsPerUnit: d.limit.requests_per_unit, unit };
    }
    let hits: number | null = null;
    if (d.hits_addend) {
      hits = d.hits_addend.value;
      // uint64 arrives as a JS number; past 2^53 it is no longer exact, so refuse it.
      if (!Number.isSafeInteger(hits) || hits < 0) throw invalid(`${at}.hits_addend: must be at most ${Number.MAX_SAFE_INTEGER}`);
    }
    return { entries, override, hits };
  });
  return { domain, descriptors, hits: req.hits_addend };
}

function checkLength(field: string, value: string, max: number): void {
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings need no byte count.
  if (value.length * 3 > max && Buffer.byteLength(value, 'utf8') > max) throw invalid(`${field}: longer than ${max} bytes`);
}

function toResponse(answer: EnvoyAnswer) {
  return {
    overall_code: answer.overall,
    statuses: answer.statuses.map((s) => ({
      code: s.code,
      current_limit: s.currentLimit ? { name: s.currentLimit.name, requests_per_unit: s.currentLimit.requestsPerUnit, unit: s.currentLimit.unit } : null,
      limit_remaining: s.remaining,
      duration_until_reset: s.resetSeconds === null ? null : { seconds: s.resetSeconds, nanos: 0 },
    })),
    response_headers_to_add: answer.responseHeaders,
    request_headers_to_add: [],
    dynamic_metadata: answer.dynamicMetadata ? structOf(answer.dynamicMetadata) : null,
  };
}

/**
 * google.protobuf.Struct as proto-loader encodes it. Its field names are camelCase whatever
 * keepCase says: protobufjs brings its own definition of the well-known types.
 */
function structOf(map: Metadata): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(map)) Object.defineProperty(fields, key, { value: structValueOf(map[key]!), enumerable: true });
  return { fields };
}

function structValueOf(value: MetadataValue): unknown {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(structValueOf) } };
  return { structValue: structOf(value) };
}

/** The gRPC status of a request that envoyDecisions refused or could not decide (counted, and logged where it is sluice's). */
export function statusOf(err: unknown, ctx: Pick<EnvoyServiceContext, 'metrics' | 'warn'>): { code: status; details: string } {
  if (err instanceof RequestError) {
    ctx.metrics.rejected(err.code);
    return { code: err.code, details: err.message };
  }
  if (err instanceof Overloaded) {
    ctx.metrics.rejected(status.RESOURCE_EXHAUSTED);
    ctx.warn({ reason: err.message }, 'sidecar overloaded: shedding requests (Redis is not the cause)');
    return { code: status.RESOURCE_EXHAUSTED, details: err.message };
  }
  if (!(err instanceof EnvoyStoreError) && !isStoreFailure(err)) return internal(err, ctx);
  ctx.metrics.rejected(status.UNAVAILABLE);
  ctx.warn({ err }, 'Envoy rate limit decision failed: answering UNAVAILABLE');
  const message = err instanceof EnvoyStoreError ? err.message : `store unavailable: ${(err as Error).message}`;
  return { code: status.UNAVAILABLE, details: message };
}
