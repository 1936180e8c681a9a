// Envoy's rate limit units and their windows. Like envoyproxy/ratelimit, every unit is a fixed
// number of seconds and windows are aligned to the Unix epoch: a MINUTE window starts on the
// minute, a WEEK window every 604800 s since 1970 (a Thursday), a MONTH is 30 days and a YEAR 365.

export type Unit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY' | 'WEEK' | 'MONTH' | 'YEAR';

export const UNIT_SECONDS: Readonly<Record<Unit, number>> = {
  SECOND: 1,
  MINUTE: 60,
  HOUR: 60 * 60,
  DAY: 60 * 60 * 24,
  WEEK: 60 * 60 * 24 * 7,
  MONTH: 60 * 60 * 24 * 30,
  YEAR: 60 * 60 * 24 * 365,
};

export const UNITS = Object.keys(UNIT_SECONDS) as Unit[];

/** Numbers of envoy.type.v3.RateLimitUnit and RateLimitResponse.RateLimit.Unit (WEEK is 7). */
const UNIT_NUMBERS: Readonly<Record<number, Unit>> = { 1: 'SECOND', 2: 'MINUTE', 3: 'HOUR', 4: 'DAY', 5: 'MONTH', 6: 'YEAR', 7: 'WEEK' };

/** A config file's unit, case-insensitive as upstream reads it; undefined when unknown. */
export function parseUnit(text: string): Unit | undefined {
  const upper = text.toUpperCase();
  return Object.hasOwn(UNIT_SECONDS, upper) ? (upper as Unit) : undefined;
}

/** A unit as proto-loader decodes an enum: its name, or its number when the name is not known. */
export function unitFromWire(value: unknown): Unit | undefined {
  if (typeof value === 'number') return UNIT_NUMBERS[value];
  if (typeof value === 'string') return Object.hasOwn(UNIT_SECONDS, value) ? (value as Unit) : undefined;
  return undefined;
}

export function unitMs(unit: Unit): number {
  return UNIT_SECONDS[unit] * 1000;
}

/** Whole seconds until the epoch-aligned window of `unit` containing `nowMs` ends (1 to unit). */
export function secondsToWindowEnd(unit: Unit, nowMs: number): number {
  const period = UNIT_SECONDS[unit];
  const now = Math.floor(nowMs / 1000);
  return period - (now % period);
}
