// Plain-text tables for stdout.
import { STREAM_WINDOW } from '../src/grpc/sluice-service.js';
import type { AccuracyResult } from './accuracy.js';
import type { Machine } from './machine.js';
import type { MemoryResult } from './memory.js';
import type { OutageResult } from './outage.js';
import type { OverloadResult, OverloadRun } from './overload.js';
import type { Pass } from './pass.js';
import { cellsOf, figuresByRound, floorOf, peersOf, ratiosByRound, sameCell, type Figure } from './ratios.js';
import { EARLY_SLACK_MS } from './retry-truth.js';
import { scenarioName, type Cell, type ScenarioResult } from './scenario.js';
import { summarise, type Bound, type Summary } from './stats.js';
import { sumTallies } from './tally.js';
import type { TargetResult } from './targets.js';
import type { WaitResult } from './wait.js';

type Value = string | number | null | undefined;

function fmt(value: Value, places = 0): string {
  if (value === null || value === undefined || (typeof value === 'number' && !Number.isFinite(value))) return '-';
  if (typeof value === 'string') return value;
  return value.toLocaleString('en-US', { minimumFractionDigits: places, maximumFractionDigits: places });
}

/** Columns padded to their widest cell; the first column left-aligned, the rest right-aligned. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function machineHeader(m: Machine): string {
  return [
    `machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB, Linux ${m.kernel}`,
    `node ${m.node}, redis-server ${m.redisServer}, load average at start ${m.loadAverage.join(' ')}`,
  ].join('\n');
}

/** `median (min–max)`, or the value alone when there is only one. */
export function fmtSummary(s: Summary, places: number): string {
  if (s.n === 0) return '-';
  return s.n > 1 && s.min !== s.max ? `${fmt(s.median, places)} (${fmt(s.min, places)}–${fmt(s.max, places)})` : fmt(s.median, places);
}

const medianOf = (values: number[]) => summarise(values).median;
const cellLabel = (c: Cell) => `${scenarioName(c)} @${c.inFlight}`;

/** Per cell, the median over the rounds of each figure: context for the ratios, not a result. */
export function figuresTable(runs: readonly ScenarioResult[]): string {
  const rows = cellsOf(runs).map((cell) => {
    const mine = runs.filter((r) => sameCell(r, cell));
    const at = (figure: Figure) => medianOf(figuresByRound(runs, cell, figure));
    const failures = mine.reduce((n, r) => n + r.failed + r.unfinished, 0);
    return [
      failures > 0 ? `${cellLabel(cell)} (${failures} failed)` : cellLabel(cell),
      fmt(mine.length),
      fmt(at('throughput')),
      fmt(at('p50')),
      fmt(at('p99')),
      fmt(at('callsPerGrant'), 4),
      fmt(at('cmdsPerGrant'), 4),
      fmt(at('cpuPerDecision'), 1),
      fmt(medianOf(mine.map((r) => r.server?.rssMb ?? Number.NaN)), 1),
    ];
  });
  return renderTable(['scenario @ in flight', 'rounds', 'decisions/s', 'p50 µs', 'p99 µs', 'calls/grant', 'cmds/grant', 'CPU µs/dec', 'RSS MB'], rows);
}

/** Each sidecar cell against the floor with the same API and requests in flight: median (min–max) of the per-round ratios. */
export function floorRatioTable(runs: readonly ScenarioResult[]): string {
  const rows = cellsOf(runs)
    .filter((c) => c.system !== 'floor' && c.api !== 'in-process')
    .map((cell) => {
      const ratio = (figure: Figure) => fmtSummary(summarise(ratiosByRound(runs, cell, floorOf(cell), figure)), 2);
      return [cellLabel(cell), ratio('p50'), ratio('p99'), ratio('throughput'), ratio('cpuPerDecision')];
    });
  return renderTable(['scenario @ in flight', 'x floor p50', 'x floor p99', 'x floor d/s', 'x floor CPU/dec'], rows);
}

/** sluice-lease's p50 over each in-process peer's at the same requests in flight (below 1: sluice answers faster). */
export function peerRatioTable(runs: readonly ScenarioResult[]): string {
  const rows = cellsOf(runs)
    .filter((c) => c.system === 'sluice-lease')
    .flatMap((cell) =>
      peersOf(runs, cell).map((peer) => [
        `${cellLabel(cell)} / ${peer.system}`,
        fmtSummary(summarise(ratiosByRound(runs, cell, peer, 'p50')), 2),
      ]),
    );
  return rows.length > 0 ? renderTable(['lease p50 / peer p50', 'median (min–max)'], rows) : '';
}

