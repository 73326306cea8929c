// The rule for secret key files (HMAC keys, stateless-reset keys, QUIC-LB keys): readable by
// their owner only. One function, so the backend CLI and the LB warn for the same modes.
import { statSync } from 'node:fs';

/** Permission bits that let the file's group or anyone else read (or write, or run) it. */
export const KEY_FILE_FORBIDDEN_MODE = 0o077;

/**
 * A one-line warning when key file `file` is group- or world-accessible (`mode & 0o077`), naming
 * the file and its mode, e.g. `key file /etc/k.hex is accessible to group or others (mode 0640):
 * chmod 600 it`; undefined when the mode is fine or the file cannot be stat'ed (reading it
 * reports that). Never throws.
 */
export function keyFileModeWarning(file: string): string | undefined {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return undefined;
  }
  if ((mode & KEY_FILE_FORBIDDEN_MODE) === 0) return undefined;
  return `key file ${file} is accessible to group or others (mode 0${mode.toString(8).padStart(3, '0')}): chmod 600 it`;
}
