// Plain-text tables for stdout.
import type { AccuracyResult } from './accuracy.js';
import type { Machine } from './machine.js';
import type { MemoryResult } from './memory.js';
import type { OutageResult } from './outage.js';
import type { OverloadResult, OverloadRun } from './overload.js';
import { floorRatios, leaseVsPeers } from './ratios.js';
import type { ScenarioResult } from './scenario.js';

type Cell = string | number | null | undefined;

function fmt(value: Cell, places = 0): string {
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

const SCENARIO_HEADER = [
  'scenario',
  'decisions/s',
  'p50 µs',
  'p99 µs',
  'calls/grant',
  'cmds/grant',
  'CPU s',
  'CPU µs/dec',
  'RSS MB',
  'x floor p50',
  'x floor p99',
  'x floor d/s',
  'gen CPU s',
];

export function scenarioTable(pass: readonly ScenarioResult[]): string {
  const rows = pass.map((r) => {
    const ratios = floorRatios(r, pass);
    const failures = r.failed + r.unfinished;
    return [
      failures > 0 ? `${r.name} (${failures} failed)` : r.name,
      fmt(r.decisionsPerS),
      fmt(r.latencyUs.p50),
      fmt(r.latencyUs.p99),
      fmt(r.redisCommands.callsPerGrant, 4),
      fmt(r.redisCommands.perGrant, 4),
      fmt(r.server?.cpuS, 2),
      fmt(r.server && r.decisions > 0 ? (r.server.cpuS / r.decisions) * 1e6 : null, 1),
      fmt(r.server?.rssMb, 1),
      fmt(ratios?.p50, 2),
      fmt(ratios?.p99, 2),
      fmt(ratios?.throughput, 2),
      fmt(r.loadGeneratorCpuS, 2),
    ];
  });
  return renderTable(SCENARIO_HEADER, rows);
}

/** The ratios the brief asks for beyond the table: stream throughput and lease vs peers. */
export function ratioLines(pass: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const r of pass.filter((x) => x.api === 'stream' && x.system !== 'floor')) {
    lines.push(`${r.name}: throughput ${fmt(floorRatios(r, pass)?.throughput, 2)}x the stream floor`);
  }
  for (const p of leaseVsPeers(pass)) lines.push(`${p.sluice} p50 / ${p.peer} p50 = ${fmt(p.p50, 2)}`);
  for (const r of pass) {
    const other = Object.entries(r.decidedBy).filter(([by]) => by !== 'STORE');
    if (other.length > 0) lines.push(`${r.name}: decided_by ${Object.entries(r.decidedBy).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  return lines.join('\n');
}

export function accuracyTable(result: AccuracyResult): string {
  const rows = result.phases.map((p) => [
    p.phase,
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
    ],
    rows,
  );
  const decided = result.phases
    .map((p) => `${p.phase}: decided_by ${Object.entries(p.decidedBy).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    .join('\n');
  const mem = `sidecar RSS MB before ${result.phases[1]?.phase ?? 'many keys'}: ${result.rssMbBeforeManyKeys.join(' ')}; after: ${result.rssMbAfterManyKeys.join(' ')}`;
  const cpu = `sidecar CPU s over both phases: ${result.sidecarCpuS.join(' ')}`;
  return [table, decided, mem, cpu].join('\n');
}

/** The outage scenario in one row: the dead window against the unary floor, and the recovery. */
export function outageTable(o: OutageResult, pass: readonly ScenarioResult[]): string {
  const ratios = floorRatios(o.dead, pass);
  const d = o.dead;
  return renderTable(
    [
      'kill -> open ms',
      'dead decisions/s',
      'dead p50 µs',
      'dead p99 µs',
      'x floor p50',
      'x floor p99',
      'x floor d/s',
      'dead for ms',
      'restart ms',
      'recovery ms',
      'first Redis decision ms',
    ],
    [
      [
        fmt(o.killToOpenMs, 1),
        fmt(d.decisionsPerS),
        fmt(d.latencyUs.p50),
        fmt(d.latencyUs.p99),
        fmt(ratios?.p50, 2),
        fmt(ratios?.p99, 2),
        fmt(ratios?.throughput, 2),
        fmt(o.deadForMs),
        fmt(o.restartMs),
        fmt(o.recoveryMs),
        fmt(o.firstRedisDecisionMs),
      ],
    ],
  );
}

export function outageLines(o: OutageResult, pass: readonly ScenarioResult[]): string {
  const ratios = floorRatios(o.dead, pass);
  const by = (tally: Record<string, number>) => Object.entries(tally).map(([k, v]) => `${k}=${v}`).join(' ') || 'none';
  return [
    `${o.dead.name}: p50 ${fmt(ratios?.p50, 2)}x, p99 ${fmt(ratios?.p99, 2)}x, decisions/s ${fmt(ratios?.throughput, 2)}x the unary floor` +
      ` (${o.circuitOpenThroughout ? 'circuit open throughout' : 'CIRCUIT NOT OPEN THROUGHOUT'}; decided_by ${by(o.dead.decidedBy)})`,
    `before the kill (Redis up): ${fmt(o.beforeKill.decisionsPerS)}/s, p50 ${fmt(o.beforeKill.p50Us)} µs, p99 ${fmt(o.beforeKill.p99Us)} µs; decided_by ${by(o.beforeKill.decidedBy)}`,
    `kill -9 -> circuit open (sluice_store_up 0): ${fmt(o.killToOpenMs, 1)} ms; ${fmt(o.transition.decisions)} answers meanwhile, ` +
      `max ${fmt(o.transition.maxUs)} µs, ${o.transition.failed} failed; decided_by ${by(o.transition.decidedBy)}`,
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
  const decided = m.runs.map((r) => `${r.store}: decided_by ${Object.entries(r.decidedBy).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return [table, ...decided].join('\n');
}

/** Median and spread of one figure over a level's repeats: `median (min–max)`. */
function spread(values: number[], places: number): string {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return sorted.length > 1 ? `${fmt(median, places)} (${fmt(sorted[0], places)}–${fmt(sorted.at(-1), places)})` : fmt(median, places);
}

export function overloadTable(o: OverloadResult): string {
  const rows = o.options.levels.map((level) => {
    const runs = o.runs.filter((r) => r.inFlight === level);
    const pick = (f: (r: OverloadRun) => number) => runs.map(f);
    return [
      fmt(level),
      spread(pick((r) => r.decisionsPerS), 0),
      spread(pick((r) => r.p50Ms), 1),
      spread(pick((r) => r.p99Ms), 1),
      fmt(Math.max(...pick((r) => r.grantedRatio)), 3),
      spread(pick((r) => r.shedShare * 100), 1),
      fmt(pick((r) => r.byPolicy).reduce((a, b) => a + b, 0)),
      spread(pick((r) => r.lagP99Ms), 1),
    ];
  });
  return renderTable(['in flight', 'decisions/s', 'p50 ms', 'p99 ms', 'granted÷allowed (max)', 'shed %', 'by policy', 'loop lag p99 ms'], rows);
}
