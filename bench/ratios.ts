// Ratios that make figures from one noisy machine comparable: a sidecar against the floor (the same
// gRPC work with no decision) and the leased sidecar against each peer library, each taken round by
// round: this round's figure over the same round's baseline.
import type { Cell, ScenarioResult } from './scenario.js';
import { roundRatios } from './stats.js';

/** The figures a run can be judged on. */
export type Figure = 'p50' | 'p99' | 'throughput' | 'cpuPerDecision' | 'callsPerGrant' | 'cmdsPerGrant';

/** One figure of one run: latency in µs, decisions/s, server CPU µs per decision, Redis per grant. */
export function figureOf(run: ScenarioResult, figure: Figure): number {
  switch (figure) {
    case 'p50':
      return run.latencyUs.p50;
    case 'p99':
      return run.latencyUs.p99;
    case 'throughput':
      return run.decisionsPerS;
    case 'cpuPerDecision':
      return run.server && run.decisions > 0 ? (run.server.cpuS / run.decisions) * 1e6 : Number.NaN;
    case 'callsPerGrant':
      return run.redisCommands.callsPerGrant;
    case 'cmdsPerGrant':
      return run.redisCommands.perGrant;
  }
}

export function sameCell(a: Cell, b: Cell): boolean {
  return a.system === b.system && a.api === b.api && a.inFlight === b.inFlight;
}

/** The floor a cell is compared with: the no-op server, same API, same requests in flight. */
export function floorOf(cell: Cell): Cell {
  return { system: 'floor', api: cell.api, inFlight: cell.inFlight };
}

/** The cell's figure in each round (index = round; undefined where that round has no run). */
export function byRound(runs: readonly ScenarioResult[], cell: Cell, figure: Figure): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  for (const run of runs) if (sameCell(run, cell)) out[run.round] = figureOf(run, figure);
  return out;
}

/** The cell's figure over the baseline's, round by round (NaN for a round without both). */
export function ratiosByRound(runs: readonly ScenarioResult[], cell: Cell, baseline: Cell, figure: Figure): number[] {
  return roundRatios(byRound(runs, cell, figure), byRound(runs, baseline, figure));
}

/** The cell's own figure, round by round (NaN for a round without a run). */
export function figuresByRound(runs: readonly ScenarioResult[], cell: Cell, figure: Figure): number[] {
  return Array.from(byRound(runs, cell, figure), (x) => x ?? Number.NaN);
}

/** Every distinct cell of the runs, in the order first run. */
export function cellsOf(runs: readonly ScenarioResult[]): Cell[] {
  const cells: Cell[] = [];
  for (const run of runs) {
    if (!cells.some((c) => sameCell(c, run))) cells.push({ system: run.system, api: run.api, inFlight: run.inFlight });
  }
  return cells;
}

/** The peer cells a sluice cell is compared with: each in-process peer at the same requests in flight. */
export function peersOf(runs: readonly ScenarioResult[], cell: Cell): Cell[] {
  return cellsOf(runs).filter((c) => c.api === 'in-process' && c.inFlight === cell.inFlight);
}
