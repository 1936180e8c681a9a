import { status } from '@grpc/grpc-js';

/** A request sluice will not decide, with the gRPC status and message its caller gets. */
export class RequestError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

export const invalid = (message: string): RequestError => new RequestError(status.INVALID_ARGUMENT, message);
