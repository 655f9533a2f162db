/**
 * One pino logger for the process; child loggers carry node, shard and activeflow ids. Log events
 * have fixed snake_case names in `event` (shards_acquired, actor_rehydrated, revision_conflict...).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level: process.env['LOG_LEVEL'] ?? 'info',
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that writes nothing (tests that do not look at logs). */
export const silentLogger: Logger = pino({ level: 'silent' });
