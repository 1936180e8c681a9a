// sluice's targets, in one table, and what a run says about each: the median and spread of its
// values over the rounds, and a verdict that is "met" only when the whole spread is on the good
// side of the bound. Invariants (`everyRun`) are not met as soon as one run breaks them.
import type { PhaseResult } from './accuracy-phase.js';
import type { AccuracyResult } from './accuracy.js';
import type { MemoryResult } from './memory.js';
import type { OverloadResult } from './overload.js';
import type { Pass } from './pass.js';
import { figuresByRound, floorOf, ratiosByRound, type Figure } from './ratios.js';
import type { Cell } from './scenario.js';
import { summarise, verdict, type Bound, type Summary, type Verdict } from './stats.js';
import type { WaitResult } from './wait.js';

/** Which pass a load target reads: Redis direct, or behind the delay proxy. */
type PassName = 'direct' | 'delayed';

type Source =
  /** Per round, the cell's figure over the floor's (same API, same requests in flight). */
  | { from: 'floor'; pass: PassName; cell: Cell; figure: Figure }
  /** Per round, the cell's p50 over the peer's p50 at the same requests in flight. */
  | { from: 'peer'; pass: PassName; cell: Cell; peer: string }
  /** The cell's own figure, per round. */
  | { from: 'load'; pass: PassName; cell: Cell; figure: Figure }
  /** Per round of a phase of the accuracy run. */
  | { from: 'accuracy'; phase: 'hot' | 'many'; figure: 'callsPerGrant' | 'utilisation' | 'overshoot' | 'shareError' | 'retryEarly' }
  /** Peak RSS of the memory run on one store. */
  | { from: 'memory'; store: 'redis' | 'memory' }
  /** Granted ÷ allowed, or the answers made by the failure policy, of every overload run. */
  | { from: 'overload'; figure: 'grantedRatio' | 'byPolicy' }
  /** Per round of the waiting run's FIFO phase. */
  | { from: 'wait'; figure: 'utilisation' | 'fairness' };

export interface Target {
  /** What is promised, as printed. */
  text: string;
  bound: Bound;
  source: Source;
}

const lease = (api: 'unary' | 'stream', inFlight: number): Cell => ({ system: 'sluice-lease', api, inFlight });

/** Every target sluice is measured against. */
export const TARGETS: readonly Target[] = [
  { text: 'lease unary p50, 1 in flight, x floor', bound: { at: 'most', value: 1.1 }, source: { from: 'floor', pass: 'direct', cell: lease('unary', 1), figure: 'p50' } },
  { text: 'lease unary p50, 32 in flight, x floor', bound: { at: 'most', value: 1.1 }, source: { from: 'floor', pass: 'direct', cell: lease('unary', 32), figure: 'p50' } },
  { text: 'lease unary p99, 32 in flight, x floor', bound: { at: 'most', value: 1.5 }, source: { from: 'floor', pass: 'direct', cell: lease('unary', 32), figure: 'p99' } },
  { text: 'lease stream throughput, 32 in flight, x floor', bound: { at: 'least', value: 0.95 }, source: { from: 'floor', pass: 'direct', cell: lease('stream', 32), figure: 'throughput' } },
  { text: 'lease unary CPU µs per decision, 32 in flight, x floor', bound: { at: 'most', value: 1.3 }, source: { from: 'floor', pass: 'direct', cell: lease('unary', 32), figure: 'cpuPerDecision' } },
  { text: 'lease stream CPU µs per decision, 32 in flight, x floor', bound: { at: 'most', value: 1.3 }, source: { from: 'floor', pass: 'direct', cell: lease('stream', 32), figure: 'cpuPerDecision' } },
  { text: 'hot key under its limit, lease unary: Redis commands per grant', bound: { at: 'most', value: 0.02 }, source: { from: 'load', pass: 'direct', cell: lease('unary', 32), figure: 'cmdsPerGrant' } },
  { text: 'hot key under its limit, lease stream: Redis commands per grant', bound: { at: 'most', value: 0.02 }, source: { from: 'load', pass: 'direct', cell: lease('stream', 32), figure: 'cmdsPerGrant' } },
  { text: 'Redis delayed: lease unary p50, 1 in flight, x rate-limiter-flexible', bound: { at: 'most', value: 1 }, source: { from: 'peer', pass: 'delayed', cell: lease('unary', 1), peer: 'rate-limiter-flexible' } },
  { text: 'Redis delayed: lease unary p50, 32 in flight, x rate-limiter-flexible', bound: { at: 'most', value: 1 }, source: { from: 'peer', pass: 'delayed', cell: lease('unary', 32), peer: 'rate-limiter-flexible' } },
  { text: 'Redis delayed: lease stream p50, 32 in flight, x rate-limiter-flexible', bound: { at: 'most', value: 1 }, source: { from: 'peer', pass: 'delayed', cell: lease('stream', 32), peer: 'rate-limiter-flexible' } },
  { text: 'hot key at its limit (4 sidecars, 2x demand): script calls per grant', bound: { at: 'most', value: 0.05 }, source: { from: 'accuracy', phase: 'hot', figure: 'callsPerGrant' } },
  { text: 'hot key at its limit: utilisation of what the limit allows', bound: { at: 'least', value: 0.98 }, source: { from: 'accuracy', phase: 'hot', figure: 'utilisation' } },
  { text: 'hot key at its limit: overshoot (grants above the limit)', bound: { at: 'most', value: 0, everyRun: true }, source: { from: 'accuracy', phase: 'hot', figure: 'overshoot' } },
  { text: "hot key at its limit: each sidecar's share of grants within 10% of its share of demand", bound: { at: 'most', value: 0.1 }, source: { from: 'accuracy', phase: 'hot', figure: 'shareError' } },
  { text: 'hot key at its limit: denials granted on their sidecar over 5 ms before their retry_after', bound: { at: 'most', value: 0.01 }, source: { from: 'accuracy', phase: 'hot', figure: 'retryEarly' } },
  { text: '10,000 keys, each asked through changing sidecars: overshoot', bound: { at: 'most', value: 0, everyRun: true }, source: { from: 'accuracy', phase: 'many', figure: 'overshoot' } },
  { text: '100,000 active keys, Redis with leases: peak RSS MB', bound: { at: 'most', value: 150, everyRun: true }, source: { from: 'memory', store: 'redis' } },
  { text: '100,000 active keys, memory store: peak RSS MB', bound: { at: 'most', value: 150, everyRun: true }, source: { from: 'memory', store: 'memory' } },
  { text: 'overload, 32 to 5,000 in flight: granted ÷ allowed', bound: { at: 'most', value: 1, everyRun: true }, source: { from: 'overload', figure: 'grantedRatio' } },
  { text: 'overload, Redis healthy: answers made by on_store_failure', bound: { at: 'most', value: 0, everyRun: true }, source: { from: 'overload', figure: 'byPolicy' } },
  { text: 'waiting line (4 sidecars, 2x demand, max_wait): utilisation of what the limit allows', bound: { at: 'least', value: 0.98 }, source: { from: 'wait', figure: 'utilisation' } },
  { text: "waiting line: Jain's index over the sidecars of grant share ÷ demand share", bound: { at: 'least', value: 0.99 }, source: { from: 'wait', figure: 'fairness' } },
];

