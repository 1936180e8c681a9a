// ShouldRateLimit below the wire: match each descriptor to its rule, decide them all through
// sluice's Decider (leases and the failure policy apply), and answer one status per descriptor.
//
// The request is OVER_LIMIT, as upstream decides it, when a descriptor is over its limit, unless
// that descriptor is in quota mode: descriptors in quota mode make it OVER_LIMIT only when every
// one of them is over. Unlike envoyproxy/ratelimit, a request that is OVER_LIMIT consumes
// nothing: every descriptor is reserved, and what they took is given back (revoke). A descriptor
// whose hits_addend is 0 only checks that one more would fit, and takes nothing. With
// envoy.shadow_mode the request is answered OK and goes ahead, keeping what it took. Every
// answered request is counted in upstream's per-rule statistics (stats.ts).
import type { Decider } from '../decide/decider.js';
import type { AcquireInput, Decision } from '../decide/decision.js';
import { costFor, type EnvoyOptions, type Limit } from '../config/policy.js';
import { untilWindowEnds } from '../limits/fixed-window.js';
import { overrideRule, type EnvoyConfig, type ReportedLimit, type Rule } from './config.js';
import { matchRule, scopeOf, type Entry, type Match } from './match.js';
import { dynamicMetadata, type Metadata } from './metadata.js';
import { secondsToWindowEnd, type Unit } from './units.js';
import { isStoreFailure } from '../guard/store-unavailable.js';
import { statLabel, type EnvoyStats, type StatLabel } from './stats.js';

export interface EnvoyDescriptor {
  entries: Entry[];
  override: ReportedLimit | null;
  /** The descriptor's own hits_addend, when it has one (0: check only). */
  hits: number | null;
}

export interface EnvoyRequest {
  domain: string;
  descriptors: EnvoyDescriptor[];
  /** The request's hits_addend as sent: 0 when unset, which counts as 1. */
  hits: number;
}

export type Code = 'OK' | 'OVER_LIMIT';

export interface DescriptorStatus {
  code: Code;
  /** Null when no limit applies (no match, unlimited, replaced, unknown domain). */
  currentLimit: (ReportedLimit & { name: string }) | null;
  /** 4294967295 for an unlimited descriptor, as upstream says it. */
  remaining: number;
  /** Whole seconds; null when no limit applies. */
  resetSeconds: number | null;
}

export interface EnvoyAnswer {
  overall: Code;
  statuses: DescriptorStatus[];
  responseHeaders: { key: string; value: string }[];
  /** With envoy.response_dynamic_metadata, what upstream answers as dynamic metadata; else null. */
  dynamicMetadata: Metadata | null;
}

/** The store could not decide and the policy says to answer with an error (UNAVAILABLE). */
export class EnvoyStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EnvoyStoreError';
  }
}

export interface LimiterHooks {
  /** Every decision the Decider made, by resource name (for metrics). */
  decided?: (resource: string, decision: Decision) => void;
  /** Upstream's per-rule statistics of every answered request. */
  stats?: EnvoyStats;
  /** Throttled warnings: a grant that could not be given back. */
  warn?: (obj: object, msg: string) => void;
  now?: () => number;
}

export const UINT32_MAX = 0xffff_ffff;

type Plan =
  | { kind: 'none' }
  | { kind: 'unlimited' }
  | { kind: 'blocked'; rule: Rule; unit: Unit; label: StatLabel; hits: number }
  | { kind: 'limit'; rule: Rule; input: AcquireInput; checkOnly: boolean; label: StatLabel };

/** What each descriptor is checked against: its override, its rule, or nothing. */
export function planDescriptors(config: EnvoyConfig, request: EnvoyRequest): Plan[] {
  const domain = config.domains.get(request.domain);
  // An unknown domain limits nothing (upstream answers OK), override or not.
  if (!domain) return request.descriptors.map(() => ({ kind: 'none' }));
  const matched: (Match | null)[] = request.descriptors.map((d) =>
    d.override ? { rule: overrideRule(config, request.domain, d.override.requestsPerUnit, d.override.unit), shared: null, metricValues: null } : matchRule(domain, d.entries),
  );
  // Every rule of the request, unlimited ones too, replaces the rules it names.
  const replaced = new Set<string>();
  for (const match of matched) for (const name of match?.rule.replaces ?? []) replaced.add(name);
  return matched.map((match, i): Plan => {
    if (!match) return { kind: 'none' };
    const { rule } = match;
    if (rule.unlimited) return { kind: 'unlimited' };
    if (rule.name !== '' && replaced.has(rule.name)) return { kind: 'none' };
    const descriptor = request.descriptors[i]!;
    const hits = descriptor.hits ?? (request.hits || 1);
    const label = statLabel(request.domain, match, descriptor.entries, descriptor.override !== null);
    if (!rule.resource) return { kind: 'blocked', rule, unit: rule.main!.unit, label, hits };
    const scope = scopeOf(request.domain, descriptor.entries, match);
    return { kind: 'limit', rule, input: { resource: rule.resource, scope, cost: hits === 0 ? 1 : hits, priority: 0 }, checkOnly: hits === 0, label };
  });
}

