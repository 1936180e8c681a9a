// The span batch's settings from OTEL_BSP_*: whole numbers in range are taken, anything else is
// ignored with a warning naming the variable, and the queue cap always holds.
import { describe, expect, it } from 'vitest';
import { BATCH_DEFAULTS, batchSettings } from '../../src/trace/batch-env.js';

describe('batchSettings', () => {
  it('is the SDK’s defaults without the variables', () => {
    expect(batchSettings({})).toEqual({ settings: BATCH_DEFAULTS, warnings: [] });
    expect(BATCH_DEFAULTS).toEqual({ maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5000, exportTimeoutMillis: 30000 });
  });

  it('takes each variable that is a whole number in its range', () => {
    const env = { OTEL_BSP_MAX_QUEUE_SIZE: '4096', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: ' 256 ', OTEL_BSP_SCHEDULE_DELAY: '0', OTEL_BSP_EXPORT_TIMEOUT: '1000' };
    expect(batchSettings(env)).toEqual({ settings: { maxQueueSize: 4096, maxExportBatchSize: 256, scheduledDelayMillis: 0, exportTimeoutMillis: 1000 }, warnings: [] });
  });

  it('ignores the rest with a warning each, keeping the queue bounded', () => {
    const { settings, warnings } = batchSettings({ OTEL_BSP_MAX_QUEUE_SIZE: '1000000', OTEL_BSP_SCHEDULE_DELAY: '1.5s', OTEL_BSP_EXPORT_TIMEOUT: '0', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '' });
    expect(settings).toEqual(BATCH_DEFAULTS);
    expect(warnings).toEqual([
      'OTEL_BSP_MAX_QUEUE_SIZE="1000000" is ignored: expected a whole number from 1 to 20000; using 2048',
      'OTEL_BSP_SCHEDULE_DELAY="1.5s" is ignored: expected a whole number from 0 to 3600000; using 5000',
      'OTEL_BSP_EXPORT_TIMEOUT="0" is ignored: expected a whole number from 1 to 3600000; using 30000',
    ]);
  });

  it('a batch larger than the queue is cut to it, and said', () => {
    expect(batchSettings({ OTEL_BSP_MAX_QUEUE_SIZE: '64' })).toEqual({
      settings: { ...BATCH_DEFAULTS, maxQueueSize: 64, maxExportBatchSize: 64 },
      warnings: ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE (512) is above the queue (64): batches hold 64'],
    });
  });
});
