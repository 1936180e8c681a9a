// Protobuf's JSON mapping of the Envoy RLS messages: a request read from JSON is the object
// proto-loader decodes from the same message on the wire, whichever name form and number form it
// uses, and what protojson refuses is refused naming the field; a response is written as
// protojson writes it (JSON names, enums by name, durations as "Ns", defaults left out).
import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { ENVOY_SERVICE } from '../../src/grpc/envoy-service.js';
import { envoyMessages, servedPackage, serviceOf } from '../../src/grpc/proto.js';
import { readMessage, writeMessage } from '../../src/grpc/protojson.js';
import { RequestError } from '../../src/grpc/request-error.js';

const { request: RateLimitRequest, response: RateLimitResponse } = envoyMessages;
const { requestSerialize, requestDeserialize } = serviceOf(servedPackage, ENVOY_SERVICE).ShouldRateLimit!;

/** What a gRPC handler is given for this request (keepCase names), sent over the wire. */
const overTheWire = (request: object): unknown => requestDeserialize(requestSerialize(request));

const read = (json: unknown) => readMessage(RateLimitRequest, json);

/** The message readMessage refuses `json` with; throws if it reads it. */
function refusal(json: unknown): string {
  try {
    read(json);
  } catch (err) {
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).code).toBe(status.INVALID_ARGUMENT);
    return (err as Error).message;
  }
  throw new Error(`read ${JSON.stringify(json)}`);
}

describe('reading a RateLimitRequest', () => {
  it('gives what proto-loader decodes from the same message on the wire, defaults filled', () => {
    expect(read({})).toEqual(overTheWire({}));
    const entries = [{ key: 'user', value: 'ann' }, { key: 'path' }];
    const wire = {
      domain: 'edge',
      hits_addend: 3,
      descriptors: [{ entries }, { entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 7, unit: 'MINUTE' }, hits_addend: { value: 0 } }],
    };
    // In JSON a wrapper (google.protobuf.UInt64Value) is the value it wraps.
    const snake = { ...wire, descriptors: [{ entries }, { ...wire.descriptors[1], hits_addend: 0 }] };
    const camel = { domain: 'edge', hitsAddend: 3, descriptors: [{ entries }, { entries: [{ key: 'k', value: 'v' }], limit: { requestsPerUnit: 7, unit: 'MINUTE' }, hitsAddend: 0 }] };
    expect(read(snake)).toEqual(overTheWire(wire));
    expect(read(camel)).toEqual(overTheWire(wire));
  });

  it('takes the JSON name and the proto name of every field, numbers as JSON numbers or strings, enums by name or number', () => {
    const expected = overTheWire({ domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 100, unit: 'HOUR' }, hits_addend: { value: 5 } }] });
    for (const limit of [{ requestsPerUnit: 100, unit: 'HOUR' }, { requests_per_unit: '100', unit: 3 }, { requestsPerUnit: 1e2, unit: 'HOUR' }, { requestsPerUnit: '1e2', unit: 3 }]) {
      for (const hits of [{ hitsAddend: 5 }, { hits_addend: '5' }, { hitsAddend: '5.0' }]) {
        expect(read({ domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit, ...hits }] })).toEqual(expected);
      }
    }
  });

  it('leaves a field given as null unset', () => {
    expect(read({ domain: null, descriptors: null, hitsAddend: null })).toEqual(overTheWire({}));
    expect(read({ descriptors: [{ entries: [], limit: null, hitsAddend: null }] })).toEqual(overTheWire({ descriptors: [{ entries: [] }] }));
  });

  it('keeps an enum number it does not know, as proto-loader does (proto3 enums are open)', () => {
    const unknownUnit = { descriptors: [{ entries: [], limit: { requests_per_unit: 1, unit: 9 } }] };
    expect(read(unknownUnit)).toEqual(overTheWire(unknownUnit));
    expect((read(unknownUnit).descriptors as any)[0].limit.unit).toBe(9);
  });

  it('refuses what protojson refuses, naming the field', () => {
    expect(refusal('edge')).toBe('request: expected a JSON object (RateLimitRequest), not "edge"');
    expect(refusal(null)).toBe('request: expected a JSON object (RateLimitRequest), not null');
    expect(refusal({ domain: 'd', Domain: 'd' })).toBe('Domain: unknown field of RateLimitRequest');
    expect(refusal(JSON.parse('{"__proto__": {"domain": "d"}}'))).toBe('__proto__: unknown field of RateLimitRequest');
    expect(refusal({ hitsAddend: 1, hits_addend: 1 })).toBe('hits_addend: hits_addend is given twice');
    expect(refusal({ domain: true })).toBe('domain: expected a JSON string, not true');
    expect(refusal({ descriptors: {} })).toBe('descriptors: expected a JSON array, not {}');
    expect(refusal({ descriptors: [null] })).toBe('descriptors[0]: expected a JSON object (RateLimitDescriptor), not null');
    expect(refusal({ descriptors: [{ entries: [{ key: 'k', valu: 'v' }] }] })).toBe('descriptors[0].entries[0].valu: unknown field of Entry');
    expect(refusal({ descriptors: [{ entries: [{ key: 'k\ud800' }] }] })).toBe('descriptors[0].entries[0].key: not valid Unicode (a lone surrogate)');
    expect(refusal({ descriptors: [{ limit: { unit: 'minute' } }] })).toMatch(/^descriptors\[0\]\.limit\.unit: expected one of UNKNOWN, SECOND, MINUTE, HOUR, DAY, MONTH, YEAR, not "minute"$/);
    expect(refusal({ descriptors: [{ limit: { unit: '2' } }] })).toMatch(/^descriptors\[0\]\.limit\.unit: expected one of .*, not "2"$/);
    expect(refusal({ descriptors: [{ limit: { unit: 1.5 } }] })).toMatch(/^descriptors\[0\]\.limit\.unit: expected one of .* or its number, not 1.5$/);
  });

  it('refuses numbers that are not whole, out of range, or not written as JSON writes them', () => {
    const uint32 = 'expected a whole number from 0 to 4294967295 (uint32), as a JSON number or string';
    expect(read({ hitsAddend: 4294967295 }).hits_addend).toBe(4294967295);
    expect(read({ hitsAddend: '-0' }).hits_addend).toBe(0);
    for (const bad of [4294967296, -1, 1.5, '1.5', ' 1', '1 ', '0x10', '+1', '', '01', 'NaN', true, [1], {}]) {
      expect(refusal({ hitsAddend: bad })).toBe(`hitsAddend: ${uint32}, not ${JSON.stringify(bad)}`);
    }
    // uint64 (the descriptor's hits_addend): past 2^53 it is no longer exact as a double; the
    // request's own checks refuse it there, as they refuse it from the wire.
    expect((read({ descriptors: [{ hitsAddend: '18446744073709551615' }] }).descriptors as any)[0].hits_addend.value).toBe(2 ** 64);
    expect(refusal({ descriptors: [{ hitsAddend: -1 }] })).toBe('descriptors[0].hitsAddend: expected a whole number from 0 to 18446744073709551615 (uint64), as a JSON number or string, not -1');
  });

  it('names a long value shortly', () => {
    expect(refusal({ domain: 7, descriptors: 'x'.repeat(1000) })).toBe('domain: expected a JSON string, not 7');
    expect(refusal({ descriptors: 'x'.repeat(1000) })).toBe(`descriptors: expected a JSON array, not "${'x'.repeat(63)}...`);
  });
});

