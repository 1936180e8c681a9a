// parseAcquire builds the scope from the resource's keys in their order, exactly as scopeOf does
// (escapes included), and names the field that is wrong.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { scopeOf } from '../../src/decide/scope.js';
import { parseAcquire, type WireAcquireRequest } from '../../src/grpc/validate.js';

const { resources } = parsePolicy(
  `
resources:
  - name: llm
    keys: [tenant, model]
    limits: [{ name: tpm, algorithm: fixed_window, rate: 1000/1m }]
`,
  'p.yaml',
);

const request = (descriptors: Record<string, string>): WireAcquireRequest => ({ resource: 'llm', descriptors, cost: 0, max_wait: null, priority: 0, lane: '', request_id: '' });

describe('parseAcquire', () => {
  it('scopes by the values of the keys in the order the resource lists them, escaped as scopeOf escapes them', () => {
    const llm = resources.get('llm')!;
    const input = parseAcquire(request({ model: 'gpt|4}', user: 'ignored', tenant: 'a%b{' }), resources);
    expect(input).toEqual({ resource: llm, scope: scopeOf(llm, ['a%b{', 'gpt|4}']), cost: 1, priority: 0 });
    expect(input.scope).toBe('llm|a%25b%7B|gpt%7C4%7D');
  });

  it('carries the priority, which decides how much of a reserved limit the request may use', () => {
    expect(parseAcquire({ ...request({ tenant: 't', model: 'm' }), priority: -7 }, resources).priority).toBe(-7);
  });

  it('names the descriptor whose value is too long', () => {
    expect(() => parseAcquire(request({ tenant: 't', model: 'm'.repeat(257) }), resources)).toThrow('descriptors["model"]: longer than 256 bytes');
  });
});