/** Interleaved comparisons need this many rounds before a spread can say "met" or "not met". */
export const MIN_ROUNDS = 3;

export interface RunParts {
  passes: readonly Pass[];
  accuracy: AccuracyResult | null;
  memory: MemoryResult | null;
  overload: OverloadResult | null;
  wait: WaitResult | null;
}

export interface TargetResult {
  text: string;
  bound: Bound;
  /** One value per round (per run where the figure comes from one run). */
  values: number[];
  summary: Summary;
  verdict: Verdict;
}

/** What the run says about the target; null when the run left out the part it reads (`--only`, `--quick`). */
export function evaluate(target: Target, parts: RunParts): TargetResult | null {
  if (!ran(target.source, parts)) return null;
  const { values, minRounds } = valuesOf(target.source, parts);
  const summary = summarise(values);
  return { text: target.text, bound: target.bound, values, summary, verdict: verdict(summary, target.bound, minRounds) };
}

const passOf = (parts: RunParts, name: PassName) =>
  parts.passes.find((p) => p.runs.length > 0 && (name === 'direct' ? p.redisDelayMs === 0 : p.redisDelayMs > 0));

function ran(source: Source, parts: RunParts): boolean {
  switch (source.from) {
    case 'floor':
    case 'peer':
    case 'load':
      return passOf(parts, source.pass) !== undefined;
    case 'accuracy':
      return parts.accuracy !== null;
    case 'memory':
      return parts.memory !== null;
    case 'overload':
      return parts.overload !== null;
    case 'wait':
      return parts.wait !== null;
  }
}

function valuesOf(source: Source, parts: RunParts): { values: number[]; minRounds: number } {
  switch (source.from) {
    case 'floor':
    case 'peer':
    case 'load': {
      const runs = passOf(parts, source.pass)?.runs ?? [];
      const values =
        source.from === 'floor'
          ? ratiosByRound(runs, source.cell, floorOf(source.cell), source.figure)
          : source.from === 'peer'
            ? ratiosByRound(runs, source.cell, { system: source.peer, api: 'in-process', inFlight: source.cell.inFlight }, 'p50')
            : figuresByRound(runs, source.cell, source.figure);
      return { values, minRounds: MIN_ROUNDS };
    }
    case 'accuracy': {
      const phases = (parts.accuracy?.phases ?? []).filter((p) => (source.phase === 'hot') === (p.keys === 1));
      return { values: phases.map((p) => accuracyFigure(p, source.figure)), minRounds: source.phase === 'hot' ? MIN_ROUNDS : 1 };
    }
    case 'memory':
      return { values: (parts.memory?.runs ?? []).filter((r) => r.store === source.store).map((r) => r.rssMbPeak), minRounds: 1 };
    case 'overload':
      return { values: (parts.overload?.runs ?? []).map((r) => r[source.figure]), minRounds: 1 };
    case 'wait':
      return { values: (parts.wait?.rounds ?? []).map((r) => r.fifo[source.figure]), minRounds: MIN_ROUNDS };
  }
}

/** A phase's figure; NaN (not measured) for one the phase has not (shares and retry_after: one key only). */
function accuracyFigure(p: PhaseResult, figure: (Source & { from: 'accuracy' })['figure']): number {
  switch (figure) {
    case 'callsPerGrant':
      return p.redisCommands.callsPerGrant;
    case 'utilisation':
      return p.granted / p.allowed;
    case 'overshoot':
      return p.overshoot;
    case 'shareError':
      return p.shares?.shareError ?? Number.NaN;
    case 'retryEarly':
      return p.retry?.retryEarly ?? Number.NaN;
  }
}
