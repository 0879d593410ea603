// The relay's log: one line per event on stderr (journald, docker logs),
// JSON with `json: true`. Values pass through redact() so nothing secret
// reaches the log even if a server echoes it.
import { redact } from '../util/redact.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export interface Logger {
  /** The lowest level written ('off': nothing); unknown loggers get everything. */
  readonly level?: LogLevel | 'off';
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(opts: { json?: boolean; level?: LogLevel; write?: (line: string) => void } = {}): Logger {
  const min = ORDER[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[level] < min) return;
    if (opts.json) {
      write(redact(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })));
      return;
    }
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(' ');
    write(redact(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${kv ? ' ' + kv : ''}`));
  };
  return {
    level: opts.level ?? 'info',
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export const silentLogger: Logger = { level: 'off', debug() {}, info() {}, warn() {}, error() {} };
