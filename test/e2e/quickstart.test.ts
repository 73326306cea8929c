// `quic-lb demo` (what `npm start` runs) prints a gtlsclient command; run it exactly as printed.
// The quick start's fixed addresses (127.0.0.1:4433 ...) are moved to 127.0.2.60-62 / 256xx here
// so the test never collides with a developer's running `npm start`.
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { startCli, stop, type Proc } from '../helpers/process.js';
import { sleep } from '../helpers/wait.js';

let demo: Proc | undefined;
afterAll(async () => {
  await stop(demo);
});

/** `quic-lb demo ...args`, ready once it printed its banner (the quick start prints no JSON ready line). */
async function startQuickStart(args: string[]): Promise<{ proc: Proc; text: string }> {
  const proc = await startCli(['demo', ...args], { readyWhen: (out) => out.includes('Ctrl-C stops everything.') });
  return { proc, text: proc.output() };
}

function runPrinted(command: string): Promise<string> {
  const [bin, ...args] = command.trim().split(/\s+/);
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
  });
});
