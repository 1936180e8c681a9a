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

/** What a caller is told of a bug in sluice: nothing of it (it is logged), and never that the store failed. */
export const INTERNAL_DETAILS = 'internal error in the sidecar; it has been logged';

/** Answers an error that is no store failure and no bad request (a bug): INTERNAL, logged. */
export function internal(err: unknown, ctx: { metrics: { rejected(code: status): void }; warn: (obj: object, msg: string) => void }): { code: status; details: string } {
  ctx.metrics.rejected(status.INTERNAL);
  ctx.warn({ err }, 'internal error: answering INTERNAL');
  return { code: status.INTERNAL, details: INTERNAL_DETAILS };
}
