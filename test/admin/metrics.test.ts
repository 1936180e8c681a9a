// Decisions and rejections are counted per request in plain tables and read into their series at
// scrape time: every resource, outcome and decider has its own count, a removed resource's series
// are gone from the next scrape, and only what happened is exported.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/admin/metrics.js';
import { METRIC_LABEL_NAMES_USED } from '../../src/config/schema.js';
import { EnvoyStats } from '../../src/envoy/stats.js';
import type { AcquireInput, Decision, DecidedBy } from '../../src/decide/decision.js';

function metrics(): Metrics {
  return new Metrics({ permits: () => 0, permitsEvicted: () => 0, leases: () => null, storeUp: () => 1, admission: () => null, memoryScopesRefused: () => 0 });
}

function decision(granted: boolean, decidedBy: DecidedBy): Decision {
  return { granted, permitId: '', retryAfterMs: 0, remaining: 0, limit: 1, resetAfterMs: 0, limitName: 'l', decidedBy, reason: '', decidedAt: 0, waitedMs: 0 };
}

/** The scraped lines of one family, without its HELP and TYPE. */
async function series(m: Metrics, name: string): Promise<string[]> {
  const text = await m.registry.metrics();
  return text.split('\n').filter((line) => line.startsWith(`${name}{`));
}

describe('decision and rejection counts', () => {
  it('counts each resource, outcome and decider apart, and exports only what was counted', async () => {
    const m = metrics();
    for (let i = 0; i < 3; i++) m.decided('api', decision(true, 'LEASE'));
    m.decided('api', decision(false, 'LEASE'));
    m.decided('api', decision(true, 'STORE'));
    m.decided('llm', decision(false, 'FAIL_CLOSED'));
    m.decided('llm', decision(true, 'LOCAL_FALLBACK'));
    expect((await series(m, 'sluice_decisions_total')).sort()).toEqual([
      'sluice_decisions_total{resource="api",outcome="denied",decided_by="LEASE"} 1',
      'sluice_decisions_total{resource="api",outcome="granted",decided_by="LEASE"} 3',
      'sluice_decisions_total{resource="api",outcome="granted",decided_by="STORE"} 1',
      'sluice_decisions_total{resource="llm",outcome="denied",decided_by="FAIL_CLOSED"} 1',
      'sluice_decisions_total{resource="llm",outcome="granted",decided_by="LOCAL_FALLBACK"} 1',
    ]);
  });

  it('keeps counting across scrapes, and forgets a removed resource at once', async () => {
    const m = metrics();
    m.decided('api', decision(true, 'STORE'));
    m.decided('old', decision(true, 'FAIL_OPEN'));
    await series(m, 'sluice_decisions_total');
    m.decided('api', decision(true, 'STORE'));
    m.forgetResource('old');
    expect(await series(m, 'sluice_decisions_total')).toEqual(['sluice_decisions_total{resource="api",outcome="granted",decided_by="STORE"} 2']);
    // A name served again starts from nothing.
    m.decided('old', decision(false, 'STORE'));
    expect(await series(m, 'sluice_decisions_total')).toContain('sluice_decisions_total{resource="old",outcome="denied",decided_by="STORE"} 1');
  });

  it('counts rejections by status code name', async () => {
    const m = metrics();
    m.rejected(status.INVALID_ARGUMENT);
    m.rejected(status.INVALID_ARGUMENT);
    m.rejected(status.RESOURCE_EXHAUSTED);
    expect((await series(m, 'sluice_rejected_requests_total')).sort()).toEqual([
      'sluice_rejected_requests_total{code="INVALID_ARGUMENT"} 2',
      'sluice_rejected_requests_total{code="RESOURCE_EXHAUSTED"} 1',
    ]);
  });
});

describe('waiting', () => {
  // Only the resource's name and the priority are read.
  const waiter = { resource: { name: 'api' }, priority: 2, scope: 'api', cost: 1 } as unknown as AcquireInput;

  it('a request refused by its scope\'s full line waits no more; one refused by the sidecar never waited', async () => {
    const m = metrics();
    m.started(waiter);
    m.started(waiter);
    m.refused(waiter, 'scope');
    m.refused(waiter, 'sidecar');
    expect(await series(m, 'sluice_waiters')).toEqual(['sluice_waiters{resource="api",priority="2"} 1']);
    m.ended(waiter, 'timeout', 1000);
    expect(await series(m, 'sluice_waiters')).toEqual(['sluice_waiters{resource="api",priority="2"} 0']);
    expect((await series(m, 'sluice_wait_refused_total')).sort()).toEqual([
      'sluice_wait_refused_total{resource="api",cap="scope"} 1',
      'sluice_wait_refused_total{resource="api",cap="sidecar"} 1',
    ]);
  });
});

describe('server.metric_labels', () => {
  it('refuses exactly the label names sluice\'s own metrics use', () => {
    const m = metrics();
    new EnvoyStats(m.registry, 0.8);
    const used = new Set(m.registry.getMetricsAsArray().flatMap((metric) => (metric as unknown as { labelNames: string[] }).labelNames));
    // le: a histogram's bucket label.
    expect([...used, 'le'].sort()).toEqual([...METRIC_LABEL_NAMES_USED].sort());
  });

  it('every series carries them, beside its own labels', async () => {
    const m = metrics();
    m.registry.setDefaultLabels({ cluster: 'eu-1' });
    m.decided('api', decision(true, 'STORE'));
    const text = await m.registry.metrics();
    expect(text).toMatch(/^sluice_decisions_total\{resource="api",outcome="granted",decided_by="STORE",cluster="eu-1"\} 1$/m);
    expect(text.split('\n').filter((line) => line && !line.startsWith('#') && !line.includes('cluster="eu-1"'))).toEqual([]);
  });
});
