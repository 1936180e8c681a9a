// Prometheus figures. What is counted per request is a plain number in a table, read into its
// series at scrape time: prom-client hashes the labels on every inc(), even on a bound child.
import { status as grpcStatus } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DECIDED_BY, type AcquireInput, type DecidedBy, type Decision } from '../decide/decision.js';
import type { WaitEnd, WaitObserver } from '../wait/waiters.js';
import type { LeaseFigures } from '../lease/leases.js';
import type { Admission } from '../guard/admission.js';
import type { ReloadResult } from '../config/reload.js';

const OUTCOMES = ['granted', 'denied'] as const;
const DECIDED_BY_INDEX = Object.fromEntries(DECIDED_BY.map((by, i) => [by, i])) as Record<DecidedBy, number>;

/** Priorities a resource's waiters are labelled by, at most; the rest are labelled "other" (callers choose them). */
const MAX_PRIORITY_LABELS = 16;

export class Metrics implements WaitObserver {
  readonly registry = new Registry();
  /**
   * Decisions per resource name: granted by each of DECIDED_BY, then denied by each. Counting a
   * decision finds its slot by index and builds no string.
   */
  private readonly decisions = new Map<string, Float64Array>();
  /** Requests answered with a gRPC error, by status code. */
  private readonly rejections: number[] = [];
  /** AcquireStream calls whose client has neither finished nor cancelled them. */
  openStreams = 0;

  private readonly refusedStreams = new Counter({
    name: 'sluice_refused_streams_total',
    help: 'AcquireStream calls ended at once with RESOURCE_EXHAUSTED because the sidecar-wide stream limit was reached',
    registers: [this.registry],
  });
  private readonly revokedGrants = new Counter({
    name: 'sluice_revoked_grants_total',
    help: 'AcquireStream grants given back because the stream was cancelled before they were handed to it',
    registers: [this.registry],
  });
  private readonly refusedConnections = new Counter({
    name: 'sluice_refused_connections_total',
    help: 'Connections closed as soon as they were accepted because the connection limit was reached',
    registers: [this.registry],
  });