export async function shouldRateLimit(decider: Decider, config: EnvoyConfig, request: EnvoyRequest, hooks: LimiterHooks = {}): Promise<EnvoyAnswer> {
  const plans = planDescriptors(config, request);
  const failOnStore = config.options.onStoreFailure === 'error';

  const outcomes = await Promise.allSettled(plans.map((plan) => (plan.kind === 'limit' ? decider.acquire(plan.input) : Promise.resolve(null))));
  let failure: unknown = null;
  // Per descriptor: is it over its limit (and not in shadow mode)?
  const over = plans.map(() => false);
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i]!;
    const outcome = outcomes[i]!;
    if (outcome.status === 'rejected') {
      failure ??= outcome.reason ?? new Error('store call failed');
      continue;
    }
    if (plan.kind === 'blocked') over[i] = !plan.rule.shadow;
    const decision = outcome.value;
    if (!decision || plan.kind !== 'limit') continue;
    hooks.decided?.(plan.input.resource.name, decision);
    if (failOnStore && decision.decidedBy === 'FAIL_CLOSED') failure ??= new EnvoyStoreError(decision.reason || 'store unavailable');
    else over[i] = !decision.granted && !plan.rule.shadow;
  }
  const overall = overallCode(plans, over, config.options.quotaMode);

  // envoy.shadow_mode (upstream's SHADOW_MODE) lets a request over the limit through: it is
  // answered OK, and what its other descriptors took stays taken, as the request goes ahead.
  const shadowed = overall === 'OVER_LIMIT' && config.options.shadowMode;
  const denied = overall === 'OVER_LIMIT' && !shadowed;
  // All or nothing: a denied request (or one that fails) takes nothing anywhere, and a check takes
  // nothing ever.
  const revoked = new Set<number>();
  const revokes: Promise<void>[] = [];
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i]!;
    const outcome = outcomes[i]!;
    if (plan.kind !== 'limit' || outcome.status !== 'fulfilled' || !outcome.value?.granted) continue;
    if (failure === null && !denied && !plan.checkOnly) continue;
    revoked.add(i);
    revokes.push(
      decider.revoke(plan.input, outcome.value).catch((err: unknown) => hooks.warn?.({ err, scope: plan.input.scope }, 'could not give back the grant of an Envoy descriptor')),
    );
  }
  await Promise.all(revokes);
  // A bug is no store failure: it goes up as it is, for an INTERNAL answer.
  if (failure !== null && !isStoreFailure(failure) && !(failure instanceof EnvoyStoreError)) throw failure;
  if (failure !== null) {
    const message = failure instanceof Error ? failure.message : String(failure);
    throw new EnvoyStoreError(message.startsWith('store unavailable') ? message : `store unavailable: ${message}`, { cause: failure });
  }

  const now = (hooks.now ?? Date.now)();
  const statuses = plans.map((plan, i): DescriptorStatus => {
    switch (plan.kind) {
      case 'none':
        return { code: 'OK', currentLimit: null, remaining: 0, resetSeconds: null };
      case 'unlimited':
        return { code: 'OK', currentLimit: null, remaining: UINT32_MAX, resetSeconds: null };
      case 'blocked':
        return {
          code: plan.rule.shadow ? 'OK' : 'OVER_LIMIT',
          currentLimit: { ...plan.rule.main!, name: plan.rule.name },
          remaining: 0,
          resetSeconds: secondsToWindowEnd(plan.unit, now),
        };
      case 'limit': {
        const outcome = outcomes[i] as PromiseFulfilledResult<Decision>;
        return statusOf(plan.rule, plan.input, outcome.value, revoked.has(i));
      }
    }
  });
  if (hooks.stats) countStatistics(hooks.stats, plans, outcomes, shadowed);
  return {
    overall: denied ? 'OVER_LIMIT' : 'OK',
    statuses,
    responseHeaders: config.options.responseHeaders ? rateLimitHeaders(statuses, config.options.responseHeaderNames) : [],
    dynamicMetadata: config.options.responseDynamicMetadata ? dynamicMetadata(request.domain, request.descriptors, request.hits, passedMetadata(plans, statuses)) : null,
  };
}

