// Plain-text tables for stdout.
import type { AccuracyResult } from './accuracy.js';
import type { Machine } from './machine.js';
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
  'cmds/decision',
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
      fmt(r.redisCommands.perDecision, 2),
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
  ]);
  const table = renderTable(
    ['phase', 'limit', 'demand/s', 'elapsed s', 'sent', 'granted', 'allowed', 'overshoot', 'overshoot %', 'utilisation', 'ideal', 'of ideal', 'failed'],
    rows,
  );
  const decided = result.phases
    .map((p) => `${p.phase}: decided_by ${Object.entries(p.decidedBy).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    .join('\n');
  const mem = `sidecar RSS MB before ${result.phases[1]?.phase ?? 'many keys'}: ${result.rssMbBeforeManyKeys.join(' ')}; after: ${result.rssMbAfterManyKeys.join(' ')}`;
  const cpu = `sidecar CPU s over both phases: ${result.sidecarCpuS.join(' ')}`;
  return [table, decided, mem, cpu].join('\n');
}