/** decided_by over all rounds, for the cells where anything but STORE decided. */
export function decidedByLines(runs: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const cell of cellsOf(runs)) {
    const tally = sumTallies(runs.filter((r) => sameCell(r, cell)).map((r) => r.decidedBy));
    if (Object.keys(tally).some((by) => by !== 'STORE')) lines.push(`${cellLabel(cell)}: decided_by ${tallyText(tally)}`);
  }
  return lines.join('\n');
}

/** Everything printed for one pass. */
export function passTables(pass: Pass): string {
  const rounds = `${pass.rounds} rounds`;
  const peers = peerRatioTable(pass.runs);
  return [
    `figures (median of ${rounds}; context only: compare the ratios below)`,
    figuresTable(pass.runs),
    `\nagainst the floor, same API and requests in flight: median (min–max) of the ${rounds}' ratios`,
    floorRatioTable(pass.runs),
    ...(peers ? [`\nagainst the peers: median (min–max) of the ${rounds}' ratios`, peers] : []),
    decidedByLines(pass.runs),
  ]
    .filter((part) => part !== '')
    .join('\n');
}

const tallyText = (tally: Record<string, number>) => Object.entries(tally).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';

export function accuracyTable(result: AccuracyResult): string {
  const rounds = (phase: string) => result.phases.filter((p) => p.phase === phase).length;
  const rows = result.phases.map((p) => [
    rounds(p.phase) > 1 ? `${p.phase}, round ${p.round + 1}` : p.phase,
    p.limit,
    fmt(p.demandPerS),
    fmt(p.elapsedS, 2),
    fmt(p.sent),
    fmt(p.granted),
    fmt(p.allowed),
    fmt(p.overshoot),
    `${fmt(p.overshootPct, 2)}%`,
    fmt(p.utilisation, 3),
    fmt(p.ideal),
    fmt(p.ofIdeal, 3),
    fmt(p.failed),
    fmt(p.redisCommands.callsPerGrant, 4),
    fmt(p.redisCommands.perGrant, 4),
    fmt(p.shares?.shareError, 3),
    p.retry ? `${fmt(p.retry.retryEarly * 100, 2)}%` : '-',
    fmt(p.retry?.retryLateMs, 1),
  ]);
  const table = renderTable(
    [
      'phase',
      'limit',
      'demand/s',
      'elapsed s',
      'sent',
      'granted',
      'allowed',
      'overshoot',
      'overshoot %',
      'utilisation',
      'ideal',
      'of ideal',
      'failed',
      'calls/grant',
      'cmds/grant',
      'share error',
      'retry early',
      'late ms',
    ],
    rows,
  );
  const decided = result.phases
    .map((p, i) => `${rows[i]![0]}: decided_by ${tallyText(p.decidedBy)}`)
    .join('\n');
  const percents = (shares: number[]) => `${shares.map((x) => fmt(x * 100, 1)).join(' / ')} %`;
  const split = result.phases.flatMap((p, i) =>
    p.shares && p.retry
      ? [
          `${rows[i]![0]}: sent ${fmt(p.sentPerS)}/s; per sidecar, demand ${percents(p.shares.demand)}, grants ${percents(p.shares.granted)}; ` +
            `retry_after: ${fmt(p.retry.judged)} of ${fmt(p.retry.denials)} denials followed by a grant on their sidecar, ${fmt(p.retry.early)} of them more than ${EARLY_SLACK_MS} ms early ` +
            `(median retry_after ${fmt(p.retry.retryAfterMs, 1)} ms)`,
        ]
      : [],
  );
  const mem = `sidecar RSS MB before ${result.phases.at(-1)?.phase ?? 'many keys'}: ${result.rssMbBeforeManyKeys.join(' ')}; after: ${result.rssMbAfterManyKeys.join(' ')}`;
  const cpu = `sidecar CPU s over all phases: ${result.sidecarCpuS.join(' ')}`;
  return [table, decided, ...split, mem, cpu].join('\n');
}

/**
 * The outage scenario in one row: the dead window's medians over its rounds, its per-round ratios
 * to the unary floor measured between them, and the recovery.
 */
export function outageTable(o: OutageResult): string {
  const runs = [...o.dead, ...o.floor];
  const cell: Cell = { system: 'sluice-outage', api: 'unary', inFlight: o.inFlight };
  const at = (figure: Figure) => medianOf(figuresByRound(runs, cell, figure));
  const ratio = (figure: Figure) => fmtSummary(summarise(ratiosByRound(runs, cell, floorOf(cell), figure)), 2);
  return renderTable(
    ['kill -> open ms', 'dead decisions/s', 'dead p50 µs', 'dead p99 µs', 'x floor p50', 'x floor p99', 'x floor d/s', 'dead for ms', 'restart ms', 'recovery ms', 'first Redis decision ms'],
    [
      [
        fmt(o.killToOpenMs, 1),
        fmt(at('throughput')),
        fmt(at('p50')),
        fmt(at('p99')),
        ratio('p50'),
        ratio('p99'),
        ratio('throughput'),
        fmt(o.deadForMs),
        fmt(o.restartMs),
        fmt(o.recoveryMs),
        fmt(o.firstRedisDecisionMs),
      ],
    ],
  );
}

