// Field schemas shared by every section of the policy file (sluice's resources and the envoy:
// section alike), so a duration or a lease block reads and fails the same everywhere.
import { z } from 'zod';
import { nearest } from './nearest.js';
import { parseDuration, unitProblem } from './units.js';

const DURATION_HINT = 'expected a duration such as 20ms, 30s, 1m';

/**
 * `20ms`, `30s`, `1m` -> whole milliseconds, from 1ms to `max` (a duration as the file spells it).
 * Every duration has a ceiling: timers hold at most 2^31-1 ms (24.8 days) and Redis expiries must
 * be whole milliseconds, and each field's ceiling is what it can sensibly mean (see its use).
 */
export function duration(max: string) {
  const maxMs = parseDuration(max)!;
  return z.string({ error: DURATION_HINT }).transform((text, ctx) => {
    const ms = parseDuration(text);
    let problem: string | undefined;
    if (ms === undefined) problem = unitProblem(text, 'duration') ?? DURATION_HINT;
    else if (ms <= 0) problem = DURATION_HINT;
    else if (ms > maxMs) problem = `expected at most ${max}`;
    else if (!Number.isInteger(ms)) problem = 'expected a whole number of milliseconds';
    if (problem) {
      ctx.issues.push({ code: 'custom', input: text, message: problem });
      return z.NEVER;
    }
    return ms!;
  });
}

/** 1 to `max`, whole: counts past 2^53-1 are not exact in JavaScript or in Redis's Lua. */
export function wholeNumber(max = Number.MAX_SAFE_INTEGER) {
  // One message per value: the first thing wrong with it.
  return z.number({ error: 'expected a whole number' }).superRefine((n, ctx) => {
    const problem = !Number.isInteger(n) ? 'expected a whole number' : n < 1 ? 'expected at least 1' : n > max ? `expected at most ${max}` : undefined;
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/**
 * A map with these keys and no others. An unknown key is named with the known key it is nearest
 * to (`unknown key "limts" (did you mean limits?)`), or with the known keys when none is near.
 */
export function strictObject<const Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === 'invalid_type') return 'expected a map';
      if (issue.code !== 'unrecognized_keys') return undefined;
      const guesses = issue.keys.map((key) => nearest(key, known));
      const named = issue.keys.map((key, i) => (guesses[i] ? `"${key}" (did you mean ${guesses[i]}?)` : `"${key}"`));
      const listKnown = guesses.includes(undefined) ? ` (known keys: ${known.join(', ')})` : '';
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${named.join(', ')}${listKnown}`;
    },
  });
}

// Local token leases (Redis store only): take blocks of budget ahead and serve from them.
const LEASE_DEFAULTS = { enabled: true, max_fraction: 0.1, ttl: 1_000 };

export const lease = strictObject({
  enabled: z.boolean({ error: 'expected true or false' }).default(LEASE_DEFAULTS.enabled),
  max_fraction: z
    .number({ error: 'expected a number between 0 and 1' })
    .gt(0, { error: 'expected more than 0' })
    .max(1, { error: 'expected at most 1' })
    .default(LEASE_DEFAULTS.max_fraction),
  // Leased budget is spent locally and refunded when it lapses; held longer than a minute it
  // only strands tokens other sidecars could have used.
  ttl: duration('1m').default(LEASE_DEFAULTS.ttl),
}).default(LEASE_DEFAULTS);