/** Upstream's statistics of an answered request: per rule, and global shadow mode. */
function countStatistics(stats: EnvoyStats, plans: readonly Plan[], outcomes: readonly PromiseSettledResult<Decision | null>[], shadowed: boolean): void {
  plans.forEach((plan, i) => {
    if (plan.kind === 'blocked') stats.blocked(plan.label, plan.hits, plan.rule.shadow);
    if (plan.kind !== 'limit') return;
    const decision = (outcomes[i] as PromiseFulfilledResult<Decision>).value;
    stats.decided(plan.label, decision, plan.checkOnly ? 0 : plan.input.cost, plan.rule.shadow);
  });
  if (shadowed) stats.shadowed();
}

/**
 * OVER_LIMIT when a descriptor not in quota mode is over its limit, or when every descriptor in
 * quota mode is (all of them with envoy.quota_mode). Unlimited descriptors count for neither.
 */
function overallCode(plans: readonly Plan[], over: readonly boolean[], quotaMode: boolean): Code {
  let quotas = 0;
  let quotasOver = 0;
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i]!;
    if (plan.kind === 'unlimited') continue;
    const quota = quotaMode || (plan.kind !== 'none' && plan.rule.quota);
    if (!quota && over[i]) return 'OVER_LIMIT';
    if (!quota) continue;
    quotas++;
    if (over[i]) quotasOver++;
  }
  return quotas > 0 && quotasOver === quotas ? 'OVER_LIMIT' : 'OK';
}

/** The metadata of every descriptor that was not over its limit, in request order. */
function passedMetadata(plans: readonly Plan[], statuses: readonly DescriptorStatus[]): Metadata[] {
  const passed: Metadata[] = [];
  plans.forEach((plan, i) => {
    if ((plan.kind === 'limit' || plan.kind === 'blocked') && statuses[i]!.code === 'OK' && plan.rule.metadata) passed.push(plan.rule.metadata);
  });
  return passed;
}

function statusOf(rule: Rule, input: AcquireInput, decision: Decision, revoked: boolean): DescriptorStatus {
  const reported = rule.reported.get(decision.limitName) ?? rule.main!;
  const limit = input.resource.limits.find((l) => l.name === decision.limitName);
  let remaining = decision.remaining;
  if (revoked && limit) {
    // Given back: what is left is what was left before this request.
    remaining = Math.min(limit.capacity, remaining + costFor(limit, input.cost));
  }
  return {
    code: decision.granted || rule.shadow ? 'OK' : 'OVER_LIMIT',
    currentLimit: { ...reported, name: rule.name },
    remaining: Math.max(0, Math.min(UINT32_MAX, Math.floor(remaining))),
    resetSeconds: Math.max(0, Math.ceil(untilReset(limit, decision) / 1000)),
  };
}

/**
 * When it is over the limit: when the same request would fit (exact for every algorithm);
 * otherwise when the deciding limit is back to full (a window's end, for fixed windows). A
 * request that can never fit a fixed window is told the window's end, as upstream tells it.
 */
function untilReset(limit: Limit | undefined, decision: Decision): number {
  if (decision.granted) return decision.resetAfterMs;
  if (Number.isFinite(decision.retryAfterMs)) return decision.retryAfterMs;
  return limit?.algorithm === 'fixed_window' ? untilWindowEnds(decision.decidedAt, limit.periodMs) : decision.resetAfterMs;
}

/**
 * The limit, remaining and reset headers (RateLimit-Limit, -Remaining and -Reset unless renamed)
 * of the descriptor closest to its limit, as upstream picks it: the least remaining among those
 * with a limit, and any descriptor over its limit before that (the last one over, if several).
 * Values are upstream's: whole numbers, the reset in seconds.
 */
export function rateLimitHeaders(statuses: readonly DescriptorStatus[], names: EnvoyOptions['responseHeaderNames']): { key: string; value: string }[] {
  let chosen: DescriptorStatus | null = null;
  for (const status of statuses) {
    if (!status.currentLimit) continue;
    if (status.code === 'OVER_LIMIT') chosen = status;
    else if (chosen?.code !== 'OVER_LIMIT' && (chosen === null || status.remaining < chosen.remaining)) chosen = status;
  }
  if (!chosen) return [];
  return [
    { key: names.limit, value: String(chosen.currentLimit!.requestsPerUnit) },
    { key: names.remaining, value: String(chosen.remaining) },
    { key: names.reset, value: String(chosen.resetSeconds ?? 0) },
  ];
}