export function outageLines(o: OutageResult): string {
  const dead = sumTallies(o.dead.map((r) => r.decidedBy));
  return [
    `Redis dead: ${o.dead.length} rounds of ${o.inFlight} in flight, interleaved with ${o.floor.length} of the unary floor ` +
      `(${o.circuitOpenThroughout ? 'circuit open throughout' : 'CIRCUIT NOT OPEN THROUGHOUT'}; decided_by ${tallyText(dead)})`,
    `before the kill (Redis up): ${fmt(o.beforeKill.decisionsPerS)}/s, p50 ${fmt(o.beforeKill.p50Us)} µs, p99 ${fmt(o.beforeKill.p99Us)} µs; decided_by ${tallyText(o.beforeKill.decidedBy)}`,
    `kill -9 -> circuit open (sluice_store_up 0): ${fmt(o.killToOpenMs, 1)} ms; ${fmt(o.transition.decisions)} answers meanwhile, ` +
      `max ${fmt(o.transition.maxUs)} µs, ${o.transition.failed} failed; decided_by ${tallyText(o.transition.decidedBy)}`,
    `recovery: redis-server ready ${fmt(o.restartMs)} ms after its restart (${fmt(o.deadForMs)} ms after the kill); ` +
      `sluice_store_up 1 after ${fmt(o.recoveryMs)} ms, first STORE/LEASE answer after ${fmt(o.firstRedisDecisionMs)} ms; ` +
      `${fmt(o.recovery.decisions)} answers meanwhile, max ${fmt(o.recovery.maxUs)} µs, ${o.recovery.failed} failed`,
  ].join('\n');
}

export function memoryTable(m: MemoryResult): string {
  const rows = m.runs.map((r) => [
    r.store === 'redis' ? 'Redis, leases on' : 'memory store',
    fmt(r.keys),
    fmt(r.sent),
    fmt(r.granted),
    fmt(r.failed),
    fmt(r.elapsedS, 1),
    fmt(r.decisionsPerS),
    fmt(r.rssMbBefore, 1),
    fmt(r.rssMbAfter, 1),
    fmt(r.rssMbPeak, 1),
    fmt(r.heapUsedMbAfter, 1),
    r.redisKeys === null ? '-' : fmt(r.redisKeys),
  ]);
  const table = renderTable(
    ['store', 'keys', 'requests', 'granted', 'failed', 'elapsed s', 'decisions/s', 'RSS MB before', 'RSS MB after', 'RSS MB peak', 'heap MB after', 'Redis keys'],
    rows,
  );
  const decided = m.runs.map((r) => `${r.store}: decided_by ${tallyText(r.decidedBy)}`);
  return [table, ...decided].join('\n');
}

export function overloadTable(o: OverloadResult): string {
  const rows = o.options.levels.map((level) => {
    const runs = o.runs.filter((r) => r.inFlight === level);
    const pick = (f: (r: OverloadRun) => number) => runs.map(f);
    const spread = (f: (r: OverloadRun) => number, places: number) => fmtSummary(summarise(pick(f)), places);
    return [
      fmt(level),
      spread((r) => r.decisionsPerS, 0),
      spread((r) => r.p50Ms, 1),
      spread((r) => r.p99Ms, 1),
      fmt(Math.max(...pick((r) => r.grantedRatio)), 3),
      spread((r) => r.shedShare * 100, 1),
      fmt(pick((r) => r.byPolicy).reduce((a, b) => a + b, 0)),
      spread((r) => r.lagP99Ms, 1),
    ];
  });
  return renderTable(['in flight', 'decisions/s', 'p50 ms', 'p99 ms', 'granted÷allowed (max)', 'shed %', 'by policy', 'loop lag p99 ms'], rows);
}

