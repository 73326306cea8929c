// The demo server's GET answers (responses.ts): the voice page pins the server's own
// certificate; generated bodies; static files, including paths that must never escape or throw.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { respond } from '../../src/demo/responses.js';
import { certificateSha256 } from '../../src/demo/cert.js';

const certificate = Buffer.from('a DER certificate stands here');
const dir = mkdtempSync(path.join(tmpdir(), 'quic-lb-responses-'));
writeFileSync(path.join(dir, 'a.txt'), 'hello');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('respond()', () => {
  it('/voice: an HTML page carrying the SHA-256 of the certificate it is given', async () => {
    const r = await respond('/voice', { certificate, staticDir: dir });
    expect(r.status).toBe(200);
    expect(r.headers).toEqual([['content-type', 'text/html; charset=utf-8']]);
    expect(r.body.toString()).toContain(certificateSha256(certificate));
  });

  it('/bytes/N and the banner', async () => {
    expect((await respond('/bytes/300', { certificate })).body[252]).toBe(1);
    expect((await respond('/', { certificate, name: 'b1', serverId: '0a01' })).body.toString()).toBe(
      'quic-lb demo backend b1 server ID 0a01\n',
    );
  });

  it('static files: served, 404 outside the directory, 404 (not a rejection) for bad percent-encoding', async () => {
    expect((await respond('/a.txt', { certificate, staticDir: dir })).body.toString()).toBe('hello');
    expect((await respond('/../etc/passwd', { certificate, staticDir: dir })).status).toBe(404);
    expect((await respond('/%E0%A4%A', { certificate, staticDir: dir })).status).toBe(404);
  });
});
