/**
 * pino loggers for each process role. Every line carries {role, rank}; events are named `noun.verb`.
 * The launcher writes JSON to the run folder and human-readable lines to stderr; worker processes write
 * JSON to stdout, which the launcher stores per rank (and whose last line names a crash).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/**
 * Where pretty console lines go. While a progress bar is on screen, report.ts points this at the bar's
 * log(), which prints the line above the bar and redraws it, so log lines and the bar never overwrite each
 * other.
 */
let consoleWriter: ((line: string) => void) | null = null;

export function setConsoleWriter(writer: ((line: string) => void) | null): void {
  consoleWriter = writer;
}

const consoleStream = new Writable({
  write(chunk: Buffer | string, _encoding, done) {
    const line = chunk.toString();
    if (consoleWriter) consoleWriter(line);
    else process.stderr.write(line);
    done();
  },
});

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface LoggerOptions {
  level: LogLevel;
  /** Bound to every line: role and rank. */
  bindings: { role: string; rank?: number };
  /** JSON log file (created with its folder); omitted = none. */
  file?: string;
  /** Where humans read: pretty lines on stderr, or JSON lines on stdout (worker processes). */
  console: 'pretty' | 'json' | 'none';
}

export function createLogger(options: LoggerOptions): Logger {
  const streams: pino.StreamEntry[] = [];
  if (options.file) {
    mkdirSync(dirname(options.file), { recursive: true });
    streams.push({ level: options.level, stream: pino.destination({ dest: options.file, sync: true, mkdir: true }) });
  }
  if (options.console === 'pretty') {
    const colorize = Boolean(process.stderr.isTTY);
    streams.push({
      level: options.level,
      // Humans get the message; the fields are in the JSON log file (and on screen at debug level).
      stream: pretty({
        destination: consoleStream,
        sync: true,
        colorize,
        ignore: 'pid,hostname',
        translateTime: 'HH:MM:ss',
        // pino-pretty 13 drops the line end when hideObject and singleLine are both on: use one or the other.
        ...(options.level === 'debug' || options.level === 'trace' ? { singleLine: true } : { hideObject: true }),
      }),
    });
  } else if (options.console === 'json') {
    streams.push({ level: options.level, stream: pino.destination({ dest: 1, sync: true }) });
  }
  return pino({ level: options.level, base: options.bindings }, pino.multistream(streams));
}
