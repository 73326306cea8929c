// Shared test helpers for test/quic.
import { expect } from 'vitest';
import { QuicWireError } from '../../src/wire/index.js';

/** Hex (whitespace ignored) to a Buffer. */
export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Runs `f`, asserts that what it throws is a QuicWireError, returns its `code` (undefined if no throw). */
export function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QuicWireError);
    return (e as QuicWireError).code;
  }
  return undefined;
}

/** The `field` of the QuicWireError `f` throws (undefined if no throw). */
export function fieldOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as QuicWireError).field;
  }
  return undefined;
}
