// WebTransport framing (draft-ietf-webtrans-http3-02, RFC 9220, RFC 9297) and the per-connection
// session table of the demo server; the stream behaviour a session needs; the voice records,
// their receive-side counters and the server's voice session.
import { describe, expect, it } from 'vitest';
import {
  encodeDatagram,
  encodeSettings,
  encodeStreamSignal,
  MAX_SESSIONS_PER_CONNECTION,
  maxDatagramFrameSize,
  MAX_STREAMS_PER_SESSION,
  parseDatagram,
  parseStreamSignal,
  WT_SETTINGS,
  WtSessions,
} from '../../src/demo/webtransport.js';
import { CONTROL_STREAM_PREFIX, encodeResponseHeaders, parseRequest } from '../../src/demo/h3.js';
import { decodeFieldSection } from '../../src/demo/qpack.js';
import {
  decodeRecord,
  encodeRecord,
  FrameStats,
  MAX_BACKLOG_OCTETS,
  RECORD_SIZE,
  RecordKind,
  VoiceSession,
} from '../../src/demo/voice.js';
import { INITIAL_MAX_STREAM_DATA, Streams, TRIM_ACKED_OCTETS } from '../../src/demo/streams.js';
import { Writer } from '../../src/demo/buffers.js';
import type { SentFrame } from '../../src/demo/spaces.js';
import type { TransportParameters } from '../../src/wire/index.js';
import { voicePage } from '../../src/demo/voice-page.js';
import { certificateSha256 } from '../../src/demo/cert.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('SETTINGS and the CONNECT exchange', () => {
  it('the control stream advertises extended CONNECT, H3 datagrams and WebTransport draft-02, in that order', () => {
    // type 0x00, SETTINGS (0x04) length 9: 0x08=1 (RFC 9220), 0x33=1 (RFC 9297), 0x2b603742=1 (draft-02).
    expect(hex(CONTROL_STREAM_PREFIX)).toBe('00' + '04' + '09' + '0801' + '3301' + 'ab603742' + '01');
    expect(encodeSettings(WT_SETTINGS).length).toBe(11);
  });

  it('reads an extended CONNECT (RFC 9220 §3) with :protocol as a literal field', () => {
    // Field section: RIC 0, base 0; :method CONNECT (static 15); :scheme https (23);
    // :authority (0) literal value; :path (1) literal value; ":protocol" literal name + value.
    const lit = (s: string): number[] => [s.length, ...Buffer.from(s)];
    const fields = Buffer.from([
      0,
      0,
      0xc0 | 15,
      0xc0 | 23,
      0x50,
      ...lit('127.0.0.1:4433'),
      0x51,
      ...lit('/voice-wt'),
      0x27,
      9 - 7,
      ...Buffer.from(':protocol'),
      ...lit('webtransport'),
    ]);
    const frame = Buffer.concat([Buffer.of(0x01, fields.length), fields]);
    expect(parseRequest(frame)).toEqual({
      method: 'CONNECT',
      path: '/voice-wt',
      authority: '127.0.0.1:4433',
      protocol: 'webtransport',
    });
    // Every prefix of it is incomplete, never a misread.
    for (let n = 0; n < frame.length; n++) expect(parseRequest(frame.subarray(0, n))).toBe('incomplete');
  });

  it('answers 200 with sec-webtransport-http3-draft: draft02 (draft-02 §3.3), decodable by QPACK', () => {
    const h = encodeResponseHeaders({
      status: 200,
      body: Buffer.alloc(0),
      headers: [['sec-webtransport-http3-draft', 'draft02']],
    });
    expect(h[0]).toBe(0x01); // HEADERS
    expect(decodeFieldSection(h.subarray(2, 2 + h[1]))).toEqual([
      [':status', '200'],
      ['sec-webtransport-http3-draft', 'draft02'],
    ]);
    // A status outside the static table (429) goes out as a literal with a name reference.
    const r = encodeResponseHeaders({ status: 429, body: Buffer.alloc(0) });
    expect(decodeFieldSection(r.subarray(2, 2 + r[1]))).toEqual([[':status', '429']]);
  });
});

