// Wire messages -> the internal request shape. Everything a caller can get wrong is caught here,
// before any store is touched, with a message naming the field.
import { status } from '@grpc/grpc-js';
import type { Resource } from '../config/policy.js';
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

export interface WireReleaseRequest {
  permit_id: string;
  actual_cost?: number;
}

export function parseAcquire(req: WireAcquireRequest, resources: ReadonlyMap<string, Resource>): AcquireInput {
  checkLength('resource', req.resource);
  if (req.resource === '') throw invalid('resource: must not be empty');
  checkLength('request_id', req.request_id);
  checkLength('lane', req.lane);
  const cost = parseCost('cost', req.cost) || 1;
  checkDuration('max_wait', req.max_wait);

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
  return { resource, scope, cost, priority: req.priority };
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

function checkDuration(field: string, d: WireDuration | null): void {
  if (d === null) return;
  if (d.seconds < 0 || d.nanos < 0 || d.nanos > 999_999_999 || !Number.isSafeInteger(d.seconds)) {
    throw invalid(`${field}: must be a non-negative duration`);
  }
}
