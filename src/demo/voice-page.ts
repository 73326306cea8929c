// The `/voice` page: HTML and inline script, no build step, no external resources. It opens
// WebTransport to its own origin, pinning the server's certificate with
// `serverCertificateHashes` (W3C WebTransport §4.3: ECDSA, valid at most 14 days), then sends
// and receives one 160-octet record every 20 ms over one bidirectional stream (record layout:
// voice.ts). It shows, live, the path the server reports, frames sent / received / late / lost
// and the round-trip time; `window.voice` holds the same numbers for tests, and
// `window.voiceStop()` ends the session.
import { FRAME_INTERVAL_MS, LATE_MS, RECORD_OFFSETS, RECORD_SIZE, RecordKind } from './voice.js';
import { VOICE_WT_PATH } from './webtransport-host.js';

const SCRIPT = `
const stats = (window.voice = { state: 'connecting', path: null, paths: [], sent: 0, received: 0, late: 0, lost: 0, bad: 0, rttMs: null, error: null, datagramsSent: 0, datagramsEchoed: 0, datagramRttMs: null });
const hex = (h) => Uint8Array.from(h.match(/../g), (x) => parseInt(x, 16));
const clock = () => performance.timeOrigin + performance.now();
let stopped = false;
let writer = null;
let transport = null;
let tone = null;
window.voiceStop = async () => {
  stopped = true;
  try { if (writer) await writer.close(); } catch (e) {}
  try { if (transport) transport.close(); } catch (e) {}
  stats.state = 'closed';
};
function show() {
  const rows = [['state', stats.state], ['path', stats.path ? stats.path.via + ' (client ' + stats.path.client + ')' : '-'],
    ['paths seen', stats.paths.join(' -> ')], ['frames sent', stats.sent], ['frames received', stats.received],
    ['late (> ' + LATE + ' ms)', stats.late], ['lost', stats.lost], ['RTT ms', stats.rttMs === null ? '-' : stats.rttMs.toFixed(1)],
    ['datagrams sent / echoed', stats.datagramsSent + ' / ' + stats.datagramsEchoed],
    ['datagram RTT ms', stats.datagramRttMs === null ? '-' : stats.datagramRttMs.toFixed(1)], ['error', stats.error || '']];
  document.getElementById('t').innerHTML = rows.map(([k, v]) => '<tr><th>' + k + '</th><td>' + String(v).replace(/</g, '&lt;') + '</td></tr>').join('');
}
function onRecord(b, echo, rx) {
  const v = new DataView(b.buffer, b.byteOffset, RECORD);
  const kind = v.getUint8(0);
  if (kind === PATH) {
    const len = v.getUint16(O.path);
    try { stats.path = JSON.parse(new TextDecoder().decode(b.subarray(O.path + 2, O.path + 2 + len))); } catch (e) { stats.bad++; return; }
    if (stats.paths[stats.paths.length - 1] !== stats.path.via) stats.paths.push(stats.path.via);
    return;
  }
  if (kind !== AUDIO) { stats.bad++; return; }
  const now = clock();
  const seq = v.getUint32(O.seq);
  const sentAt = v.getFloat64(O.sentAt);
  stats.received++;
  if (seq > rx.next) stats.lost += seq - rx.next;
  if (seq >= rx.next) rx.next = seq + 1;
  const transit = now - sentAt;
  if (transit < rx.best) rx.best = transit;
  if (transit - rx.best > LATE) stats.late++;
  const echoSentAt = v.getFloat64(O.echoSentAt);
  if (echoSentAt > 0) stats.rttMs = now - echoSentAt - v.getFloat64(O.echoHeldMs);
  echo.sentAt = sentAt;
  echo.at = now;
  if (tone) tone.gain.setValueAtTime(0.1, tone.ctx.currentTime);
}
async function run() {
  transport = new WebTransport('https://' + location.host + WT_PATH, {
    serverCertificateHashes: [{ algorithm: 'sha-256', value: hex(CERT_HASH) }],
  });
  await transport.ready;
  stats.state = 'open';
  transport.closed.then(() => { stats.state = 'closed'; }, (e) => { stats.state = 'failed'; stats.error = String(e); });
  datagrams(transport);
  const stream = await transport.createBidirectionalStream();
  writer = stream.writable.getWriter();
  const echo = { sentAt: 0, at: 0 };
  const t0 = performance.now();
  const timer = setInterval(() => {
    if (stopped) return clearInterval(timer);
    const due = Math.floor((performance.now() - t0) / INTERVAL) + 1;
    while (stats.sent < due) {
      const b = new Uint8Array(RECORD);
      const v = new DataView(b.buffer);
      const now = clock();
      v.setUint8(0, AUDIO);
      v.setUint32(O.seq, stats.sent);
      v.setFloat64(O.sentAt, now);
      v.setFloat64(O.echoSentAt, echo.sentAt);
      v.setFloat64(O.echoHeldMs, echo.at > 0 ? now - echo.at : 0);
      writer.write(b).catch((e) => { stats.error = String(e); });
      stats.sent++;
    }
  }, INTERVAL);
  const reader = stream.readable.getReader();
  const rx = { next: 0, best: Infinity };
  let buf = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf);
    joined.set(value, buf.length);
    let off = 0;
    for (; joined.length - off >= RECORD; off += RECORD) onRecord(joined.subarray(off, off + RECORD), echo, rx);
    buf = joined.slice(off);
  }
}
// Unreliable datagrams beside the stream: one every 100 ms (sequence number, send time), echoed by the server.
function datagrams(t) {
  const w = t.datagrams.writable.getWriter();
  const timer = setInterval(() => {
    if (stopped) return clearInterval(timer);
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setUint32(0, stats.datagramsSent++);
    v.setFloat64(4, clock());
    w.write(b).catch(() => {});
  }, 100);
  (async () => {
    const r = t.datagrams.readable.getReader();
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      if (value.length !== 12) continue;
      stats.datagramsEchoed++;
      stats.datagramRttMs = clock() - new DataView(value.buffer, value.byteOffset, 12).getFloat64(4);
    }
  })().catch(() => {});
}
document.getElementById('tone').onclick = () => {
  // A 440 Hz tone, audible while frames arrive (gated by each received frame).
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.frequency.value = 440;
  osc.connect(gain).connect(ctx.destination);
  osc.start();
  tone = { ctx, gain: gain.gain };
  setInterval(() => gain.gain.setTargetAtTime(0, ctx.currentTime + 0.06, 0.01), 100);
};
setInterval(show, 200);
run().catch((e) => { stats.state = 'failed'; stats.error = String(e); show(); });
`;

/** The page, with the certificate hash (hex SHA-256 of the leaf's DER) filled in. */
export function voicePage(certHashHex: string): string {
  const constants =
    `const CERT_HASH = '${certHashHex}'; const WT_PATH = '${VOICE_WT_PATH}'; const RECORD = ${RECORD_SIZE};` +
    ` const INTERVAL = ${FRAME_INTERVAL_MS}; const LATE = ${LATE_MS}; const AUDIO = ${RecordKind.AUDIO}; const PATH = ${RecordKind.PATH};` +
    ` const O = ${JSON.stringify(RECORD_OFFSETS)};`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>quic-lb voice session</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}th{text-align:left;padding-right:1em}td{font-family:monospace}</style>
</head><body>
<h1>Voice session through the stateless edge</h1>
<p>One 160-octet frame every 20 ms each way over a WebTransport stream.</p>
<table id="t"></table>
<p><button id="tone">Play a tone while frames arrive</button></p>
<script>
${constants}
${SCRIPT}
</script>
</body></html>
`;
}