describe('stream signal and datagrams', () => {
  it('reads the peer max_datagram_frame_size (RFC 9221 §3); absent or malformed is 0', () => {
    const tp = (value: number[]): TransportParameters => ({ unknown: [{ id: 0x20, value: Uint8Array.from(value) }] });
    expect(maxDatagramFrameSize(tp([0x44, 0xb0]))).toBe(1200);
    expect(maxDatagramFrameSize({})).toBe(0);
    expect(maxDatagramFrameSize(tp([0x44]))).toBe(0);
    expect(maxDatagramFrameSize(tp([0x01, 0x02]))).toBe(0);
  });

  it('0x41 + session ID round-trips; a request frame is not a WebTransport stream; prefixes are incomplete', () => {
    for (const id of [0, 4, 64, 16384, 2 ** 30]) {
      const sig = encodeStreamSignal(id);
      expect(parseStreamSignal(Buffer.concat([sig, Buffer.from('abc')]))).toEqual({
        sessionId: id,
        length: sig.length,
      });
      for (let n = 0; n < sig.length; n++) expect(parseStreamSignal(sig.subarray(0, n))).toBe('incomplete');
    }
    expect(hex(encodeStreamSignal(0))).toBe('404100'); // varint 0x41 takes two octets
    expect(parseStreamSignal(Buffer.of(0x01, 0x03, 0, 0, 0xd1))).toBeUndefined(); // HEADERS
  });

  it('HTTP datagrams carry the quarter stream ID (RFC 9297 §2.1)', () => {
    const d = encodeDatagram(8, Buffer.from('hi'));
    expect(hex(d)).toBe('02' + hex(Buffer.from('hi')));
    expect(parseDatagram(d)).toEqual({ sessionId: 8, payload: Buffer.from('hi') });
    expect(parseDatagram(Buffer.alloc(0))).toBeUndefined();
  });
});

/** A session table over a fake connection that records what is written. */
function table(): { t: WtSessions; writes: Array<[number, string, boolean]> } {
  const writes: Array<[number, string, boolean]> = [];
  const t = new WtSessions({ sendStream: (id, data, fin) => writes.push([id, hex(data), fin]) });
  return { t, writes };
}

describe('session state machine (WtSessions)', () => {
  it('open -> streams attach -> data routed -> CONNECT FIN closes once', () => {
    const { t, writes } = table();
    const s = t.open(0, '/voice-wt')!;
    const got: Array<[number, string, boolean]> = [];
    const closes: string[] = [];
    s.handler = { onStreamData: (id, d, fin) => got.push([id, d.toString(), fin]), onClose: (r) => closes.push(r) };
    expect(t.attach(4, 0)).toBe(s);
    t.onStreamData(4, Buffer.from('frame'), false);
    s.send(4, Buffer.from('back'));
    t.onStreamData(0, Buffer.alloc(0), true); // the client finished the CONNECT stream
    t.onStreamData(4, Buffer.from('after'), false); // ignored: the session is gone
    t.onStreamData(0, Buffer.alloc(0), true); // a second FIN closes nothing
    expect(got).toEqual([[4, 'frame', false]]);
    expect(closes).toEqual(['connect-stream-finished']);
    expect(writes).toEqual([
      [4, hex(Buffer.from('back')), false],
      [0, '', true], // the server's FIN on the CONNECT stream (draft-02 §4.4)
    ]);
    expect(t.openCount).toBe(0);
    s.send(4, Buffer.from('late')); // a closed session sends nothing
    expect(writes).toHaveLength(2);
  });

  it('bounds sessions per connection and streams per session; refusals are counted', () => {
    const { t } = table();
    for (let i = 0; i < MAX_SESSIONS_PER_CONNECTION; i++) expect(t.open(i * 4, '/voice-wt')).toBeDefined();
    expect(t.open(400, '/voice-wt')).toBeUndefined();
    expect(t.drops['session-limit']).toBe(1);
    for (let i = 0; i < MAX_STREAMS_PER_SESSION; i++) expect(t.attach(1000 + i * 4, 0)).toBeDefined();
    expect(t.attach(2000, 0)).toBeUndefined();
    expect(t.attach(2004, 96)).toBeUndefined();
    expect(t.drops).toEqual({ 'session-limit': 1, 'stream-limit': 1, 'unknown-session': 1 });
  });

  it('the connection going away closes every session without writing to it', () => {
    const { t, writes } = table();
    const s = t.open(0, '/voice-wt')!;
    const closes: string[] = [];
    s.handler = { onStreamData: () => undefined, onClose: (r) => closes.push(r) };
    t.closeAll('connection-closed');
    expect(closes).toEqual(['connection-closed']);
    expect(writes).toEqual([]);
    expect(t.open(8, '/voice-wt')).toBeDefined(); // the slot is free again
  });

  it('datagrams reach their session; unknown sessions are counted', () => {
    const { t } = table();
    const s = t.open(4, '/voice-wt')!;
    const got: string[] = [];
    s.handler = { onStreamData: () => undefined, onDatagram: (p) => got.push(p.toString()), onClose: () => undefined };
    t.onDatagram(encodeDatagram(4, Buffer.from('x')));
    t.onDatagram(encodeDatagram(8, Buffer.from('y')));
    expect(got).toEqual(['x']);
    expect(t.drops['unknown-session']).toBe(1);
  });
});

