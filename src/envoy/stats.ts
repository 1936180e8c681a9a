// Per-rule statistics as envoyproxy/ratelimit keeps them (total_hits, over_limit, near_limit,
// within_limit, shadow_mode, over_limit_with_local_cache per rule, and the service's
// global_shadow_mode), as Prometheus counters labelled by domain and rule. The rule label is
// upstream's stat key without the domain (`database_users`, `message_type_marketing.to_number`):
// never a descriptor value, unless the rule sets detailed_metric or a level of it sets
// value_to_metric, and even then the number of series is capped, so a caller sending endless
// values cannot grow the table.
//
// The counts follow upstream's arithmetic (src/limiter/base_limiter.go) on what sluice decided:
// hits past the near_limit_ratio share of a limit are near_limit, hits past the limit are
// over_limit. Since a denied request takes nothing in sluice, "used before this request" is what
// the limit had used when it answered, on a denial and on a grant alike. A denial the lease
// answers without asking the store is upstream's local cache: every hit of it is over the limit.
import { Counter, type Registry } from 'prom-client';
import type { Decision } from '../decide/decision.js';
import type { Entry, Match } from './match.js';

/** Series whose rule label carries descriptor values (detailed_metric, value_to_metric) or a request's keys (a limit override). */
export const MAX_DETAILED_SERIES = 1_000;
/** Series in all: one per rule hit, and the detailed ones. Past it, hits count under OTHER_RULE. */
export const MAX_SERIES = 10_000;
/** The rule label of overrides past MAX_DETAILED_SERIES, and of any hit past MAX_SERIES. */
export const OVERRIDE_RULE = '(override)';
export const OTHER_RULE = '(other)';

/** Where a descriptor's hits are counted. */
export interface StatLabel {
  domain: string;
  rule: string;
  /** The label comes from the request (values or keys): it counts against MAX_DETAILED_SERIES. */
  detailed: boolean;
  /** The rule label to count under once MAX_DETAILED_SERIES is reached. */
  coarse: string;
}

/** What one descriptor adds to each statistic. */
export interface HitCounts {
  totalHits: number;
  overLimit: number;
  nearLimit: number;
  withinLimit: number;
  shadowMode: number;
  overLimitWithLocalCache: number;
}

const STATS = [
  ['totalHits', 'sluice_envoy_hits_total', 'Hits on the rule (upstream: total_hits)'],
  ['overLimit', 'sluice_envoy_over_limit_total', 'Hits past the rule’s limit (upstream: over_limit)'],
  ['nearLimit', 'sluice_envoy_near_limit_total', 'Hits past near_limit_ratio of the rule’s limit and within it (upstream: near_limit)'],
  ['withinLimit', 'sluice_envoy_within_limit_total', 'Hits of descriptors answered OK (upstream: within_limit)'],
  ['shadowMode', 'sluice_envoy_shadow_mode_total', 'Hits past the limit of a shadow_mode rule, answered OK (upstream: shadow_mode)'],
  [
    'overLimitWithLocalCache',
    'sluice_envoy_over_limit_with_local_cache_total',
    'Hits past the rule’s limit denied by this sidecar’s lease without a store call (upstream: over_limit_with_local_cache)',
  ],
] as const satisfies readonly (readonly [keyof HitCounts, string, string])[];

/** The label of a descriptor's rule: upstream's stat key, without values unless the rule asks for them. */
export function statLabel(domain: string, match: Match, entries: readonly Entry[], override: boolean): StatLabel {
  const { rule, shared, metricValues } = match;
  if (override) {
    // Upstream counts an override under the request's keys and values; sluice under its keys.
    return { domain, rule: entries.map((e) => e.key).join('.'), detailed: true, coarse: OVERRIDE_RULE };
  }
  const plain = rule.label;
  if (rule.detailedMetric) {
    // Every entry as key_value, value_to_metric or not, and a share_threshold wildcard as its
    // pattern (one budget, one series).
    const detailed = entries.map((e, i) => `${e.key}_${shared?.[i] ?? e.value}`).join('.');
    return { domain, rule: detailed, detailed: true, coarse: plain };
  }
  if (metricValues === null) return { domain, rule: plain, detailed: false, coarse: plain };
  // value_to_metric: the request's value at the levels that ask for it (an empty one as the key
  // alone), the rule's own place elsewhere.
  const named = rule.levels
    .map((level, i) => {
      const value = metricValues[i] ?? null;
      if (value === null) return level;
      return value === '' ? entries[i]!.key : `${entries[i]!.key}_${value}`;
    })
    .join('.');
  return { domain, rule: named, detailed: named !== plain, coarse: plain };
}

/** One descriptor's figures, as upstream's LimitInfo holds them. */
export interface Usage {
  /** Hits the limit allows (requests_per_unit). */
  limit: number;
  /** Used before this request, and with it. */
  before: number;
  after: number;
  /** What this request asked for (hits_addend). */
  hits: number;
  /** The descriptor was over its limit (before any shadow mode let it through). */
  over: boolean;
  shadow: boolean;
  /** Over its limit, told so without asking the store (upstream's local cache). */
  local: boolean;
}