describe('writing a RateLimitResponse', () => {
  it('leaves out every field at its default, the first enum value among them', () => {
    expect(writeMessage(RateLimitResponse, {})).toEqual({});
    expect(writeMessage(RateLimitResponse, { overall_code: 'UNKNOWN', statuses: [], response_headers_to_add: [], dynamic_metadata: null })).toEqual({});
    expect(writeMessage(RateLimitResponse, { overall_code: 'OK' })).toEqual({ overallCode: 'OK' });
    expect(writeMessage(RateLimitResponse, { overall_code: 2 })).toEqual({ overallCode: 'OVER_LIMIT' });
  });

  it('writes statuses with JSON names, enums by name and durations as seconds; a set message even when empty', () => {
    const response = {
      overall_code: 'OVER_LIMIT',
      statuses: [
        { code: 'OVER_LIMIT', current_limit: { name: '', requests_per_unit: 1, unit: 'MINUTE' }, limit_remaining: 0, duration_until_reset: { seconds: 52, nanos: 0 } },
        { code: 'OK', current_limit: null, limit_remaining: 4294967295, duration_until_reset: null },
        { code: 'OK', current_limit: { name: '', requests_per_unit: 0, unit: 'UNKNOWN' }, duration_until_reset: { seconds: 0, nanos: 0 } },
        { code: 'OK', duration_until_reset: { seconds: 1, nanos: 500_000_000 } },
        { code: 'OK', duration_until_reset: { seconds: 0, nanos: -1 } },
      ],
      response_headers_to_add: [{ key: 'RateLimit-Limit', value: '1' }],
    };
    expect(writeMessage(RateLimitResponse, response)).toEqual({
      overallCode: 'OVER_LIMIT',
      statuses: [
        { code: 'OVER_LIMIT', currentLimit: { requestsPerUnit: 1, unit: 'MINUTE' }, durationUntilReset: '52s' },
        { code: 'OK', limitRemaining: 4294967295 },
        { code: 'OK', currentLimit: {}, durationUntilReset: '0s' },
        { code: 'OK', durationUntilReset: '1.500s' },
        { code: 'OK', durationUntilReset: '-0.000000001s' },
      ],
      responseHeadersToAdd: [{ key: 'RateLimit-Limit', value: '1' }],
    });
  });

  it('writes dynamic metadata (google.protobuf.Struct) as the plain JSON it holds', () => {
    const struct = {
      fields: {
        domain: { stringValue: 'edge' },
        hits: { numberValue: 3 },
        shadow: { boolValue: false },
        none: { nullValue: 'NULL_VALUE' },
        nested: { structValue: { fields: { tags: { listValue: { values: [{ stringValue: 'a' }, { numberValue: 0 }] } } } } },
      },
    };
    Object.defineProperty(struct.fields, '__proto__', { value: { stringValue: 'a key like any other' }, enumerable: true });
    const written = writeMessage(RateLimitResponse, { overall_code: 'OK', dynamic_metadata: struct }) as { dynamicMetadata: Record<string, unknown> };
    expect(JSON.parse(JSON.stringify(written))).toEqual(
      JSON.parse('{"overallCode":"OK","dynamicMetadata":{"domain":"edge","hits":3,"shadow":false,"none":null,"nested":{"tags":["a",0]},"__proto__":"a key like any other"}}'),
    );
    expect(Object.keys(written.dynamicMetadata)).toContain('__proto__');
  });
});
