// Wire compatibility with Envoy's data-plane-api, checked in bytes: a RateLimitRequest written by
// hand with data-plane-api's field numbers decodes through proto/envoy, and a RateLimitResponse
// encoded through proto/envoy carries data-plane-api's field numbers and wire types.
import { describe, expect, it } from 'vitest';
import { servedPackage } from '../../src/grpc/proto.js';

const method = (servedPackage['envoy.service.ratelimit.v3.RateLimitService'] as any).ShouldRateLimit;

/** Tag byte(s), then the payload: field numbers here are data-plane-api's. */
const bytes = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const str = (s: string) => Buffer.from(s).toString('hex');

interface WireField {
  field: number;
  wire: number;
  value: bigint | Buffer;
}

/** A minimal protobuf reader: every field of one message, in order. */
function fields(buf: Buffer): WireField[] {
  const out: WireField[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[at++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (at < buf.length) {
    const tag = Number(varint());
    const wire = tag & 7;
    const field = tag >> 3;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      out.push({ field, wire, value: buf.subarray(at, at + len) });
      at += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

/** Fields as field number -> values (varints as numbers, messages parsed, strings decoded when asked). */
function get(buf: Buffer, field: number): WireField[] {
  return fields(buf).filter((f) => f.field === field && (f.wire === 2 || f.value !== 0n));
}

describe('RateLimitRequest', () => {
  it('decodes data-plane-api field numbers: domain 1, descriptors 2 (entries 1, limit 2, hits_addend 3), hits_addend 3', () => {
    const entry = `0a01${str('k')} 1201${str('v')}`; // key = 1, value = 2
    const limit = '0805 1002'; // requests_per_unit = 1, unit = 2 (MINUTE)
    const hits = '0807'; // google.protobuf.UInt64Value.value = 1
    const descriptor = `0a06${entry} 1204${limit} 1a02${hits}`;
    const request = bytes(`0a01${str('d')} 1212${descriptor} 1804`);
    expect(method.requestDeserialize(request)).toEqual({
      domain: 'd',
      descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 5, unit: 'MINUTE' }, hits_addend: { value: 7 } }],
      hits_addend: 4,
    });
  });
});

describe('RateLimitResponse', () => {
  it('encodes data-plane-api field numbers and wire types', () => {
    const buf: Buffer = method.responseSerialize({
      overall_code: 'OVER_LIMIT',
      statuses: [
        {
          code: 'OVER_LIMIT',
          current_limit: { name: 'n', requests_per_unit: 5, unit: 'WEEK' },
          limit_remaining: 1,
          duration_until_reset: { seconds: 9, nanos: 0 },
        },
      ],
      response_headers_to_add: [{ key: 'RateLimit-Limit', value: '5' }],
    });
    expect(get(buf, 1)).toEqual([{ field: 1, wire: 0, value: 2n }]); // overall_code = 1: OVER_LIMIT = 2
    const [status] = get(buf, 2); // statuses = 2
    const s = status!.value as Buffer;
    expect(get(s, 1)).toEqual([{ field: 1, wire: 0, value: 2n }]); // code = 1
    const limit = get(s, 2)[0]!.value as Buffer; // current_limit = 2
    expect(get(limit, 1)).toEqual([{ field: 1, wire: 0, value: 5n }]); // requests_per_unit = 1
    expect(get(limit, 2)).toEqual([{ field: 2, wire: 0, value: 7n }]); // unit = 2: WEEK = 7
    expect((get(limit, 3)[0]!.value as Buffer).toString()).toBe('n'); // name = 3
    expect(get(s, 3)).toEqual([{ field: 3, wire: 0, value: 1n }]); // limit_remaining = 3
    const reset = get(s, 4)[0]!.value as Buffer; // duration_until_reset = 4
    expect(get(reset, 1)).toEqual([{ field: 1, wire: 0, value: 9n }]); // Duration.seconds = 1
    const header = get(buf, 3)[0]!.value as Buffer; // response_headers_to_add = 3
    expect((get(header, 1)[0]!.value as Buffer).toString()).toBe('RateLimit-Limit'); // HeaderValue.key = 1
    expect((get(header, 2)[0]!.value as Buffer).toString()).toBe('5'); // HeaderValue.value = 2
  });

  it('has the other fields where data-plane-api has them', () => {
    const buf: Buffer = method.responseSerialize({
      overall_code: 'OK',
      request_headers_to_add: [{ key: 'x', value: 'y' }],
      raw_body: Buffer.from('body'),
      dynamic_metadata: { fields: { a: { stringValue: 'b' } } },
      quota: { requests: 3, id: 'q' },
    });
    expect(get(buf, 4)).toHaveLength(1); // request_headers_to_add = 4
    expect((get(buf, 5)[0]!.value as Buffer).toString()).toBe('body'); // raw_body = 5
    const metadata = get(buf, 6)[0]!.value as Buffer; // dynamic_metadata = 6
    const entry = get(metadata, 1)[0]!.value as Buffer; // Struct.fields = 1, a map entry
    expect((get(entry, 1)[0]!.value as Buffer).toString()).toBe('a'); // key = 1
    const value = get(entry, 2)[0]!.value as Buffer; // value = 2
    expect((get(value, 3)[0]!.value as Buffer).toString()).toBe('b'); // Value.string_value = 3
    const quota = get(buf, 7)[0]!.value as Buffer; // quota = 7
    expect(get(quota, 1)).toEqual([{ field: 1, wire: 0, value: 3n }]); // Quota.requests = 1
    expect((get(quota, 3)[0]!.value as Buffer).toString()).toBe('q'); // Quota.id = 3
  });
});
