/** The store did not decide: it failed, it was too slow, or the circuit is open. */
export class StoreUnavailable extends Error {
  constructor(
    readonly reason: 'timeout' | 'circuit_open' | 'error',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreUnavailable';
  }
}