/** Upstream's arithmetic for one descriptor (its base limiter's GetResponseDescriptorStatus). */
export function countHits({ limit, before, after, hits, over, shadow, local }: Usage, nearRatio: number): HitCounts {
  // Upstream works in float32 here; so does this, so the thresholds agree to the hit.
  const near = Math.floor(Math.fround(Math.fround(limit) * Math.fround(nearRatio)));
  const counts: HitCounts = { totalHits: hits, overLimit: 0, nearLimit: 0, withinLimit: 0, shadowMode: 0, overLimitWithLocalCache: 0 };
  if (over) {
    // The hits past the limit are over it; those between the near threshold and the limit are
    // near. Upstream's local cache answers without the count: all of its hits are over.
    if (local || before >= limit) {
      counts.overLimit = hits;
    } else {
      counts.overLimit = after - limit;
      counts.nearLimit = limit - Math.max(near, before);
    }
    if (local) counts.overLimitWithLocalCache = hits;
    if (shadow) counts.shadowMode = counts.overLimit;
  } else {
    counts.withinLimit = hits;
    if (after > near) counts.nearLimit = before >= near ? hits : after - near;
  }
  return counts;
}

/** What a decision on `hits` (0 for a check) adds, read from what the deciding limit had left. */
export function countDecision(decision: Decision, hits: number, shadow: boolean, nearRatio: number): HitCounts {
  const limit = decision.limit;
  const left = Math.max(0, Math.min(limit, Math.floor(decision.remaining)));
  // A grant's remaining is after it; a denial took nothing, so its remaining is before it.
  const before = decision.granted ? Math.max(0, limit - left - hits) : limit - left;
  const local = !decision.granted && decision.decidedBy === 'LEASE';
  return countHits({ limit, before, after: before + hits, hits, over: !decision.granted, shadow, local }, nearRatio);
}

/** The statistics table: bounded, read into Prometheus counters when scraped. */
export class EnvoyStats {
  /** `domain \0 rule` -> counts in STATS order. */
  private readonly series = new Map<string, { domain: string; rule: string; detailed: boolean; counts: Float64Array }>();
  private detailedSeries = 0;
  /** Descriptors counted under a coarser label because a cap was reached. */
  private folded = 0;
  /** Requests answered OK that were over the limit, by envoy.shadow_mode. */
  private globalShadow = 0;
  /** Loads of config_dir: applied (the first one, and each reload that changed it), then rejected. */
  private readonly configLoads: [applied: number, rejected: number] = [0, 0];

  constructor(
    registry: Registry,
    private readonly nearRatio: number,
  ) {
    const series = this.series;
    const loads = this.configLoads;
    STATS.forEach(([, name, help], index) => {
      new Counter({
        name,
        help: `${help}, by domain and rule`,
        labelNames: ['domain', 'rule'] as const,
        registers: [registry],
        collect() {
          // Every statistic of a rule hit once is exported, at 0 too, so a rate() over its first over_limit sees it.
          this.reset();
          for (const s of series.values()) this.labels(s.domain, s.rule).inc(s.counts[index]!);
        },
      });
    });
    const read = (name: string, help: string, value: () => number) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    read('sluice_envoy_global_shadow_mode_total', 'Requests answered OK by envoy.shadow_mode that were over the limit (upstream: global_shadow_mode)', () => this.globalShadow);
    new Counter({
      name: 'sluice_envoy_config_loads_total',
      help: 'Loads of envoy.config_dir by result: applied (at start, and each reload that changed it) or rejected (a bad file; the previous config is still served)',
      labelNames: ['result'] as const,
      registers: [registry],
      collect() {
        this.reset();
        this.labels('applied').inc(loads[0]);
        this.labels('rejected').inc(loads[1]);
      },
    });
    read(
      'sluice_envoy_stats_folded_total',
      `Descriptors counted under a coarser rule label because ${MAX_DETAILED_SERIES} detailed or ${MAX_SERIES} series in all were reached`,
      () => this.folded,
    );
  }

  /** A descriptor decided by the store (or a lease, or on_store_failure). */
  decided(label: StatLabel, decision: Decision, hits: number, shadow: boolean): void {
    this.add(label, countDecision(decision, hits, shadow, this.nearRatio));
  }

  /** A descriptor whose rule allows nothing (requests_per_unit 0). */
  blocked(label: StatLabel, hits: number, shadow: boolean): void {
    this.add(label, countHits({ limit: 0, before: 0, after: hits, hits, over: true, shadow, local: false }, this.nearRatio));
  }

  configLoaded(applied: boolean): void {
    this.configLoads[applied ? 0 : 1]!++;
  }

  shadowed(): void {
    this.globalShadow++;
  }

  /** Forgets the series of domains no longer served (a reload removed their files). */
  retain(domains: ReadonlyMap<string, unknown>): void {
    for (const [key, s] of this.series) {
      if (domains.has(s.domain)) continue;
      this.series.delete(key);
      if (s.detailed) this.detailedSeries--;
    }
  }

  private add(label: StatLabel, counts: HitCounts): void {
    const row = this.row(label);
    STATS.forEach(([field], index) => (row[index]! += counts[field]));
  }

  /**
   * The counts of a label, made on first use; past a cap, those of a coarser one: the rule's own
   * label for a detailed one, then OTHER_RULE (one per domain, so at most MAX_SERIES + domains).
   */
  private row(label: StatLabel): Float64Array {
    const exact = this.series.get(`${label.domain}\u0000${label.rule}`);
    if (exact) return exact.counts;
    let rule = label.rule;
    let detailed = label.detailed;
    if (detailed && this.detailedSeries >= MAX_DETAILED_SERIES) [rule, detailed] = [label.coarse, false];
    let found = this.series.get(`${label.domain}\u0000${rule}`);
    if (!found && this.series.size >= MAX_SERIES) {
      [rule, detailed] = [OTHER_RULE, false];
      found = this.series.get(`${label.domain}\u0000${rule}`);
    }
    if (rule !== label.rule) this.folded++;
    if (found) return found.counts;
    const key = `${label.domain}\u0000${rule}`;
    const counts = new Float64Array(STATS.length);
    this.series.set(key, { domain: label.domain, rule, detailed, counts });
    if (detailed) this.detailedSeries++;
    return counts;
  }
}
