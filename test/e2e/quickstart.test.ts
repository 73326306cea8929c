// `quic-lb demo` (what `npm start` runs) prints a gtlsclient command; run it exactly as printed.
// The quick start's fixed addresses (127.0.0.1:4433 ...) are moved to 127.0.2.60-62 / 256xx here
// so the test never collides with a developer's running `npm start`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadIdentity, spkiPin, stateDirFiles } from '../../src/demo/index.js';
import { runCli } from '../helpers/cli.js';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { sleep } from '../helpers/wait.js';

let demo: Proc | undefined;
let pinned: Proc | undefined;
const tmp = mkdtempSync(path.join(tmpdir(), 'quic-lb-quickstart-'));
afterAll(async () => {
  await stop(demo);
  await stop(pinned);
  rmSync(tmp, { recursive: true, force: true });
});

/** `quic-lb demo ...args`, ready once it printed its banner (the quick start prints no JSON ready line). */
async function startQuickStart(args: string[]): Promise<{ proc: Proc; text: string }> {
  const proc = await startCli(['demo', ...args], { readyWhen: (out) => out.includes('Ctrl-C stops everything.') });
  return { proc, text: proc.output() };
}

/** Runs `command` as printed: split on blanks, or with `shell` through bash (the Chromium command's `$(mktemp -d)`). */
function runPrinted(command: string, shell = false): Promise<string> {
  const [bin, ...args] = shell ? ['bash', '-c', `exec ${command.trim()}`] : command.trim().split(/\s+/);
  return new Promise((resolve) => {
    // mktemp -d of the printed Chromium command makes its profile under this test's temp dir.
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('latin1')));
    child.stderr.on('data', (b: Buffer) => (out += b.toString('latin1')));
    const timer = setTimeout(() => process.kill(child.pid as number, 'SIGKILL'), 20_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('quic-lb demo (npm start)', () => {
  it('prints a gtlsclient command that works as printed: handshake via the VIP, move to a backend, 200 OK', async () => {
    const started = await startQuickStart([
      '--vip',
      '127.0.2.60:25600',
      '--backends',
      '127.0.2.61:25601,127.0.2.62:25601',
      '--metrics',
      '127.0.2.60:25602',
    ]);
    demo = started.proc;
    const command = started.text.split('\n').find((l) => l.trim().startsWith('gtlsclient '));
    // The client aimed at the VIP given with --vip (address, port and the https URL).
    expect(command?.trim()).toMatch(/^gtlsclient .* 127\.0\.2\.60 25600 https:\/\/127\.0\.2\.60:25600\/\S*$/);
    expect(started.text).toContain('http://127.0.2.60:25602/metrics');
    const out = await runPrinted(command as string);
    expect(out).toContain('QUIC handshake has been confirmed');
    expect(out).toMatch(/selected server preferred_address is \[127\.0\.2\.6[12]\]:25601/);
    expect(out).toMatch(
      /Path validation against path \{local:\[[0-9.]+\]:\d+, remote:\[127\.0\.2\.6[12]\]:25601\} succeeded/,
    );
    expect(out).toContain('http: stream 0x0 [:status: 200]');
    expect(out).toContain('HTTP stream 0 closed with error code 256');
    // The demo narrated the connection, and the LB's metrics saw only its first datagrams.
    await sleep(100);
    expect(demo.output()).toMatch(/backend-[12]: connection 1 moved to direct:127\.0\.2\.6[12]:25601/);
    const metrics = await (await fetch('http://127.0.2.60:25602/metrics')).text();
    const received = [...metrics.matchAll(/^quic_lb_received_packets_total\{[^}]*\} (\d+)/gm)].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
    expect(received).toBeGreaterThanOrEqual(2);
    expect(received).toBeLessThanOrEqual(8);
    // The voice page's URL, on the same VIP: the backend serves the page there.
    const voiceUrl = /https:\/\/\S+\/voice\b/.exec(started.text)?.[0];
    expect(voiceUrl).toBe('https://127.0.2.60:25600/voice');
    const voice = await runPrinted((command as string).replace(/https:\/\/\S*$/, voiceUrl as string));
    expect(voice).toContain('http: stream 0x0 [:status: 200]');
    expect(voice).toContain('[content-type: text/html; charset=utf-8]');
  });
});

describe('quic-lb demo --state-dir: a pin that survives restarts', () => {
  const args = [
    '--vip',
    '127.0.5.20:25720',
    '--backends',
    '127.0.5.21:25721,127.0.5.22:25721',
    '--metrics',
    '127.0.5.20:25722',
    '--quiet',
  ];
  const pinOf = (text: string): string | undefined => /SPKI pin (\S+)/.exec(text)?.[1];

  it("prints the kept key's SPKI pin on every start, and a Chromium command that works as printed", async () => {
    const state = path.join(tmp, 'state');
    const first = await startQuickStart([...args, '--state-dir', state]);
    pinned = first.proc;
    const files = stateDirFiles(state);
    const pin = spkiPin(loadIdentity(files.cert, files.key));
    expect(pinOf(first.text)).toBe(pin);
    await stop(pinned);

    const second = await startQuickStart([...args, '--state-dir', state]);
    pinned = second.proc;
    expect(pinOf(second.text)).toBe(pin);
    const command = second.text.split('\n').find((l) => l.trim().startsWith('chromium '));
    expect(command).toContain(`--ignore-certificate-errors-spki-list=${pin}`);
    expect(command).toContain('--origin-to-force-quic-on=127.0.5.20:25720');
    const page = await runPrinted(command as string, true);
    expect(page).toMatch(/quic-lb demo backend backend-[12] server ID 000[12]/);
  });

  it('refuses --cert without --key, and --state-dir with --cert', () => {
    const alone = runCli(['demo', ...args, '--cert', 'x.pem']);
    expect(alone.status).toBe(2);
    expect(alone.stderr).toContain('--cert and --key go together');
    const both = runCli(['demo', ...args, '--cert', 'x.pem', '--key', 'y.pem', '--state-dir', tmp]);
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('--state-dir and --cert/--key');
  });
});
