// How much budget a sidecar should lease for a key: pure arithmetic over the key's recent demand.

/**
 * A key's recent demand on this sidecar, decaying exponentially: requests and the units they
 * cost, per second, as of `at`. Both decay together, so a request costs one Math.exp. Mutated in
 * place: it lives on a hot path.
 */
export interface Demand {
  requests: number;
  units: number;
  at: number;
}

/** Demand is averaged over about this long: short enough to follow a burst, long enough to be steady. */
export const DEMAND_WINDOW_MS = 1_000;

/** Counts one request of `cost` units at `now`. */
export function observe(demand: Demand, now: number, cost: number): void {
  if (now > demand.at) {
    const decay = Math.exp((demand.at - now) / DEMAND_WINDOW_MS);
    demand.requests *= decay;
    demand.units *= decay;
    demand.at = now;
  }
  demand.requests += 1000 / DEMAND_WINDOW_MS;
  demand.units += (cost * 1000) / DEMAND_WINDOW_MS;
}

/** Requests per second at `now`, or units per second for a limit that counts cost. */
export function demandAt(demand: Demand, now: number, countsRequests: boolean): number {
  const perSecond = countsRequests ? demand.requests : demand.units;
  return now > demand.at ? perSecond * Math.exp((demand.at - now) / DEMAND_WINDOW_MS) : perSecond;
}

/** A lease covers about this much of the local demand, so refills are rare but blocks small. */
export const LEASE_HORIZON_MS = 100;

/** Below this many requests per horizon a key is cold: a lease would strand more than it saves. */
export const MIN_LEASED_REQUESTS = 4;

export interface BlockInput {
  /** Units per second this sidecar has been asking of the limit. */
  demandPerSecond: number;
  capacity: number;
  maxFraction: number;
  /** What the limit had left at the last take; Infinity if unknown. */
  storeLeft: number;
  /** What the waiting request needs: a block is never smaller. */
  need: number;
  /** For a limit with a schedule (a token bucket), the most units one take asks for demand (sliceUnits); 0 otherwise. */
  slice: number;
}

/**
 * The units to ask a limit for: about LEASE_HORIZON_MS of local demand, and at most maxFraction
 * of the limit.
 * - A window's units are all there at once: a block takes at most a quarter of what the store
 *   still has, so that blocks shrink towards single requests as the window runs out and no
 *   sidecar strands what others could use.
 * - A token bucket's units fall due one by one, and a block may take them ahead of their time (a
 *   slice of the schedule): at its limit the bucket never has more than a few units at once, and
 *   a slice is what keeps the key off the store. It spans at most maxFraction of a second of the
 *   schedule (or maxFraction of the burst, if more), so a sidecar that dies holding one strands
 *   at most that. Slices follow each sidecar's demand, so sidecars share the schedule in
 *   proportion to what they are asked.
 */
export function blockSize(b: BlockInput): number {
  const demand = Math.ceil((b.demandPerSecond * LEASE_HORIZON_MS) / 1000);
  if (b.slice > 0) return Math.max(b.need, Math.min(demand, b.slice));
  return Math.max(b.need, Math.min(demand, Math.floor(b.capacity * b.maxFraction), Math.floor(b.storeLeft / 4)));
}

/** The most units a take asks of a schedule for demand: maxFraction of the burst, or of one second of its rate, whichever is more. */
export function sliceUnits(capacity: number, maxFraction: number, stepMs: number): number {
  return Math.max(Math.floor(capacity * maxFraction), Math.floor((maxFraction * 1000) / stepMs));
}
