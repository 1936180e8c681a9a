// A streamed message that is not valid protobuf, handed to the handler instead of failing the call
// inside grpc-js. When grpc-js fails a stream itself, it ends the HTTP/2 stream at once and sends
// the status as trailers once the writes under way are flushed; but the handler, told nothing,
// goes on answering the stream's earlier requests, and an answer written after that end leaves
// Node's HTTP/2 stream errored: its end never completes, the trailers are never sent, and the
// caller waits for a status until its deadline (grpc-js 1.14). Decoded here, a bad message takes
// the handler's own way out: the answers under way first, then the status, as grpc-js words it.
import { status, type ServiceDefinition } from '@grpc/grpc-js';
import { RequestError } from './request-error.js';

export class Undecodable {
  /** grpc-js's own answer to a request it cannot decode, so that every method says the same. */
  readonly error = new RequestError(status.INTERNAL, 'Error deserializing request');
}

/** `service` with `method`'s requests decoded without throwing: one that is not valid arrives as an Undecodable. */
export function decodedInHandler(service: ServiceDefinition, method: string): ServiceDefinition {
  const definition = service[method];
  if (!definition) throw new Error(`no method ${method} in the service`);
  const decode = (bytes: Buffer): unknown => {
    try {
      return definition.requestDeserialize(bytes);
    } catch {
      return new Undecodable();
    }
  };
  return { ...service, [method]: { ...definition, requestDeserialize: decode } };
}