describe('voice records', () => {
  it('round-trip audio and path records at 160 octets', () => {
    const a = { kind: RecordKind.AUDIO, seq: 70000, sentAt: 1.7e12 + 0.25, echoSentAt: 1.7e12 - 3, echoHeldMs: 4.5 };
    const b = encodeRecord(a);
    expect(b.length).toBe(RECORD_SIZE);
    expect(decodeRecord(b)).toEqual(a);
    const p = { ...a, kind: RecordKind.PATH, path: { via: 'direct:127.0.0.2:4434', client: '127.0.0.1:5000' } };
    expect(decodeRecord(encodeRecord(p))).toEqual(p);
    expect(decodeRecord(b.subarray(0, RECORD_SIZE - 1))).toBeUndefined();
    const bad = Buffer.from(b);
    bad[0] = 9;
    expect(decodeRecord(bad)).toBeUndefined();
  });

  it('counts gaps as lost and frames beyond 60 ms of the best transit as late', () => {
    const s = new FrameStats();
    s.onFrame(0, 1000, 5010); // transit 4010 (clock offset 4000 + 10 ms)
    s.onFrame(1, 1020, 5030);
    s.onFrame(4, 1080, 5160); // 2 and 3 missing; transit 4080: 70 ms beyond the best -> late
    s.onFrame(5, 1100, 5165); // 55 ms beyond: on time
    expect({ received: s.received, lost: s.lost, late: s.late }).toEqual({ received: 4, lost: 2, late: 1 });
  });

  it('the page pins the certificate hash it is given and uses no external resource', () => {
    const hash = certificateSha256(Buffer.from('not a real certificate'));
    const html = voicePage(hash);
    expect(html).toContain(`const CERT_HASH = '${hash}'`);
    expect(html).toContain("serverCertificateHashes: [{ algorithm: 'sha-256'");
    expect(html).not.toMatch(/(src|href)=["']?https?:/);
  });
});

describe('streams a WebTransport session needs (Streams)', () => {
  function streams(claim: (id: number, d: Buffer) => boolean) {
    const control: string[] = [];
    const data: Array<[number, number, boolean]> = [];
    const st = new Streams({
      queueControl: (f) => control.push(hex(f)),
      onRequest: () => undefined,
      onResponse: () => undefined,
      claimStream: claim,
      onStreamData: (id, d, fin) => data.push([id, d.length, fin]),
    });
    return { st, control, data };
  }

  it('a claimed stream gets its data as it arrives and credit a window ahead; RESET_STREAM ends it', () => {
    const { st, control, data } = streams((_id, d) => d[0] === 0x40);
    expect(st.onStream(0, 0, encodeStreamSignal(0), false)).toBeUndefined();
    let off = 3;
    const chunk = Buffer.alloc(1000);
    for (let i = 0; i < 200; i++, off += chunk.length) expect(st.onStream(0, off, chunk, false)).toBeUndefined();
    expect(data).toHaveLength(200); // 200 KB on one stream: far beyond the initial 64 KB credit
    const maxStreamData = control.filter((c) => c.startsWith('11'));
    expect(maxStreamData.length).toBeGreaterThanOrEqual(5);
    // Data beyond the credit given is a flow-control error (RFC 9000 §4.5).
    expect(st.onStream(0, off + INITIAL_MAX_STREAM_DATA * 4, chunk, false)?.code).toBe(0x03);
    st.onReset(0);
    expect(data[data.length - 1]).toEqual([0, 0, true]);
  });

  it('an unclaimed stream is still delivered whole at its FIN', () => {
    const requests: number[] = [];
    const st = new Streams({
      queueControl: () => undefined,
      onRequest: (_id, d) => requests.push(d.length),
      onResponse: () => undefined,
      claimStream: () => false,
    });
    st.onStream(4, 0, Buffer.alloc(10), false);
    st.onStream(4, 10, Buffer.alloc(5), true);
    expect(requests).toEqual([15]);
  });

  it('a long-lived send stream keeps only what is unacknowledged (TRIM_ACKED_OCTETS)', () => {
    const { st } = streams(() => false);
    st.peerMaxData = 1 << 30;
    st.peerStreamCredit = { bidi: 1 << 30, uni: 1 << 30 };
    const total = 300 * 1024;
    const body = Buffer.from(Array.from({ length: total }, (_, i) => i % 251));
    const sent: Buffer[] = [];
    for (let written = 0; written < total; written += 16 * 1024) {
      st.write(0, body.subarray(written, written + 16 * 1024), false);
      for (;;) {
        const w = new Writer(1200);
        const frames: SentFrame[] = [];
        if (!st.writeFrames(w, frames)) break;
        for (const f of frames) if (f.k === 'stream') st.onAcked(f);
        sent.push(Buffer.from(w.view()));
      }
    }
    expect(st.unsent(0)).toBe(0);
    // The buffer was trimmed: its base moved and it holds less than the trim threshold.
    const probe: SentFrame[] = [];
    st.write(0, Buffer.from('x'), true);
    st.writeFrames(new Writer(1200), probe);
    const s = (probe[0] as Extract<SentFrame, { k: 'stream' }>).s;
    expect(s.base).toBeGreaterThan(total - 2 * TRIM_ACKED_OCTETS);
    expect(s.data.length).toBeLessThan(TRIM_ACKED_OCTETS + 16 * 1024 + 2);
    expect((probe[0] as Extract<SentFrame, { k: 'stream' }>).offset).toBe(total);
  });
});

describe('VoiceSession', () => {
  function voice(backlog = 0) {
    const sent: Buffer[] = [];
    const events: Array<[string, Record<string, unknown>]> = [];
    let now = 1000;
    let via = 'lb:127.0.0.1:4433';
    const datagrams: string[] = [];
    const t = new WtSessions({
      sendStream: (_id, d) => sent.push(d),
      unsent: () => backlog,
      sendDatagram: (d) => datagrams.push(hex(d)),
    });
    const session = t.open(0, '/voice-wt')!;
    const v = new VoiceSession(session, {
      now: () => now,
      path: () => ({ client: '127.0.0.1:5000', via }),
      event: (name, fields) => events.push([name, fields]),
    });
    session.handler = v;
    t.attach(4, 0);
    return {
      v,
      t,
      sent,
      datagrams,
      events,
      advance: (ms: number) => (now += ms),
      move: (to: string) => (via = to),
      frame: (seq: number, sentAt: number) =>
        encodeRecord({ kind: RecordKind.AUDIO, seq, sentAt, echoSentAt: 0, echoHeldMs: 0 }),
    };
  }

  it('reports the path first, sends one frame per 20 ms, reports a path change, counts and closes once', () => {
    const x = voice();
    x.t.onStreamData(4, x.frame(0, 999), false);
    x.advance(100);
    x.v.tick(); // frames 0..5 due at 0, 20, ..., 100 ms
    x.move('direct:127.0.0.2:4434');
    x.v.tick();
    const records = x.sent.map((b) => decodeRecord(b)!);
    expect(records.map((r) => r.kind)).toEqual([2, 1, 1, 1, 1, 1, 1, 2]);
    expect(records[0].path).toEqual({ via: 'lb:127.0.0.1:4433', client: '127.0.0.1:5000' });
    expect(records[7].path).toEqual({ via: 'direct:127.0.0.2:4434', client: '127.0.0.1:5000' });
    expect(records.filter((r) => r.kind === 1).map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    // Split records are reassembled; a gap counts as lost.
    const f2 = x.frame(2, 1040);
    x.t.onStreamData(4, f2.subarray(0, 50), false);
    x.t.onStreamData(4, f2.subarray(50), false);
    x.t.onStreamData(0, Buffer.alloc(0), true);
    x.t.onStreamData(0, Buffer.alloc(0), true);
    expect(x.events.map(([n]) => n)).toEqual(['voice-session-open', 'voice-path', 'voice-session-close']);
    expect(x.events[2][1]).toMatchObject({
      framesIn: 2,
      framesOut: 6,
      lost: 1,
      dropped: 0,
      reason: 'connect-stream-finished',
    });
  });

  it('echoes datagrams of up to one record on the session (quarter stream ID 0), counts the rest', () => {
    const x = voice();
    x.t.onDatagram(encodeDatagram(0, Buffer.from('ping')));
    x.t.onDatagram(encodeDatagram(0, Buffer.alloc(RECORD_SIZE + 1)));
    expect(x.datagrams).toEqual(['00' + hex(Buffer.from('ping'))]);
    expect([x.v.datagramsIn, x.v.datagramsOut]).toEqual([2, 1]);
  });

  it('drops frames instead of queueing them past MAX_BACKLOG_OCTETS', () => {
    const x = voice(MAX_BACKLOG_OCTETS + 1);
    x.t.onStreamData(4, x.frame(0, 999), false);
    x.advance(1000);
    x.v.tick();
    expect(x.sent).toHaveLength(1); // the path report only
    expect(x.v.dropped).toBe(51);
  });
});