  private readonly policyReloads = new Counter({
    name: 'sluice_policy_reloads_total',
    help: 'Reloads of the policy file, by result: applied, unchanged, or rejected (the previous policy is still served)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  private readonly storeFailures = new Counter({
    name: 'sluice_store_failures_total',
    help: 'Store calls that failed, timed out, or were not made because the circuit was open',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  /** Requests waiting in this sidecar, by resource, then by priority label. */
  private readonly waiting = new Map<string, Map<string, number>>();
  private readonly waitSeconds = new Histogram({
    name: 'sluice_wait_seconds',
    help: 'How long requests with max_wait waited in line, by resource and how the wait ended: granted, never (the cost can never fit), timeout (max_wait passed), cancelled (the caller went away), closed (the sidecar shut down), lost (the store lost the line), failed (the store failed; on_store_failure answered)',
    labelNames: ['resource', 'end'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  private readonly waitRefusals = new Counter({
    name: 'sluice_wait_refused_total',
    help: 'Requests with max_wait refused with RESOURCE_EXHAUSTED, by resource and which cap: scope (wait.max_waiters across every sidecar) or sidecar (server.max_waiters)',
    labelNames: ['resource', 'cap'] as const,
    registers: [this.registry],
  });

  constructor(gauges: {
    permits: () => number;
    permitsEvicted: () => number;
    leases: () => LeaseFigures | null;
    storeUp: () => number;
    admission: () => Admission | null;
    memoryScopesRefused: () => number;
  }) {
    // Among Node's figures: sluice_nodejs_eventloop_lag_p99_seconds, this process's own delay.
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
    // Every result is exported from the start, so a rate() over a first refusal sees it.
    for (const result of ['applied', 'unchanged', 'rejected'] as const) this.policyReloads.labels(result);
    const decisions = this.decisions;
    new Counter({
      name: 'sluice_decisions_total',
      help: 'Acquire decisions by resource, outcome and who decided',
      labelNames: ['resource', 'outcome', 'decided_by'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [resource, counts] of decisions) {
          counts.forEach((n, i) => {
            if (n > 0) this.labels(resource, OUTCOMES[Math.floor(i / DECIDED_BY.length)]!, DECIDED_BY[i % DECIDED_BY.length]!).inc(n);
          });
        }
      },
    });
    const rejections = this.rejections;
    new Counter({
      name: 'sluice_rejected_requests_total',
      help: 'Requests answered with a gRPC error, by status code',
      labelNames: ['code'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        rejections.forEach((n, code) => this.labels(grpcStatus[code] ?? String(code)).inc(n));
      },
    });
    gaugeOf(this.registry, 'sluice_decisions_in_flight', 'Decisions under way (bounded by server.max_in_flight)', () => gauges.admission()?.inFlight ?? 0);
    new Counter({
      name: 'sluice_shed_total',
      help: 'Requests shed with RESOURCE_EXHAUSTED because the sidecar itself was at server.max_in_flight (not a store failure), by when: full (at once) or waited (a stream request that found no room in time)',
      labelNames: ['reason'] as const,
      registers: [this.registry],
      collect() {
        const admission = gauges.admission();
        this.reset();
        this.labels('full').inc(admission?.shed.full ?? 0);
        this.labels('waited').inc(admission?.shed.waited ?? 0);
      },
    });

    const openStreams = () => this.openStreams;
    new Gauge({
      name: 'sluice_open_streams',
      help: 'AcquireStream calls open',
      registers: [this.registry],
      collect() {
        this.set(openStreams());
      },
    });
    const lease = (pick: (f: LeaseFigures) => number) => () => {
      const figures = gauges.leases();
      return figures ? pick(figures) : 0;
    };
    counterOf(this.registry, 'sluice_permits_evicted_total', 'Permits dropped before they expired to keep the permit table bounded', gauges.permitsEvicted);
    counterOf(this.registry, 'sluice_memory_scopes_refused_total', 'New scopes the memory store refused because store.max_keys scopes held live budgets', gauges.memoryScopesRefused);
    gaugeOf(this.registry, 'sluice_store_up', '1 while the store answers (circuit closed), 0 while decisions follow on_store_failure', gauges.storeUp);
    gaugeOf(this.registry, 'sluice_lease_units_held', 'Units held in local leases: the most budget leasing can strand', lease((f) => f.held));
    counterOf(this.registry, 'sluice_lease_units_returned_total', 'Leased units given back to the store', lease((f) => f.returned));
    counterOf(this.registry, 'sluice_lease_takes_total', 'Store calls that took a block for a lease', lease((f) => f.takes));
    counterOf(this.registry, 'sluice_lease_decisions_total', 'Decisions answered from a lease', lease((f) => f.served));
    const waiting = this.waiting;
    new Gauge({
      name: 'sluice_waiters',
      help: `Requests waiting in line in this sidecar, by resource and priority (at most ${MAX_PRIORITY_LABELS} priorities a resource; the rest are "other")`,
      labelNames: ['resource', 'priority'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [resource, byPriority] of waiting) for (const [priority, n] of byPriority) this.labels(resource, priority).set(n);
      },
    });
    new Gauge({
      name: 'sluice_open_permits',
      help: 'Grants that can still be released or settled',
      registers: [this.registry],
      collect() {
        this.set(gauges.permits());
      },
    });
  }

  decided(resource: string, d: Decision): void {
    let counts = this.decisions.get(resource);
    if (!counts) this.decisions.set(resource, (counts = new Float64Array(OUTCOMES.length * DECIDED_BY.length)));
    counts[(d.granted ? 0 : DECIDED_BY.length) + DECIDED_BY_INDEX[d.decidedBy]]!++;
  }

  /**
   * Drops the decision series of a resource the policy no longer has: across reloads that rename
   * resources, every name ever served would otherwise stay, in memory and in each scrape.
   */
  forgetResource(resource: string): void {
    this.decisions.delete(resource);
    this.waiting.delete(resource);
  }

  started(input: AcquireInput): void {
    const byPriority = this.waitingOf(input.resource.name);
    const label = priorityLabel(byPriority, input.priority);
    byPriority.set(label, (byPriority.get(label) ?? 0) + 1);
  }

  ended(input: AcquireInput, end: WaitEnd, waitedMs: number): void {
    this.stopped(input);
    this.waitSeconds.labels(input.resource.name, end).observe(waitedMs / 1000);
  }

  refused(input: AcquireInput, which: 'scope' | 'sidecar'): void {
    // The scope's line is found full after the request started to wait here (WaitObserver).
    if (which === 'scope') this.stopped(input);
    this.waitRefusals.labels(input.resource.name, which).inc();
  }

  /** A request waits here no more. */
  private stopped(input: AcquireInput): void {
    const byPriority = this.waitingOf(input.resource.name);
    const label = priorityLabel(byPriority, input.priority);
    const left = (byPriority.get(label) ?? 1) - 1;
    // A priority with nobody waiting keeps its series at 0 while there is room for it (a rate() over it stays whole).
    byPriority.set(label, left);
  }

  private waitingOf(resource: string): Map<string, number> {
    let byPriority = this.waiting.get(resource);
    if (!byPriority) this.waiting.set(resource, (byPriority = new Map()));
    return byPriority;
  }

  policyReloaded(result: ReloadResult): void {
    this.policyReloads.labels(result).inc();
  }

  storeFailed(reason: string): void {
    this.storeFailures.labels(reason).inc();
  }

  streamRefused(): void {
    this.refusedStreams.inc();
  }

  grantRevoked(): void {
    this.revokedGrants.inc();
  }

  connectionRefused(): void {
    this.refusedConnections.inc();
  }

  rejected(code: grpcStatus): void {
    this.rejections[code] = (this.rejections[code] ?? 0) + 1;
  }
}

/** A priority's label: itself while the resource has room for one more, else "other". */
function priorityLabel(byPriority: Map<string, number>, priority: number): string {
  const label = String(priority);
  return byPriority.has(label) || byPriority.size < MAX_PRIORITY_LABELS ? label : 'other';
}

/** A gauge read from elsewhere at scrape time. */
function gaugeOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
}

/** A counter kept elsewhere as a running total, read at scrape time. */
function counterOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}
