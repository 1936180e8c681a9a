// Wire messages -> the internal request shape. Everything a caller can get wrong is caught here,
// before any store is touched, with a message naming the field.
import { status } from '@grpc/grpc-js';
import { laneOf, type Resource } from '../config/policy.js';
import type { AcquireInput } from '../decide/decision.js';
import { PERMIT_ID } from '../decide/permits.js';
import { withValue } from '../decide/scope.js';
import { invalid, RequestError } from './request-error.js';

export const MAX_STRING_BYTES = 256;
export const MAX_DESCRIPTORS = 16;
/**
 * The largest `cost` or `actual_cost`. Every store must do its arithmetic on costs exactly: JS
 * numbers and Redis's Lua numbers are doubles, exact for integers up to 2^53 (about 9.007e15),
 * and Redis writes a Lua number as plain digits only below 1e17. 10^15 leaves room for the sums
 * and differences the stores form (actual_cost - cost, a count plus a charge before it is
 * clamped to the limit) to stay exact, and it is a bound a caller can remember.
 */
export const MAX_COST = 1_000_000_000_000_000;

/** The longest max_wait: a wait longer than this is no longer rate limiting but a job queue. */
export const MAX_WAIT_MS = 300_000;

/** google.protobuf.Duration as proto-loader gives it (longs as Number). */
export interface WireDuration {
  seconds: number;
  nanos: number;
}

export interface WireAcquireRequest {
  resource: string;
  descriptors: Record<string, string>;
  cost: number;
  max_wait: WireDuration | null;
  priority: number;
  lane: string;
  request_id: string;
}

export interface WireInspectRequest {
  resource: string;
  descriptors: Record<string, string>;
}

export interface WireReleaseRequest {
  permit_id: string;
  actual_cost?: number;
}

export function parseAcquire(req: WireAcquireRequest, resources: ReadonlyMap<string, Resource>): AcquireInput {
  checkLength('request_id', req.request_id);
  checkLength('lane', req.lane);
  const cost = parseCost('cost', req.cost) || 1;
  const maxWaitMs = parseMaxWait(req.max_wait);
  const { resource, scope } = parseInspect(req, resources);
  const lane = laneOf(resource, req.lane);
  if (lane === undefined) {
    const lanes = resource.lanes.length > 0 ? `its lanes are ${resource.lanes.join(', ')}` : 'it has no lanes';
    throw invalid(`lane: resource "${resource.name}" has no lane "${req.lane}" (${lanes})`);
  }
  const input: AcquireInput = { resource, scope, cost, priority: req.priority };
  if (maxWaitMs > 0) input.wait = { maxWaitMs, lane, signal: null };
  return input;
}

/** The resource and the scope its descriptors name: what Acquire and Inspect both ask about. */
export function parseInspect(req: WireInspectRequest, resources: ReadonlyMap<string, Resource>): { resource: Resource; scope: string } {
  checkLength('resource', req.resource);
  if (req.resource === '') throw invalid('resource: must not be empty');
  let count = 0;
  for (const key in req.descriptors) {
    if (++count > MAX_DESCRIPTORS) throw invalid(`descriptors: more than ${MAX_DESCRIPTORS} entries`);
    checkLength('descriptors key', key);
    // The field is named only when it is wrong: nothing is built for a request that is fine.
    if (tooLong(req.descriptors[key]!)) throw invalid(`descriptors["${key}"]: longer than ${MAX_STRING_BYTES} bytes`);
  }

  const resource = resources.get(req.resource);
  if (!resource) throw new RequestError(status.NOT_FOUND, `resource: "${req.resource}" is not in the policy`);
  let scope = resource.name;
  for (const key of resource.keys) {
    // Own properties only: the decoded map is a plain object, so `constructor` is always "there".
    const value = Object.hasOwn(req.descriptors, key) ? req.descriptors[key] : undefined;
    if (typeof value !== 'string' || value === '') {
      throw invalid(`descriptors: resource "${resource.name}" needs a non-empty "${key}"`);
    }
    scope = withValue(scope, value);
  }
  return { resource, scope };
}

export function parseRelease(req: WireReleaseRequest): { permitId: string; actualCost: number | undefined } {
  if (req.permit_id === '') throw invalid('permit_id: must not be empty');
  if (!PERMIT_ID.test(req.permit_id)) {
    throw invalid('permit_id: not a permit sluice issued');
  }
  const actualCost = req.actual_cost === undefined ? undefined : parseCost('actual_cost', req.actual_cost);
  return { permitId: req.permit_id, actualCost };
}

function parseCost(field: string, cost: number): number {
  // uint64 arrives as a JS number, inexact past 2^53: isSafeInteger catches those, the bound the rest.
  if (!Number.isSafeInteger(cost) || cost < 0 || cost > MAX_COST) throw invalid(`${field}: must be at most ${MAX_COST}`);
  return cost;
}

function checkLength(field: string, value: string): void {
  if (tooLong(value)) throw invalid(`${field}: longer than ${MAX_STRING_BYTES} bytes`);
}

function tooLong(value: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings need no byte count.
  return value.length * 3 > MAX_STRING_BYTES && Buffer.byteLength(value, 'utf8') > MAX_STRING_BYTES;
}

/** max_wait in whole milliseconds (a part of one rounds up: it waits at least as long as asked). */
function parseMaxWait(d: WireDuration | null): number {
  if (d === null) return 0;
  if (d.seconds < 0 || d.nanos < 0 || d.nanos > 999_999_999 || !Number.isSafeInteger(d.seconds)) {
    throw invalid('max_wait: must be a non-negative duration');
  }
  if (d.seconds > MAX_WAIT_MS / 1000) throw invalid(`max_wait: must be at most ${MAX_WAIT_MS / 1000}s`);
  const ms = d.seconds * 1000 + Math.ceil(d.nanos / 1_000_000);
  if (ms > MAX_WAIT_MS) throw invalid(`max_wait: must be at most ${MAX_WAIT_MS / 1000}s`);
  return ms;
}
