import { pino, type Logger, type LevelWithSilent } from 'pino';

/** The levels SLUICE_LOG_LEVEL and the sluice.dev/log-level annotation accept. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function createLogger(level: LevelWithSilent, pretty: boolean): Logger {
  return pino({
    name: 'sluice',
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { destination: 1 } } } : {}),
  });
}

/**
 * Logs a recurring problem at most once per interval, with the count of those held back, so a
 * dead store cannot flood the log at the request rate.
 */
export function throttledWarn(log: Logger, intervalMs: number): (obj: object, msg: string) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (obj, msg) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    log.warn({ ...obj, suppressed }, msg);
    last = now;
    suppressed = 0;
  };
}
