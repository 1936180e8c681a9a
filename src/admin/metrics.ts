// Prometheus figures. Children are bound once per label set, so counting a decision is a map
// lookup and an add, not a label hash.
import { status as grpcStatus } from '@grpc/grpc-js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Decision } from '../decide/decider.js';
import type { LeaseFigures } from '../lease/leases.js';

export class Metrics {
  readonly registry = new Registry();
  private readonly decisions = new Counter({
    name: 'sluice_decisions_total',
    help: 'Acquire decisions by resource, outcome and who decided',
    labelNames: ['resource', 'outcome', 'decided_by'] as const,
    registers: [this.registry],
  });
  private readonly rejections = new Counter({
    name: 'sluice_rejected_requests_total',
    help: 'Requests answered with a gRPC error, by status code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  private readonly bound = new Map<string, Counter.Internal>();
  /** Acquires waiting on the store right now. */
  inFlight = 0;
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

  private readonly storeFailures = new Counter({
    name: 'sluice_store_failures_total',
    help: 'Store calls that failed, timed out, or were not made because the circuit was open',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(gauges: { permits: () => number; permitsEvicted: () => number; leases: () => LeaseFigures | null; storeUp: () => number }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
    const inFlight = () => this.inFlight;
    new Gauge({
      name: 'sluice_decisions_in_flight',
      help: 'Acquires waiting on the store',
      registers: [this.registry],
      collect() {
        this.set(inFlight());
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
    gaugeOf(this.registry, 'sluice_store_up', '1 while the store answers (circuit closed), 0 while decisions follow on_store_failure', gauges.storeUp);
    gaugeOf(this.registry, 'sluice_lease_units_held', 'Units held in local leases: the most budget leasing can strand', lease((f) => f.held));
    counterOf(this.registry, 'sluice_lease_units_returned_total', 'Leased units given back to the store', lease((f) => f.returned));
    counterOf(this.registry, 'sluice_lease_takes_total', 'Store calls that took a block for a lease', lease((f) => f.takes));
    counterOf(this.registry, 'sluice_lease_decisions_total', 'Decisions answered from a lease', lease((f) => f.served));
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
    const key = resource + (d.granted ? '\u0000g\u0000' : '\u0000d\u0000') + d.decidedBy;
    let child = this.bound.get(key);
    if (!child) {
      child = this.decisions.labels(resource, d.granted ? 'granted' : 'denied', d.decidedBy);
      this.bound.set(key, child);
    }
    child.inc();
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
    this.rejections.labels(grpcStatus[code] ?? String(code)).inc();
  }
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
