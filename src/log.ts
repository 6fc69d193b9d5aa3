// The default logger of workers and the CLI: human-readable lines (pino-pretty) on a
// terminal, one JSON object per line otherwise (for log shippers). LOG_LEVEL sets the
// level (default info); LOG_FORMAT=json or pretty overrides the choice. Errors go under
// the `err` key as Error objects, which pino serialises with type, message and stack.
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { ConfigError } from './errors.js';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerEnv {
  LOG_LEVEL?: string | undefined;
  LOG_FORMAT?: string | undefined;
}

export function createLogger(opts: { env?: LoggerEnv; stream?: NodeJS.WritableStream & { isTTY?: boolean } } = {}): Logger {
  const env = opts.env ?? process.env;
  const stream = opts.stream ?? process.stdout;
  const level = env.LOG_LEVEL || 'info';
  if (!LEVELS.includes(level)) throw new ConfigError(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, got '${level}'`);
  const format = env.LOG_FORMAT || (stream.isTTY ? 'pretty' : 'json');
  if (format !== 'json' && format !== 'pretty') throw new ConfigError(`LOG_FORMAT must be 'json' or 'pretty', got '${format}'`);
  const options = { level, serializers: { err: pino.stdSerializers.err } };
  if (format === 'json') return pino(options, stream);
  return pino(options, pretty({ destination: stream, colorize: stream.isTTY === true, sync: true }));
}
