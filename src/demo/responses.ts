// The demo server's GET responses: `/voice` (the voice page, voice-page.ts), `/bytes/N`
// (generated bodies), files of a static directory, and a one-line `/`.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { generateBody, MAX_GENERATED_BODY, type H3Response } from './h3.js';
import { voicePage } from './voice-page.js';
import { certificateSha256 } from './cert.js';

export interface ResponseOptions {
  /** Directory served for paths other than /bytes/N and /voice. */
  staticDir?: string;
  name?: string;
  serverId?: string;
  /** The server's leaf certificate (DER): the voice page pins its SHA-256. */
  certificate: Buffer;
}

/** The response to `GET reqPath`; never rejects (a missing file is a 404). */
export async function respond(reqPath: string, o: ResponseOptions): Promise<H3Response> {
  if (reqPath === '/voice') {
    return {
      status: 200,
      body: Buffer.from(voicePage(certificateSha256(o.certificate))),
      headers: [['content-type', 'text/html; charset=utf-8']],
    };
  }
  const m = /^\/bytes\/(\d+)$/.exec(reqPath);
  if (m) {
    const n = Number(m[1]);
    return n <= MAX_GENERATED_BODY
      ? { status: 200, body: generateBody(n) }
      : { status: 400, body: Buffer.from('too large\n') };
  }
  if (o.staticDir) return staticFile(o.staticDir, reqPath);
  if (reqPath === '/')
    return { status: 200, body: Buffer.from(`quic-lb demo backend ${o.name ?? ''} server ID ${o.serverId ?? '?'}\n`) };
  return { status: 404, body: Buffer.from('not found\n') };
}

/** A file under `dir` (a path escaping it is a 404). */
async function staticFile(dir: string, reqPath: string): Promise<H3Response> {
  const root = path.resolve(dir);
  let rel: string;
  try {
    rel = decodeURIComponent(reqPath.split('?')[0]);
  } catch {
    return { status: 404, body: Buffer.from('not found\n') }; // malformed percent-encoding
  }
  const file = path.resolve(root, `.${rel.endsWith('/') ? `${rel}index.html` : rel}`);
  if (file.startsWith(root + path.sep)) {
    try {
      if ((await stat(file)).isFile()) return { status: 200, body: await readFile(file) };
    } catch {
      // fall through to 404
    }
  }
  return { status: 404, body: Buffer.from('not found\n') };
}
