// Ratios that make figures from one noisy machine comparable: sluice against the floor (the same
// gRPC work with no decision) and the leased sluice against each peer library.
import type { ScenarioResult } from './scenario.js';

export interface FloorRatios {
  /** p50 / the floor's p50, same API (unary vs unary floor, stream vs stream floor). */
  p50: number;
  p99: number;
  /** decisions/s / the floor's decisions/s. */
  throughput: number;
}

export interface PeerRatio {
  sluice: string;
  peer: string;
  /** sluice's p50 / the peer's p50: below 1 means sluice answers faster. */
  p50: number;
}

const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a) ? Math.round((a / b) * 100) / 100 : NaN);

/** Against the floor of the same pass and API; null for the floor itself and in-process peers. */
export function floorRatios(row: ScenarioResult, pass: readonly ScenarioResult[]): FloorRatios | null {
  if (row.system === 'floor' || row.api === 'in-process') return null;
  const floor = pass.find((r) => r.system === 'floor' && r.api === row.api);
  if (!floor) return null;
  return {
    p50: ratio(row.latencyUs.p50, floor.latencyUs.p50),
    p99: ratio(row.latencyUs.p99, floor.latencyUs.p99),
    throughput: ratio(row.decisionsPerS, floor.decisionsPerS),
  };
}

/** sluice-lease (unary and stream) p50 against each in-process peer's p50. */
export function leaseVsPeers(pass: readonly ScenarioResult[]): PeerRatio[] {
  const out: PeerRatio[] = [];
  for (const lease of pass.filter((r) => r.system === 'sluice-lease')) {
    for (const peer of pass.filter((r) => r.api === 'in-process')) {
      out.push({ sluice: lease.name, peer: peer.name, p50: ratio(lease.latencyUs.p50, peer.latencyUs.p50) });
    }
  }
  return out;
}
