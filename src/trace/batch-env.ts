// The span batch's settings from the standard OTEL_BSP_* variables. The SDK's BatchSpanProcessor
// (2.x) no longer reads them itself; envoyproxy/ratelimit's Go SDK did, so a Deployment that sets
// them keeps its meaning. A value that is not a whole number in its range is ignored with a
// warning, as the OpenTelemetry specification asks of SDKs.
import type { Environment } from '../config/upstream-env.js';

export interface BatchSettings {
  /** Spans waiting to be exported; past it new spans are dropped. */
  maxQueueSize: number;
  maxExportBatchSize: number;
  /** How long spans wait before a batch is exported, ms. */
  scheduledDelayMillis: number;
  /** How long one export may take before it is abandoned, ms. */
  exportTimeoutMillis: number;
}

/** The SDK's defaults, which are the specification's. */
export const BATCH_DEFAULTS: BatchSettings = { maxQueueSize: 2_048, maxExportBatchSize: 512, scheduledDelayMillis: 5_000, exportTimeoutMillis: 30_000 };

// A queued span holds about a kilobyte: 20,000 of them fit the sidecar's heap (128 MB deployed)
// beside everything else it keeps. Delays are timers, which hold at most 2^31-1 ms; an hour is
// far past any use.
const VARIABLES: readonly (readonly [string, keyof BatchSettings, number, number])[] = [
  ['OTEL_BSP_MAX_QUEUE_SIZE', 'maxQueueSize', 1, 20_000],
  ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'maxExportBatchSize', 1, 20_000],
  ['OTEL_BSP_SCHEDULE_DELAY', 'scheduledDelayMillis', 0, 3_600_000],
  ['OTEL_BSP_EXPORT_TIMEOUT', 'exportTimeoutMillis', 1, 3_600_000],
];

export function batchSettings(env: Environment): { settings: BatchSettings; warnings: string[] } {
  const settings = { ...BATCH_DEFAULTS };
  const warnings: string[] = [];
  for (const [name, key, min, max] of VARIABLES) {
    const text = env[name]?.trim();
    if (text === undefined || text === '') continue;
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (value >= min && value <= max) settings[key] = value;
    else warnings.push(`${name}=${JSON.stringify(text)} is ignored: expected a whole number from ${min} to ${max}; using ${settings[key]}`);
  }
  // The SDK would lower the batch to the queue itself, with a warning of its own; say it here.
  if (settings.maxExportBatchSize > settings.maxQueueSize) {
    warnings.push(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE (${settings.maxExportBatchSize}) is above the queue (${settings.maxQueueSize}): batches hold ${settings.maxQueueSize}`);
    settings.maxExportBatchSize = settings.maxQueueSize;
  }
  return { settings, warnings };
}
