// What a reload keeps and what it replaces, decided from two loaded policies.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { mergeResources, restartOnlyChanges } from '../../src/config/reload.js';

const policy = (yaml: string) => parsePolicy(yaml, 'policy.yaml');

const BEFORE = policy(`
resources:
  - name: steady
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
  - name: tightened
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
  - name: retired
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
`);

describe('mergeResources', () => {
  const after = policy(`
resources:
  - name: tightened
    limits: [{ name: rpm, algorithm: fixed_window, rate: 5/1m }]
  - name: steady
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
  - name: fresh
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
`);
  const merged = mergeResources(BEFORE.resources, after.resources);

  it('names what was added, changed and removed', () => {
    expect(merged.added).toEqual(['fresh']);
    expect(merged.changed).toEqual(['tightened']);
    expect(merged.removed).toEqual(['retired']);
    expect([...merged.resources.keys()].sort()).toEqual(['fresh', 'steady', 'tightened']);
  });

  it('keeps the served object of an unchanged resource, so its leases carry on', () => {
    expect(merged.resources.get('steady')).toBe(BEFORE.resources.get('steady'));
  });

  it('serves the new object of a changed resource', () => {
    expect(merged.resources.get('tightened')).toBe(after.resources.get('tightened'));
    expect(merged.resources.get('tightened')!.limits[0]!.capacity).toBe(5);
  });

  it('finds nothing to do in the same policy loaded again', () => {
    const again = mergeResources(BEFORE.resources, policy(`
resources:
  - name: retired
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
  - name: steady
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
  - name: tightened
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
`).resources);
    expect([again.added, again.changed, again.removed]).toEqual([[], [], []]);
  });
});

describe('restartOnlyChanges', () => {
  it('names the sections read only at start that differ', () => {
    const moved = policy(`
server: { listen: 127.0.0.1:50052 }
store: { timeout: 50ms }
tracing: { enabled: true }
resources:
  - name: steady
    limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }]
`);
    expect(restartOnlyChanges(BEFORE, moved)).toEqual(['server', 'store', 'tracing']);
  });

  it('is empty when only resources differ', () => {
    const fewer = policy(`
resources:
  - name: steady
    limits: [{ name: rpm, algorithm: fixed_window, rate: 1/1m }]
`);
    expect(restartOnlyChanges(BEFORE, fewer)).toEqual([]);
  });
});
