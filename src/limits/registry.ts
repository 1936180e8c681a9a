// Every algorithm sluice knows, by the name policy files give it. The stores look an algorithm up
// here and never switch on its name.
import type { Algorithm } from './algorithm.js';
import { concurrency } from './concurrency.js';
import { fixedWindow } from './fixed-window.js';
import { slidingWindow } from './sliding-window.js';
import { tokenBucket } from './token-bucket.js';

export const ALGORITHMS = {
  token_bucket: tokenBucket,
  fixed_window: fixedWindow,
  sliding_window: slidingWindow,
  concurrency,
} as const;

export type AlgorithmName = keyof typeof ALGORITHMS;

/**
 * An algorithm with its state and verdict types erased, as a store holds it: a store keeps each
 * limit's state next to the name of the algorithm that made it, and feeds it to no other.
 */
export type AnyAlgorithm = Algorithm<any, any, any>;

export function algorithmOf(limit: { algorithm: AlgorithmName }): AnyAlgorithm {
  return ALGORITHMS[limit.algorithm];
}

/** True for algorithms that hold slots: freed by Release, never leased. */
export function holdsSlots(limit: { algorithm: AlgorithmName }): boolean {
  return algorithmOf(limit).release !== undefined;
}
