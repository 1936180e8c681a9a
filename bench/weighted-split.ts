// Unequal demand on one key: requests dealt to the sidecars by fixed weights, and whether each
// sidecar's share of the grants followed its share of the demand. Pure: arrays in, figures out.
import type { AnswerLog } from './answer-log.js';
import { GRANTED } from './load.js';

/**
 * One period of a smooth weighted round robin (as nginx deals upstreams): sidecar i appears
 * weights[i] times in sum(weights) slots, spread out rather than in runs, the same every time.
 * Weights [1, 2, 3, 4] give 3 2 1 3 0 2 3 1 2 3.
 */
export function weightedOrder(weights: readonly number[]): Uint8Array {
  if (weights.length === 0 || weights.length > 256 || weights.some((w) => !Number.isInteger(w) || w < 0)) {
    throw new Error(`weights must be 1 to 256 whole numbers, got ${weights.join(', ')}`);
  }
  const total = weights.reduce((a, b) => a + b, 0);
  if (total === 0) throw new Error('weights must not all be 0');
  const order = new Uint8Array(total);
  const current = weights.map(() => 0);
  for (let slot = 0; slot < total; slot++) {
    let pick = 0;
    for (let i = 0; i < weights.length; i++) {
      current[i]! += weights[i]!;
      if (current[i]! > current[pick]!) pick = i;
    }
    current[pick]! -= total;
    order[slot] = pick;
  }
  return order;
}

export interface Shares {
  /** Per sidecar: its requests over all requests sent. */
  demand: number[];
  /** Per sidecar: its grants over all grants. */
  granted: number[];
  /**
   * max over sidecars of |granted share / demand share - 1|: 0 when the grants split exactly as
   * the demand did. Sidecars that were sent nothing are left out; NaN when nothing was granted.
   */
  shareError: number;
}

export function sidecarShares(log: AnswerLog, sidecars: number): Shares {
  const sent = new Array<number>(sidecars).fill(0);
  const granted = new Array<number>(sidecars).fill(0);
  for (let n = 0; n < log.count; n++) {
    const s = log.sidecar[n]!;
    sent[s]!++;
    if (log.outcome[n] === GRANTED) granted[s]!++;
  }
  const totalGranted = granted.reduce((a, b) => a + b, 0);
  const demand = sent.map((x) => x / log.count);
  const grantShare = granted.map((x) => x / totalGranted);
  let shareError = totalGranted > 0 ? 0 : Number.NaN;
  for (let s = 0; s < sidecars; s++) {
    if (sent[s]! > 0) shareError = Math.max(shareError, Math.abs(grantShare[s]! / demand[s]! - 1));
  }
  return { demand, granted: grantShare, shareError };
}
