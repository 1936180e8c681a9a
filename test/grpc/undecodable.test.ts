// The AcquireStream's messages are decoded without throwing: a bad one reaches the handler.
import { describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { serviceOf, servedPackage } from '../../src/grpc/proto.js';
import { decodedInHandler, Undecodable } from '../../src/grpc/undecodable.js';

const service = serviceOf(servedPackage, 'sluice.v1.RateLimiter');
const wrapped = decodedInHandler(service, 'AcquireStream');
const CUT_SHORT = Buffer.from([0xff, 0xff]);

describe('decodedInHandler', () => {
  it('decodes a valid message as before', () => {
    const bytes = service.AcquireStream!.requestSerialize({ resource: 'api', descriptors: { tenant: 'a' }, request_id: 'r1' });
    expect(wrapped.AcquireStream!.requestDeserialize(bytes)).toEqual(service.AcquireStream!.requestDeserialize(bytes));
  });

  it('hands a message that is not protobuf over as an Undecodable with the status grpc-js would send', () => {
    expect(() => service.AcquireStream!.requestDeserialize(CUT_SHORT)).toThrow();
    const decoded = wrapped.AcquireStream!.requestDeserialize(CUT_SHORT);
    expect(decoded).toBeInstanceOf(Undecodable);
    expect((decoded as Undecodable).error).toMatchObject({ code: status.INTERNAL, message: 'Error deserializing request' });
  });

  it('leaves the other methods as they were', () => {
    for (const method of ['Acquire', 'Release', 'Inspect']) expect(wrapped[method]).toBe(service[method]);
    expect(wrapped.AcquireStream).toMatchObject({ path: service.AcquireStream!.path, requestStream: true, responseStream: true });
  });

  it('refuses a method the service does not have', () => {
    expect(() => decodedInHandler(service, 'NoSuchMethod')).toThrow(/NoSuchMethod/);
  });
});
