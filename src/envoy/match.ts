// Which rule a descriptor matches, as envoyproxy/ratelimit decides it: walk the domain's tree one
// entry at a time, taking at each level the exact key and value, else the first wildcard value
// (`foo*`, `/api*v1`, `a*b*c`, in file order) that matches, else the key-only default. A rule
// applies only if it sits at the request's last entry: a request with more entries than the
// config has levels matches nothing, and so does one that stops at a level without a rate_limit.
import { escapeValue } from '../decide/scope.js';
import type { DescriptorNode, Domain, Rule } from './config.js';

export interface Entry {
  key: string;
  value: string;
}

export interface Match {
  rule: Rule;
  /**
   * Per entry, the value to keep the budget under instead of the request's: set where a
   * share_threshold wildcard matched, so every value it matches shares one budget. Null if none.
   */
  shared: (string | null)[] | null;
  /**
   * Per entry, the request's value where value_to_metric puts it in the statistics: at a level
   * matched by its key alone or by a wildcard without share_threshold. Null if none.
   */
  metricValues: (string | null)[] | null;
}

export function matchRule(domain: Domain, entries: readonly Entry[]): Match | null {
  let node: DescriptorNode = domain.root;
  let shared: (string | null)[] | null = null;
  let metricValues: (string | null)[] | null = null;
  for (let i = 0; i < entries.length; i++) {
    const { key, value } = entries[i]!;
    let next = node.exact.get(key)?.get(value);
    let viaWildcard = false;
    if (!next) {
      for (const wildcard of node.wildcards) {
        if (wildcard.key === key && matchesWildcard(wildcard.parts, value)) {
          next = wildcard.node;
          viaWildcard = true;
          break;
        }
      }
    }
    const viaKey = !next;
    next ??= node.keyOnly.get(key);
    if (!next) return null;
    if (viaWildcard && next.sharedValue !== null) (shared ??= new Array<string | null>(entries.length).fill(null))[i] = next.sharedValue;
    // value_to_metric, but not on a share_threshold wildcard: its values share one budget, so one series.
    else if (next.valueToMetric && (viaKey || viaWildcard)) (metricValues ??= new Array<string | null>(entries.length).fill(null))[i] = value;
    if (i === entries.length - 1) return next.rule ? { rule: next.rule, shared, metricValues } : null;
    if (!next.hasChildren) return null;
    node = next;
  }
  return null;
}

/**
 * Whether `value` matches a wildcard value split on its `*`s: each `*` stands for any run of
 * characters, the empty one too, so `bar*b` matches `barb` and `bar1b` but not `bara`. The first
 * and last parts are anchored; the ones between are found in order, each as early as it occurs.
 */
export function matchesWildcard(parts: readonly string[], value: string): boolean {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (parts.length === 1) return value === first;
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  let at = first.length;
  const end = value.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = value.indexOf(parts[i]!, at);
    if (found < 0 || found + parts[i]!.length > end) return false;
    at = found + parts[i]!.length;
  }
  return true;
}

/**
 * The budget a descriptor's rule counts against: the domain and every entry of the request
 * (so each value of a key-only or wildcard rule has its own budget, as upstream's cache keys
 * do), each escaped so that no two descriptors share a scope by accident and no value can move
 * the Redis Cluster slot. `envoy=` cannot begin a sluice.v1 scope (`=` is not allowed in a
 * resource name), so Envoy and sluice.v1 budgets never meet. The rule's shape (its limits'
 * algorithms and units) ends the scope: a reload that changes a unit or an algorithm starts a
 * fresh budget, as upstream's cache keys (which carry the window) do.
 */
export function scopeOf(domain: string, entries: readonly Entry[], match: { rule: Rule; shared: (string | null)[] | null }): string {
  let scope = 'envoy=' + escapeValue(domain);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    scope += '|' + escapeValue(entry.key) + '|' + escapeValue(match.shared?.[i] ?? entry.value);
  }
  if (match.rule.shapeTag !== '') scope += '|~' + match.rule.shapeTag;
  return scope;
}
