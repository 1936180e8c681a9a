import { StoreError } from '../store/store.js';

/**
 * The store did not decide. `reason` says why: `timeout` (it said nothing for the whole
 * deadline), `error` (a lost connection, or Redis refusing work: NOAUTH, NOPERM, OOM, READONLY,
 * ...), `script` (a script failed on what one call gave it: that call's problem, not the
 * store's), or `circuit_open` (not asked: the circuit is open after repeated failures).
 * The message starts with "store unavailable: " once, and carries the store's own words.
 */
export class StoreUnavailable extends Error {
  constructor(
    readonly reason: 'timeout' | 'circuit_open' | 'error' | 'script',
    message: string,
    options?: { cause?: unknown },
    /** After a timeout: settles with the store's answer if it comes after all. */
    readonly late: Promise<unknown> | null = null,
    /** After a timeout: the judgement it came from, shared by every call it failed. */
    readonly silence: object | null = null,
  ) {
    super(message, options);
    this.name = 'StoreUnavailable';
  }
}

/** A failure of the store (judged by the guard, or straight from an unguarded store), as opposed to a bug in sluice. */
export function isStoreFailure(err: unknown): boolean {
  return err instanceof StoreUnavailable || err instanceof StoreError;
}
