// The targets table read against made-up runs: the right cells, per-round ratios, the verdict, and
// nothing said about a part the run left out.
import { describe, expect, it } from 'vitest';
import type { PhaseResult } from '../../bench/accuracy-phase.js';
import type { Pass } from '../../bench/pass.js';
import type { ScenarioResult } from '../../bench/scenario.js';
import { evaluate, TARGETS, type RunParts } from '../../bench/targets.js';
import type { FifoPhase, WaitResult } from '../../bench/wait.js';

const P50_AT_1 = TARGETS.find((t) => t.text === 'lease unary p50, 1 in flight, x floor')!;

const run = (system: string, round: number, p50: number): ScenarioResult =>
  ({ system, api: 'unary', inFlight: 1, round, latencyUs: { p50 } }) as ScenarioResult;

function parts(runs: ScenarioResult[], redisDelayMs = 0): RunParts {
  const pass: Pass = { redisDelayMs, rounds: 3, runs, outage: null, errors: [] };
  return { passes: [pass], accuracy: null, memory: null, overload: null, wait: null };
}

describe('evaluate', () => {
  it('takes the lease p50 over the same round floor p50 of the direct pass', () => {
    const runs = [run('floor', 0, 100), run('sluice-lease', 0, 105), run('sluice-lease', 1, 99), run('floor', 1, 110), run('floor', 2, 100), run('sluice-lease', 2, 108)];
    const result = evaluate(P50_AT_1, parts(runs))!;
    expect(result.values).toEqual([1.05, 0.9, 1.08]);
    expect(result.summary).toMatchObject({ median: 1.05, min: 0.9, max: 1.08, n: 3 });
    expect(result.verdict).toBe('met');
  });

  it('is not resolved when one round crosses the bound, or when only two rounds were measured', () => {
    const crossing = [run('floor', 0, 100), run('sluice-lease', 0, 105), run('floor', 1, 100), run('sluice-lease', 1, 120), run('floor', 2, 100), run('sluice-lease', 2, 101)];
    expect(evaluate(P50_AT_1, parts(crossing))!.verdict).toBe('not resolved');
    expect(evaluate(P50_AT_1, parts([run('floor', 0, 100), run('sluice-lease', 0, 100), run('floor', 1, 100), run('sluice-lease', 1, 100)]))!.verdict).toBe('not resolved');
  });

  it('says nothing about a part the run left out, and "not measured" about a cell that did not run', () => {
    expect(evaluate(P50_AT_1, parts([run('floor', 0, 100)], 1))).toBeNull();
    expect(evaluate(P50_AT_1, parts([run('floor', 0, 100)]))!.verdict).toBe('not measured');
  });
});

describe('the hot key targets of the accuracy run', () => {
  const SHARES = TARGETS.find((t) => t.text.includes('share of grants within 10%'))!;
  const RETRY = TARGETS.find((t) => t.text.includes('retry_after'))!;
  const hot = (shareError: number, retryEarly: number) =>
    ({ keys: 1, shares: { demand: [], granted: [], shareError }, retry: { retryEarly } }) as unknown as PhaseResult;
  const many = { keys: 10_000, shares: null, retry: null } as unknown as PhaseResult;
  const accuracy = (phases: PhaseResult[]): RunParts => ({
    passes: [],
    accuracy: { sidecars: 4, redisUrl: '', phases, rssMbBeforeManyKeys: [], rssMbAfterManyKeys: [], sidecarCpuS: [] },
    memory: null,
    overload: null,
    wait: null,
  });

  it('read each hot round, never the many-keys phase, and need three rounds to be met', () => {
    const run = accuracy([hot(0.04, 0), hot(0.09, 0.002), hot(0.06, 0.01), many]);
    expect(evaluate(SHARES, run)).toMatchObject({ values: [0.04, 0.09, 0.06], verdict: 'met' });
    expect(evaluate(RETRY, run)).toMatchObject({ values: [0, 0.002, 0.01], verdict: 'met' });
    expect(evaluate(SHARES, accuracy([hot(0.04, 0), hot(0.05, 0), many]))!.verdict).toBe('not resolved');
  });

  it('are not met when every round is past the bound', () => {
    const run = accuracy([hot(0.2, 0.05), hot(0.11, 0.02), hot(0.3, 0.5)]);
    expect(evaluate(SHARES, run)!.verdict).toBe('not met');
    expect(evaluate(RETRY, run)!.verdict).toBe('not met');
  });
});

describe('the waiting line targets', () => {
  const UTILISATION = TARGETS.find((t) => t.text.startsWith('waiting line') && t.text.includes('utilisation'))!;
  const FAIRNESS = TARGETS.find((t) => t.text.startsWith('waiting line') && t.text.includes("Jain's index"))!;
  const waitRun = (rounds: [utilisation: number, fairness: number][]): RunParts => ({
    passes: [],
    accuracy: null,
    memory: null,
    overload: null,
    wait: {
      rounds: rounds.map(([utilisation, fairness], round) => ({ round, fifo: { utilisation, fairness } as FifoPhase, priority: {} })),
    } as unknown as WaitResult,
  });

  it("read each round's FIFO phase, at least 0.98 of what the limit allows and a fairness index of at least 0.99", () => {
    const run = waitRun([[0.99, 0.995], [0.981, 0.999], [0.985, 0.99]]);
    expect(evaluate(UTILISATION, run)).toMatchObject({ values: [0.99, 0.981, 0.985], verdict: 'met' });
    expect(evaluate(FAIRNESS, run)).toMatchObject({ values: [0.995, 0.999, 0.99], verdict: 'met' });
  });

  it('are not resolved when a round crosses the bound, not met when every round is under it', () => {
    expect(evaluate(UTILISATION, waitRun([[0.99, 1], [0.97, 1], [0.99, 1]]))!.verdict).toBe('not resolved');
    expect(evaluate(FAIRNESS, waitRun([[1, 0.96], [1, 0.9], [1, 0.98]]))!.verdict).toBe('not met');
    expect(evaluate(UTILISATION, waitRun([[0.99, 1], [0.99, 1]]))!.verdict).toBe('not resolved');
  });

  it('say nothing when the waiting run did not run', () => {
    expect(evaluate(UTILISATION, { passes: [], accuracy: null, memory: null, overload: null, wait: null })).toBeNull();
  });
});
