// The policy file's shape. Everything a policy can say is validated here, once, so the rest of
// sluice works with numbers in milliseconds and never re-checks.
import { z } from 'zod';
import { parseDuration, parseRate } from './units.js';

const NAME = /^[A-Za-z0-9_.:/-]{1,64}$/;
const NAME_HINT = '1 to 64 of A-Z a-z 0-9 _ . : / -';

const name = z.string().regex(NAME, { error: `expected a name of ${NAME_HINT}` });

const duration = z.string({ error: 'expected a duration such as 20ms, 30s, 1m' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.issues.push({ code: 'custom', input: text, message: 'expected a duration such as 20ms, 30s, 1m' });
    return z.NEVER;
  }
  return ms;
});

const rate = z.string({ error: 'expected N/period such as 60/1m or 5/s' }).transform((text, ctx) => {
  const parsed = parseRate(text);
  if (parsed === undefined || parsed.count < 1 || parsed.periodMs <= 0) {
    ctx.issues.push({ code: 'custom', input: text, message: 'expected N/period such as 60/1m or 5/s, N at least 1' });
    return z.NEVER;
  }
  return parsed;
});

const count = z.int({ error: 'expected a whole number' }).min(1, { error: 'expected at least 1' }).max(Number.MAX_SAFE_INTEGER);

// What a limit counts: the request's cost (tokens, bytes; the default) or one per request, so one
// resource can hold both requests-per-minute and tokens-per-minute.
const counts = z.enum(['cost', 'requests'], { error: 'expected cost or requests' }).default('cost');

const tokenBucket = z.strictObject({
  name,
  algorithm: z.literal('token_bucket'),
  rate,
  burst: count.optional(),
  counts,
});
const fixedWindow = z.strictObject({ name, algorithm: z.literal('fixed_window'), rate, counts });
const slidingWindow = z.strictObject({ name, algorithm: z.literal('sliding_window'), rate, counts });
const concurrency = z.strictObject({ name, algorithm: z.literal('concurrency'), max: count, ttl: duration, counts });

const ALGORITHMS = ['token_bucket', 'fixed_window', 'sliding_window', 'concurrency'];
const limit = z.discriminatedUnion('algorithm', [tokenBucket, fixedWindow, slidingWindow, concurrency], {
  error: `expected algorithm to be one of ${ALGORITHMS.join(', ')}`,
});

// Local token leases (Redis store only): take blocks of budget ahead and serve from them.
const LEASE_DEFAULTS = { enabled: true, max_fraction: 0.1, ttl: 1_000 };
const lease = z
  .strictObject({
    enabled: z.boolean({ error: 'expected true or false' }).default(LEASE_DEFAULTS.enabled),
    max_fraction: z
      .number({ error: 'expected a number between 0 and 1' })
      .gt(0, { error: 'expected more than 0' })
      .max(1, { error: 'expected at most 1' })
      .default(LEASE_DEFAULTS.max_fraction),
    ttl: duration.default(LEASE_DEFAULTS.ttl),
  })
  .default(LEASE_DEFAULTS);

const resource = z.strictObject({
  name,
  keys: z
    .array(
      z
        .string()
        .min(1, { error: 'expected a non-empty key' })
        .max(256)
        // A protobuf map arrives as a plain object, where this key can never be sent.
        .refine((key) => key !== '__proto__', { error: 'a descriptor key cannot be __proto__' }),
    )
    .max(16)
    .default([]),
  on_store_failure: z.enum(['open', 'closed', 'local'], { error: 'expected open, closed or local' }).default('open'),
  settle_within: duration.optional(),
  lease,
  limits: z.array(limit).min(1, { error: 'expected at least one limit' }),
});

const listen = z.string().refine((text) => isListenAddress(text), {
  error: 'expected host:port or unix:/path',
});

const server = z.strictObject({
  listen: listen.default('127.0.0.1:50051'),
  admin: z.union([listen, z.literal('off')], { error: 'expected host:port or off' }).default('127.0.0.1:9464'),
  shutdown_grace: duration.default(10_000),
});

const redis = z.strictObject({
  url: z.string().refine((text) => /^rediss?:\/\//.test(text) && URL.canParse(text), {
    error: 'expected redis://host:port or rediss://host:port',
  }),
  prefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,32}$/, { error: 'expected 1 to 32 of A-Z a-z 0-9 _ . : -' }).default('sluice'),
});

const store = z.strictObject({
  redis: redis.optional(),
  timeout: duration.default(20),
  max_keys: count.default(1_000_000),
});

export const policySchema = z
  .strictObject({
    server: server.default({ listen: '127.0.0.1:50051', admin: '127.0.0.1:9464', shutdown_grace: 10_000 }),
    store: store.default({ timeout: 20, max_keys: 1_000_000 }),
    resources: z.array(resource).min(1, { error: 'expected at least one resource' }),
  })
  .superRefine((policy, ctx) => {
    reportDuplicates(policy.resources, ['resources'], ctx);
    policy.resources.forEach((res, i) => {
      reportDuplicates(res.limits, ['resources', i, 'limits'], ctx);
      const seen = new Set<string>();
      res.keys.forEach((key, k) => {
        if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['resources', i, 'keys', k], message: `duplicate key "${key}"` });
        seen.add(key);
      });
    });
  });

export type PolicyFile = z.output<typeof policySchema>;
export type ResourceFile = PolicyFile['resources'][number];
export type LimitFile = ResourceFile['limits'][number];

function reportDuplicates(items: { name: string }[], path: (string | number)[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.name)) ctx.addIssue({ code: 'custom', path: [...path, i, 'name'], message: `duplicate name "${item.name}"` });
    seen.add(item.name);
  });
}

export function isListenAddress(text: string): boolean {
  if (text.startsWith('unix:')) return text.length > 'unix:'.length;
  const colon = text.lastIndexOf(':');
  if (colon <= 0) return false;
  const port = Number(text.slice(colon + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65535 && text.slice(colon + 1) !== '';
}
