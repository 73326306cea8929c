// Headless Chromium (Debian's /usr/bin/chromium) as a test client (docs/clients.md): started by
// us with a temp profile and a net-log, driven through playwright-core over CDP (no browser
// download), stopped by its PID; and a reader for its net-log JSON that tolerates a file cut
// short (a killed browser never writes the closing `]}`).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium as playwright, type Browser, type Page } from 'playwright-core';
import { startProcess, stop, type Proc } from '../helpers/process.js';

export const CHROMIUM = '/usr/bin/chromium';

export interface ChromiumOptions {
  /** `host:port` whose https origin goes over QUIC without Alt-Svc discovery (`--origin-to-force-quic-on`). */
  quicOrigin: string;
  /** base64 SHA-256 of the server certificate's SubjectPublicKeyInfo (src/demo `spkiPin`). */
  spkiPin: string;
}

export interface RunningChromium {
  proc: Proc;
  browser: Browser;
  page: Page;
  netLogFile: string;
  /** Closes the browser (CDP Browser.close, then its PID), reads its net-log, removes the temp dir. */
  close(): Promise<NetLog>;
}

/** Flags for a quiet headless run: no sandbox (root in CI), no background traffic, no first-run UI. */
function baseArgs(dir: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--user-data-dir=${path.join(dir, 'profile')}`,
    '--remote-debugging-address=127.0.0.1',
    '--remote-debugging-port=0',
  ];
}

/**
 * Starts Chromium with HTTP/3 forced on for `quicOrigin`, the server certificate accepted by its
 * SPKI pin (`--ignore-certificate-errors` does not apply to QUIC) and a net-log capturing
 * everything, then connects playwright-core to it over CDP. Resolves with one blank page.
 */
export async function startChromium(o: ChromiumOptions): Promise<RunningChromium> {
  const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-chromium-'));
  const netLogFile = path.join(dir, 'netlog.json');
  const devtools = /DevTools listening on (ws:\/\/\S+)/;
  let proc: Proc | undefined;
  try {
    proc = await startProcess(
      CHROMIUM,
      [
        ...baseArgs(dir),
        '--enable-quic',
        `--origin-to-force-quic-on=${o.quicOrigin}`,
        `--ignore-certificate-errors-spki-list=${o.spkiPin}`,
        `--log-net-log=${netLogFile}`,
        '--net-log-capture-mode=Everything',
        'about:blank',
      ],
      { readyWhen: (out) => devtools.test(out), timeoutMs: 20_000 },
    );
    const ws = devtools.exec(proc.output())![1];
    const browser = await playwright.connectOverCDP(ws, { timeout: 15_000 });
    const context = browser.contexts()[0] ?? (await browser.newContext());
    const page = context.pages()[0] ?? (await context.newPage());
    const running = proc;
    return {
      proc: running,
      browser,
      page,
      netLogFile,
      async close() {
        await closeBrowser(browser, running);
        try {
          return readNetLog(netLogFile);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    await stop(proc);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Asks the browser to quit (it then finishes its net-log), and stops it by PID if it does not within 5 s. */
async function closeBrowser(browser: Browser, proc: Proc): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) resolve();
    else proc.child.once('exit', () => resolve());
  });
  try {
    const cdp = await browser.newBrowserCDPSession();
    await cdp.send('Browser.close').catch(() => undefined); // the connection drops as it quits
  } catch {
    // already disconnected: the PID below still ends it
  }
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') await stop(proc);
}

export interface NetLogEvent {
  type: number;
  phase: number;
  time: string;
  source: { id: number; type: number };
  params?: Record<string, unknown>;
}

export interface NetLog {
  /** false when the file was cut short (no closing `]}`) and the last partial lines were dropped */
  complete: boolean;
  eventTypes: Record<string, number>;
  sourceTypes: Record<string, number>;
  events: NetLogEvent[];
  /** The events of one event type name (e.g. 'QUIC_SESSION_CERTIFICATE_VERIFIED'); [] for an unknown name. */
  named(name: string): NetLogEvent[];
  /** Distinct source ids of one source type name (e.g. 'QUIC_SESSION'). */
  sources(type: string): number[];
}

/**
 * Parses a Chromium net-log file: `{"constants": {...},\n"events": [\n{...},\n...\n]}`, one
 * event a line. A file cut short (the browser killed, or read while it runs) lacks the closing
 * `]}` and may end in a partial line: the complete lines are kept.
 */
export function parseNetLog(text: string): NetLog {
  let parsed: { constants?: Record<string, unknown>; events?: NetLogEvent[] } | undefined;
  let complete = true;
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    complete = false;
    const lines = text.trimEnd().split('\n');
    // Only the last line or two can be partial; dropping more would hide a malformed file.
    for (let drop = 0; drop < 3 && parsed === undefined && lines.length > drop; drop++) {
      const kept = lines.slice(0, lines.length - drop).join('\n');
      try {
        parsed = JSON.parse(`${kept.replace(/,\s*$/, '')}]}`) as typeof parsed;
      } catch {
        // drop one more line
      }
    }
  }
  if (!parsed?.constants) throw new Error('not a Chromium net-log (no constants)');
  const eventTypes = parsed.constants.logEventTypes as Record<string, number>;
  const sourceTypes = parsed.constants.logSourceType as Record<string, number>;
  const events = parsed.events ?? [];
  return {
    complete,
    eventTypes,
    sourceTypes,
    events,
    named: (name) => (name in eventTypes ? events.filter((e) => e.type === eventTypes[name]) : []),
    sources: (type) => [...new Set(events.filter((e) => e.source.type === sourceTypes[type]).map((e) => e.source.id))],
  };
}

export function readNetLog(file: string): NetLog {
  return parseNetLog(readFileSync(file, 'utf8'));
}
