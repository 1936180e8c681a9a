// What the CLI reads from its environment and package, checked once, shared by its commands.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LevelWithSilent } from 'pino';
import { parseDuration } from '../config/units.js';
import { MAX_STOP_DELAY_MS } from '../kube/sidecar-container.js';
import { LOG_LEVELS } from '../log.js';
import { packageRoot } from '../paths.js';

const LEVELS = new Set<string>(LOG_LEVELS);

export function packageVersion(): string {
  return JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;
}

/**
 * The log level in SLUICE_LOG_LEVEL (unset or empty: `fallback`), or null (with the problem
 * written) when it is not one.
 */
export function logLevel(fallback: LevelWithSilent = 'info'): LevelWithSilent | null {
  const level = process.env.SLUICE_LOG_LEVEL || fallback;
  if (LEVELS.has(level)) return level as LevelWithSilent;
  process.stderr.write(`sluice: SLUICE_LOG_LEVEL must be one of ${[...LEVELS].join(', ')}\n`);
  return null;
}

/** SLUICE_STOP_DELAY in ms (0 when unset), or undefined (with the problem written) when it is not a duration. */
export function stopDelayMs(): number | undefined {
  const text = process.env.SLUICE_STOP_DELAY;
  if (text === undefined || text === '') return 0;
  const ms = parseDuration(text);
  if (ms !== undefined && ms <= MAX_STOP_DELAY_MS) return ms;
  process.stderr.write(`sluice: SLUICE_STOP_DELAY must be a duration up to 1h, such as 25s or 1500ms, not ${JSON.stringify(text)}\n`);
  return undefined;
}
