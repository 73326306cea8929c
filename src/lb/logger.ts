// pino structured logs. Never one line per packet: the packet path only bumps counters.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/** A JSON logger to stderr at `level` (stdout stays free for command output). */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { pid: process.pid, name: 'quic-lb' } }, pino.destination(2));
}
