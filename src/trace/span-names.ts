// The names of sluice's spans: envoyproxy/ratelimit's, where it has one for the same work. Kept
// apart from tracing.ts so that naming a span never loads OpenTelemetry.

/** A span per Envoy ShouldRateLimit call. */
export const SHOULD_RATE_LIMIT_SPAN = 'ShouldRateLimit Execution';
/** A span per call to Redis that a traced request makes (within sluice's shared pipeline). */
export const REDIS_STORE_SPAN = 'Redis Pipeline Execution';
/** The same, on the embedded memory store. */
export const MEMORY_STORE_SPAN = 'Memory Store Execution';
