// The import graph of src/, read from the source: no module imports itself through others, and
// no room imports a higher one (DESIGN.md, Layout). A new import that breaks either fails here
// with the modules named.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/paths.js';

const SRC = join(packageRoot, 'src');

/** Rooms from the bottom up; a module may import its own room, or one below. */
const RANKS: Record<string, number> = {
  limits: 0,
  // Modules at the top of src/ that import nothing of sluice's.
  'fifo.ts': 0,
  'log.ts': 0,
  'paths.ts': 0,
  config: 1,
  store: 2,
  decide: 3,
  lease: 3,
  wait: 3,
  guard: 3,
  trace: 3,
  envoy: 4,
  admin: 4,
  grpc: 5,
  kube: 5,
  'sidecar.ts': 6,
  cli: 7,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [relative(SRC, path)] : [];
  });
}

/** Module -> the modules of src/ it imports (static, re-exports and dynamic), as paths under src/. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(join(SRC, file), 'utf8');
    const targets = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(?\s*)'(\.{1,2}\/[^']+)'/g)].map((m) =>
      relative(SRC, resolve(SRC, dirname(file), m[1]!)).replace(/\.js$/, '.ts'),
    );
    graph.set(file, targets);
  }
  return graph;
}

const roomOf = (module: string): string => module.split('/')[0]!;

function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (module: string) => {
    state.set(module, 'open');
    path.push(module);
    for (const next of graph.get(module) ?? []) {
      if (state.get(next) === 'open') found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(module, 'done');
  };
  for (const module of graph.keys()) if (!state.has(module)) visit(module);
  return found;
}

describe('the architecture of src/', () => {
  const graph = importGraph();

  it('reads the graph: every import names a module of src/, and there are many', () => {
    expect(graph.size).toBeGreaterThan(50);
    for (const [module, targets] of graph) for (const target of targets) expect(graph.has(target), `${module} imports ${target}`).toBe(true);
    expect(graph.get('decide/decider.ts')).toContain('decide/decision.ts');
  });

  it('has no import cycles', () => {
    expect(cycles(graph).map((cycle) => cycle.join(' -> '))).toEqual([]);
  });

  it('finds a cycle when there is one', () => {
    const looped = new Map(graph);
    looped.set('limits/verdict.ts', ['limits/combine.ts']);
    const found = cycles(looped);
    expect(found).toHaveLength(1);
    expect(new Set(found[0])).toEqual(new Set(['limits/verdict.ts', 'limits/combine.ts']));
  });

  it('every module is in a room of known rank', () => {
    for (const module of graph.keys()) expect(RANKS[roomOf(module)], module).toBeDefined();
  });

  it('no room imports a higher one; limits/ imports only limits/', () => {
    const upward: string[] = [];
    for (const [module, targets] of graph) {
      for (const target of targets) if (RANKS[roomOf(target)]! > RANKS[roomOf(module)]!) upward.push(`${module} -> ${target}`);
      if (roomOf(module) === 'limits') for (const target of targets) if (roomOf(target) !== 'limits') upward.push(`${module} -> ${target}`);
    }
    expect(upward).toEqual([]);
  });

  it('lease/, wait/ and guard/ take only the decision vocabulary from decide/, and it imports none of them', () => {
    const wrong: string[] = [];
    for (const [module, targets] of graph) {
      if (!['lease', 'wait', 'guard'].includes(roomOf(module))) continue;
      for (const target of targets) if (roomOf(target) === 'decide' && target !== 'decide/decision.ts') wrong.push(`${module} -> ${target}`);
    }
    for (const target of graph.get('decide/decision.ts')!) if (['decide', 'lease', 'wait', 'guard'].includes(roomOf(target))) wrong.push(`decide/decision.ts -> ${target}`);
    expect(wrong).toEqual([]);
  });
});
