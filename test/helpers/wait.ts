// Waiting in tests: a fixed pause and a deadline-bound poll, the only ones in test/ (the
// namespace and hostile suites use them too). Speed is never asserted with them: a deadline only
// turns a hang into a failure that names what it waited for.

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How often {@link waitFor} calls its probe. */
export const POLL_MS = 25;

/**
 * Calls `probe` every {@link POLL_MS} ms until it returns (or resolves to) true. Throws
 * `Error('timed out after <timeoutMs> ms waiting for <what>')` when `timeoutMs` has passed;
 * an exception from `probe` propagates at once (a probe throws to report a dead process).
 */
export async function waitFor(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}
