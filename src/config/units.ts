// Durations and rates as the policy file spells them: `20ms`, `30s`, `1m`, `60/1m`, `5/s`.
import { nearest } from './nearest.js';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** The units a duration or a rate's period may have. */
const UNITS = Object.keys(UNIT_MS) as readonly string[];
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const RATE = /^(\d+)\s*\/\s*(\d*(?:\.\d+)?)(ms|s|m|h|d)$/;
/** A duration or a rate spelt right but for its unit (`30sec`, `10/fortnight`): the number, the unit. */
const OTHER_UNIT = { duration: /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/, rate: /^(\d+)\s*\/\s*(\d*(?:\.\d+)?)\s*([A-Za-z]+)$/ };

/**
 * Milliseconds for `20ms`, `1.5s`, `1d`; undefined when the text is not a duration. Over-long
 * digits give Infinity or a fraction of a millisecond: the schema's bounds refuse both.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

export interface Rate {
  count: number;
  periodMs: number;
}

/** `60/1m` -> 60 per 60000 ms; `5/s` -> 5 per 1000 ms; undefined when not a rate. */
export function parseRate(text: string): Rate | undefined {
  const match = RATE.exec(text.trim());
  if (!match) return undefined;
  const multiple = match[2] === '' ? 1 : Number(match[2]);
  return { count: Number(match[1]), periodMs: multiple * UNIT_MS[match[3] as keyof typeof UNIT_MS] };
}

/**
 * Whole microseconds per unit of a token bucket, rounded up. The Redis store keeps a bucket's
 * theoretical arrival time in whole microseconds (acquire.lua writes it with three decimals of a
 * millisecond), so an interval off that grid would be rounded at every grant, and rounded down
 * that admits more than the rate. Rounded up here, once, the bucket is exact on the grid and never
 * grants more than N per period; both stores use the same interval.
 */
export function bucketIntervalUs(rate: Rate): number {
  return Math.ceil((rate.periodMs * 1_000) / rate.count);
}

/**
 * What is wrong with a duration or a rate whose only fault is its unit (`30sec`, `10/fortnight`);
 * undefined for any other text.
 */
export function unitProblem(text: string, of: keyof typeof OTHER_UNIT): string | undefined {
  const match = OTHER_UNIT[of].exec(text.trim());
  if (!match) return undefined;
  const unit = match.at(-1)!;
  if (UNITS.includes(unit)) return undefined;
  // `10/` and a multiple, or a duration's number: what goes before the unit.
  const number = of === 'rate' ? `${match[1]}/${match[2]}` : match[1]!;
  const guess = nearest(unit, UNITS);
  if (guess) return `the unit must be one of ${UNITS.join(', ')} (did you mean ${number}${guess}?)`;
  const examples = of === 'rate' ? `${match[1]}/s, ${match[1]}/1m or ${match[1]}/30s` : `${number}s or ${number}ms`;
  return `the unit must be one of ${UNITS.join(', ')}, as in ${examples}`;
}