/** The waiting run: each figure as median (min–max) over its rounds, then a line per round. */
export function waitTable(w: WaitResult): string {
  const { rounds } = w;
  const spread = (values: number[], places: number) => fmtSummary(summarise(values), places);
  const fifo = (f: (p: WaitResult['rounds'][number]['fifo']) => number, places: number) => spread(rounds.map((r) => f(r.fifo)), places);
  const priority = (f: (p: WaitResult['rounds'][number]['priority']) => number, places: number) => spread(rounds.map((r) => f(r.priority)), places);
  const high = `priority ${w.options.priority.high}`;
  const table = renderTable(
    ['figure', 'median (min–max)'],
    [
      ['utilisation: grants ÷ what the limit allows', fifo((p) => p.utilisation, 3)],
      ["grants ÷ a perfect FIFO's grants", fifo((p) => p.granted / p.ideal.granted, 3)],
      ['granted: wait p50 ms', fifo((p) => p.waits.p50Ms, 1)],
      ['  perfect FIFO: wait p50 ms', fifo((p) => p.ideal.p50Ms, 1)],
      ['  p50 − perfect FIFO p50, ms', fifo((p) => p.waits.p50Ms - p.ideal.p50Ms, 1)],
      ['granted: wait p99 ms', fifo((p) => p.waits.p99Ms, 1)],
      ['  perfect FIFO: wait p99 ms', fifo((p) => p.ideal.p99Ms, 1)],
      ['  p99 − perfect FIFO p99, ms', fifo((p) => p.waits.p99Ms - p.ideal.p99Ms, 1)],
      ['Redis calls per grant', fifo((p) => p.redisCommands.callsPerGrant, 2)],
      ['Redis commands per grant', fifo((p) => p.redisCommands.perGrant, 1)],
      ['Redis CPU µs per grant', fifo((p) => (p.redisCpuS / p.granted) * 1e6, 0)],
      ['sidecar CPU µs per request (all four)', fifo((p) => (p.sidecarCpuS / p.sent) * 1e6, 0)],
      ["Jain's index of grant share ÷ demand share", fifo((p) => p.fairness, 4)],
      [`${high} flood: ${high} granted ÷ sent`, priority((p) => p.high.granted / p.high.sent, 3)],
      [`${high} flood: ${high} wait p99 ms`, priority((p) => p.high.p99Ms, 1)],
      [`${high} flood: priority 0 wait p50 ms`, priority((p) => p.low.p50Ms, 1)],
      [`${high} flood: ${high} p99 ÷ priority 0 p50`, priority((p) => p.highP99OverLowP50, 3)],
      [`${high} flood: Redis calls per grant`, priority((p) => p.redisCommands.callsPerGrant, 2)],
    ],
  );
  const percents = (shares: number[]) => `${shares.map((x) => fmt(x * 100, 1)).join(' / ')} %`;
  const window = (most: number[]) => {
    const top = Math.max(...most);
    return `most in flight on one stream ${fmt(top)}${top >= STREAM_WINDOW ? ` (AT ITS WINDOW OF ${STREAM_WINDOW}: requests waited in the client too)` : ''}`;
  };
  const cpu = (phase: { redisCpuS: number; sidecarCpuS: number; elapsedS: number; redisCommands: { calls: number } }) =>
    `CPU over ${fmt(phase.elapsedS, 1)} s: Redis ${fmt(phase.redisCpuS, 2)} s (${fmt((phase.redisCpuS / phase.redisCommands.calls) * 1e6)} µs per call), sidecars ${fmt(phase.sidecarCpuS, 2)} s`;
  const lines = rounds.flatMap(({ round, fifo: f, priority: p }) => [
    `round ${round + 1}, fifo: sent ${fmt(f.sentPerS)}/s, granted ${fmt(f.granted)} of ${fmt(f.sent)} (allowed ${fmt(f.allowed)}, a perfect FIFO ${fmt(f.ideal.granted)}), ${fmt(f.failed)} failed; ` +
      `per sidecar, demand ${percents(f.shares.demand)}, grants ${percents(f.shares.granted)}; ${window(f.mostInFlight)}; ${cpu(f)}; decided_by ${tallyText(f.decidedBy)}`,
    `round ${round + 1}, priority: sent ${fmt(p.sentPerS)}/s, ${high} granted ${fmt(p.high.granted)} of ${fmt(p.high.sent)} (p50 ${fmt(p.high.p50Ms, 1)} ms), ` +
      `priority 0 ${fmt(p.low.granted)} of ${fmt(p.low.sent)} (p99 ${fmt(p.low.p99Ms, 1)} ms), ${fmt(p.failed)} failed; ${window(p.mostInFlight)}; ${cpu(p)}; decided_by ${tallyText(p.decidedBy)}`,
  ]);
  return [table, ...lines].join('\n');
}

const boundText = (b: Bound) => `${b.at === 'most' ? '≤' : '≥'} ${b.value}${b.everyRun ? ', every run' : ''}`;

/** Every target: its bound, median (min–max) over its rounds, how many, and the verdict. */
export function targetsTable(results: readonly TargetResult[]): string {
  // Ratios near their bound need three decimals to show which side they are on; MB do not.
  const places = (s: Summary) => (Math.abs(s.max) >= 10 ? 1 : 3);
  const rows = results.map((t) => [t.text, boundText(t.bound), fmtSummary(t.summary, places(t.summary)), fmt(t.summary.n), t.verdict]);
  return renderTable(['target', 'bound', 'median (min–max)', 'rounds', 'verdict'], rows);
}
