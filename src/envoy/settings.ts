// The policy file's `envoy:` section: where envoyproxy/ratelimit config files live, and how sluice
// serves them. The directory is loaded and checked with the policy, so `sluice check` and a
// starting sidecar report a bad domain file with its name and the place in it.
import { resolve } from 'node:path';
import { z } from 'zod';
import type { LeaseSettings } from '../config/policy.js';
import { lease } from '../config/fields.js';
import { loadEnvoyConfig, type EnvoyConfig, type EnvoyOptions } from './config.js';

export type { EnvoyOptions };

/** The compiled `envoy:` section: its options and the config loaded from config_dir at load. */
export interface EnvoySettings extends EnvoyOptions {
  initial: EnvoyConfig;
}

export const envoySection = z
  .strictObject({
    config_dir: z.string({ error: 'expected the directory of envoyproxy/ratelimit config files' }).min(1, {
      error: 'expected the directory of envoyproxy/ratelimit config files',
    }),
    response_headers: z.boolean({ error: 'expected true or false' }).default(false),
    on_store_failure: z
      .enum(['error', 'open', 'closed', 'local'], { error: 'expected error, open, closed or local' })
      .default('error'),
    /** Leases for Envoy traffic, as a resource's `lease:`. */
    lease,
  })
  .transform((section, ctx): EnvoySettings => {
    const options: EnvoyOptions = {
      configDir: resolve(section.config_dir),
      responseHeaders: section.response_headers,
      onStoreFailure: section.on_store_failure,
      lease: toLeaseSettings(section.lease),
    };
    const loaded = loadEnvoyConfig(options);
    if (!loaded.ok) {
      for (const problem of loaded.problems) ctx.issues.push({ code: 'custom', input: section.config_dir, path: ['config_dir'], message: problem });
      return z.NEVER;
    }
    return { ...options, initial: loaded.value };
  });

function toLeaseSettings(raw: { enabled: boolean; max_fraction: number; ttl: number }): LeaseSettings {
  return { enabled: raw.enabled, maxFraction: raw.max_fraction, ttlMs: raw.ttl };
}
