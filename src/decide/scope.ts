// The scope names one budget of a resource: the resource name and the values of its keys. It is
// also the Redis hash tag, so it must be injective and must never contain `{` or `}`: values are
// percent-escaped wherever they hold the separator, the escape itself or a brace. Then
// `a|b` + `c` can never collide with `a` + `b|c`, and no value can move the Cluster slot.
import type { Resource } from '../config/policy.js';

const NEEDS_ESCAPE = /[%|{}]/;
const ESCAPED = /[%|{}]/g;
const ESCAPES: Record<string, string> = { '%': '%25', '|': '%7C', '{': '%7B', '}': '%7D' };

export function escapeValue(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPED, (c) => ESCAPES[c]!) : value;
}

/** `values` are the descriptor values for resource.keys, in that order. */
export function scopeOf(resource: Resource, values: readonly string[]): string {
  let scope = resource.name;
  for (const value of values) scope = withValue(scope, value);
  return scope;
}

/** The scope with the next key's value added: scopeOf one value at a time, with no list of values. */
export function withValue(scope: string, value: string): string {
  return scope + '|' + escapeValue(value);
}
