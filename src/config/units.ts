// Durations and rates as the policy file spells them: `20ms`, `30s`, `1m`, `60/1m`, `5/s`.
import { nearest } from './nearest.js';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** The units a duration or a rate's period may have. */
export const UNITS = Object.keys(UNIT_MS) as readonly string[];
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const RATE = /^(\d+)\s*\/\s*(\d*(?:\.\d+)?)(ms|s|m|h|d)$/;
/** A duration or rate spelt right but for its unit: `30sec`, `10/fortnight`. */
const OTHER_UNIT = /^(\d+(?:\.\d+)?|\d+\s*\/\s*\d*(?:\.\d+)?)\s*([A-Za-z]+)$/;

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
export function unitProblem(text: string): string | undefined {
  const match = OTHER_UNIT.exec(text.trim());
  if (!match || UNITS.includes(match[2]!)) return undefined;
  const number = match[1]!.replace(/\s+/g, '');
  const guess = nearest(match[2]!, UNITS);
  const slash = number.indexOf('/');
  const examples = slash < 0 ? `${number}s or ${number}ms` : `${number.slice(0, slash)}/s, ${number.slice(0, slash)}/1m or ${number.slice(0, slash)}/30s`;
  return `the unit must be one of ${UNITS.join(', ')}${guess ? ` (did you mean ${number}${guess}?)` : `, as in ${examples}`}`;
}
