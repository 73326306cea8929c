// The send side of the demo connection: packets built from what is pending in each space
// (ACK, PATH_CHALLENGE, CRYPTO, HANDSHAKE_DONE, NEW_CONNECTION_ID, control frames, STREAM),
// coalesced into datagrams within the path's anti-amplification budget and the congestion
// window (RFC 9000 §12.2, §13, §14), and protected (RFC 9001 §5).
import { AEAD_TAG_LEN } from './crypto.js';
import { F } from './frames.js';
import { KEY_PHASE_BIT, PN_LEN, sealPacket } from './packet.js';
import { vlen, Writer } from './buffers.js';
import type { ConnectionIds } from './cids.js';
import { MAX_DATAGRAM_SIZE, PATH_DATA_LENGTH, sendBudget, type NetPath, type Paths, type PathState } from './paths.js';
import type { LossRecovery } from './recovery.js';
import { ALL_LEVELS, Level, type SentFrame, type Space } from './spaces.js';
import type { Streams } from './streams.js';

/** QUIC v1 (RFC 9000 §15). */
const QUIC_V1 = 1;
/** RFC 9000 §17.2: long header form and fixed bits, packet types Initial (0) and Handshake (2). */
const LONG_HEADER = 0xc0;
const LONG_TYPE_INITIAL = 0x00;
const LONG_TYPE_HANDSHAKE = 0x02;
/** RFC 9000 §17.3.1: short header fixed bit. */
const SHORT_HEADER = 0x40;
/** RFC 9000 §16: the 2-octet varint form the long-header Length is written in. */
const VARINT_2 = 0x4000;
/** RFC 9001 §5.4.2: a header-protection sample needs 4 octets of payload after a 4-octet PN. */
const MIN_PAYLOAD = 4;
/** Smallest useful packet after header and tag: a PATH_CHALLENGE or an ACK. */
const MIN_FRAMES_ROOM = 12;
/** Writes per flush at most (each is one datagram). */
const MAX_DATAGRAMS_PER_FLUSH = 256;
/** DATAGRAM frames (RFC 9221) queued at most; an application sending faster than the path loses the oldest. */
export const MAX_QUEUED_DATAGRAMS = 16;

interface BuiltPacket {
  level: Level;
  payload: Buffer;
  frames: SentFrame[];
  ackEliciting: boolean;
  challenge: boolean;
}

/** Where the sender's datagrams go and what time it is. */
export interface SendHost {
  now(): number;
  sendDatagram(datagram: Buffer, path: NetPath): void;
}

export class Sender {
  /** Control frames (MAX_DATA, MAX_STREAMS, RETIRE_CONNECTION_ID) for the next 1-RTT packets. */
  private readonly pendingControl: Buffer[] = [];
  /** RFC 9001 §4.1.2: the server confirms the handshake with HANDSHAKE_DONE. */
  handshakeDonePending = false;

  constructor(
    private readonly host: SendHost,
    private readonly spaces: readonly Space[],
    private readonly paths: Paths,
    private readonly cids: ConnectionIds,
    private readonly streams: Streams,
    private readonly recovery: LossRecovery,
  ) {}

  queueControl(frame: Buffer): void {
    this.pendingControl.push(frame);
  }

  /** DATAGRAM frames waiting for a packet (RFC 9221), at most MAX_QUEUED_DATAGRAMS: the oldest is dropped. */
  private readonly pendingDatagrams: Buffer[] = [];
  datagramsDropped = 0;

  /** Queues a DATAGRAM frame (type, length, payload); it is sent once and never retransmitted (RFC 9221 §5.2). */
  queueDatagram(frame: Buffer): void {
    if (this.pendingDatagrams.length >= MAX_QUEUED_DATAGRAMS) {
      this.pendingDatagrams.shift();
      this.datagramsDropped++;
    }
    this.pendingDatagrams.push(frame);
  }

  /** Sends everything that is ready on the current path, as long as the window and the path's budget allow. */
  flush(): void {
    for (let guard = 0; guard < MAX_DATAGRAMS_PER_FLUSH; guard++) {
      const path = this.paths.current;
      let budget = Math.min(MAX_DATAGRAM_SIZE, sendBudget(path));
      if (budget < this.headerLength(Level.APPLICATION) + AEAD_TAG_LEN + MIN_FRAMES_ROOM) return;
      const startBudget = budget;
      const windowOpen = this.recovery.windowOpen;
      const parts: BuiltPacket[] = [];
      for (const l of ALL_LEVELS) {
        const space = this.spaces[l];
        if (!space.tx || space.discarded) continue;
        const overhead = this.headerLength(l) + AEAD_TAG_LEN;
        if (budget - overhead < 8) break;
        const built = this.buildPayload(l, budget - overhead, windowOpen);
        if (!built) continue;
        parts.push(built);
        budget -= overhead + built.payload.length;
      }
      if (parts.length === 0) return;
      // RFC 9000 §14.1: a datagram carrying an Initial is padded to 1200 octets (the padding
      // goes into the last packet so every coalesced packet stays intact).
      const hasInitial = parts.some((p) => p.level === Level.INITIAL);
      const sizes = parts.map((p) => this.headerLength(p.level) + p.payload.length + AEAD_TAG_LEN);
      let total = sizes.reduce((a, b) => a + b, 0);
      // RFC 9000 §8.2.1: so is one carrying PATH_CHALLENGE, as far as the path's limit allows.
      const padTo = hasInitial ? MAX_DATAGRAM_SIZE : parts.some((p) => p.challenge) ? startBudget : 0;
      if (total < padTo) {
        const last = parts[parts.length - 1];
        last.payload = Buffer.concat([last.payload, Buffer.alloc(padTo - total)]);
        total = padTo;
      }
      const packets: Buffer[] = [];
      const now = this.host.now();
      for (const part of parts) {
        if (part.payload.length < MIN_PAYLOAD)
          part.payload = Buffer.concat([part.payload, Buffer.alloc(MIN_PAYLOAD - part.payload.length)]);
        packets.push(this.protect(part.level, part.payload));
        const pn = this.spaces[part.level].nextPn - 1;
        this.recovery.onPacketSent(
          part.level,
          { pn, time: now, frames: part.frames, ackEliciting: part.ackEliciting },
          part.ackEliciting,
        );
      }
      const datagram = packets.length === 1 ? packets[0] : Buffer.concat(packets);
      path.bytesSent += datagram.length;
      this.host.sendDatagram(datagram, path);
    }
  }

  /**
   * A 1-RTT datagram of `frames` (PATH_CHALLENGE / PATH_RESPONSE) on `path`, which need not be the
   * current one; expanded to 1200 octets within the path's anti-amplification limit (RFC 9000
   * §8.2.1), not sent if the frames do not fit.
   */
  sendProbe(path: PathState, frames: Buffer): void {
    const app = this.spaces[Level.APPLICATION];
    if (!app.tx) return;
    const limit = Math.min(MAX_DATAGRAM_SIZE, sendBudget(path));
    const overhead = 1 + this.cids.dcid.length + PN_LEN + AEAD_TAG_LEN;
    if (limit < overhead + frames.length) return;
    const payload = Buffer.alloc(limit - overhead);
    frames.copy(payload);
    const pkt = this.protect(Level.APPLICATION, payload);
    this.recovery.onPacketSent(
      Level.APPLICATION,
      { pn: app.nextPn - 1, time: this.host.now(), frames: [], ackEliciting: true },
      false,
    );
    path.bytesSent += pkt.length;
    this.host.sendDatagram(pkt, path);
  }

  /** A packet at `level` carrying the CONNECTION_CLOSE `frame` (padded to 1200 octets in an Initial), on the current path. */
  sendClose(level: Level, frame: Buffer): void {
    if (!this.spaces[level].tx) return;
    let payload = frame;
    if (level === Level.INITIAL) {
      const total = this.headerLength(level) + payload.length + AEAD_TAG_LEN;
      if (total < MAX_DATAGRAM_SIZE) payload = Buffer.concat([payload, Buffer.alloc(MAX_DATAGRAM_SIZE - total)]);
    }
    this.host.sendDatagram(this.protect(level, payload), this.paths.current);
  }

  private headerLength(level: Level): number {
    if (level === Level.APPLICATION) return 1 + this.cids.dcid.length + PN_LEN;
    const scid = this.cids.issued[0].cid;
    // first octet, version, DCIL+DCID, SCIL+SCID, [token length 0], 2-octet Length, PN
    return 1 + 4 + 1 + this.cids.dcid.length + 1 + scid.length + (level === Level.INITIAL ? 1 : 0) + 2 + PN_LEN;
  }

  /** Builds the frames of one packet at `level` within `room` octets, or undefined if none. */
  private buildPayload(level: Level, room: number, windowOpen: boolean): BuiltPacket | undefined {
    const space = this.spaces[level];
    const w = new Writer(room);
    const frames: SentFrame[] = [];
    let ackEliciting = false;
    let challenge = false;
    if (space.ackPending) {
      writeAck(w, space, this.host.now());
      space.ackPending = false;
    }
    const p = this.paths.current;
    if (level === Level.APPLICATION && p.challengeDue && p.challenge && w.room >= 1 + PATH_DATA_LENGTH) {
      w.u8(F.PATH_CHALLENGE).bytes(p.challenge);
      p.challengeDue = false;
      p.challengeSentAt = this.host.now();
      challenge = true;
      ackEliciting = true;
    }
    if (windowOpen) {
      if (writeCrypto(w, space, level, frames)) ackEliciting = true;
      if (level === Level.APPLICATION && this.writeApplicationFrames(w, frames)) ackEliciting = true;
    }
    if (w.pos === 0) return undefined;
    return { level, payload: Buffer.from(w.view()), frames, ackEliciting, challenge };
  }

  /** HANDSHAKE_DONE, NEW_CONNECTION_ID, control frames, then STREAM data; true if any was written. */
  private writeApplicationFrames(w: Writer, frames: SentFrame[]): boolean {
    let wrote = false;
    if (this.handshakeDonePending && w.room > 1) {
      w.u8(F.HANDSHAKE_DONE);
      frames.push({ k: 'handshake_done' });
      this.handshakeDonePending = false;
      wrote = true;
    }
    const newCids = this.cids.pendingNewCids;
    while (newCids.length > 0 && w.room > 64) {
      const n = newCids.shift()!;
      if (n.entry.retired) continue;
      w.u8(F.NEW_CONNECTION_ID)
        .varint(n.entry.seq)
        .varint(n.retirePriorTo)
        .u8(n.entry.cid.length)
        .bytes(n.entry.cid)
        .bytes(n.entry.token);
      frames.push({ k: 'new_cid', entry: n.entry, retirePriorTo: n.retirePriorTo });
      wrote = true;
    }
    while (this.pendingControl.length > 0 && w.room > this.pendingControl[0].length) {
      const b = this.pendingControl.shift()!;
      w.bytes(b);
      frames.push({ k: 'control', bytes: b });
      wrote = true;
    }
    while (this.pendingDatagrams.length > 0 && w.room > this.pendingDatagrams[0].length) {
      w.bytes(this.pendingDatagrams.shift()!); // no SentFrame: a lost DATAGRAM is not resent
      wrote = true;
    }
    if (this.streams.writeFrames(w, frames)) wrote = true;
    return wrote;
  }

  /** Header + packet protection for one packet carrying `payload` (RFC 9000 §17, RFC 9001 §5). */
  private protect(level: Level, payload: Buffer): Buffer {
    const space = this.spaces[level];
    const keys = space.tx!;
    const pn = space.nextPn++;
    const h = Buffer.alloc(this.headerLength(level));
    const dcid = this.cids.dcid;
    let o = 0;
    if (level === Level.APPLICATION) {
      h[o++] = SHORT_HEADER | (space.keyPhase !== 0 ? KEY_PHASE_BIT : 0) | (PN_LEN - 1);
      o += dcid.copy(h, o);
    } else {
      const type = level === Level.INITIAL ? LONG_TYPE_INITIAL : LONG_TYPE_HANDSHAKE;
      h[o++] = LONG_HEADER | (type << 4) | (PN_LEN - 1);
      h.writeUInt32BE(QUIC_V1, o);
      o += 4;
      h[o++] = dcid.length;
      o += dcid.copy(h, o);
      const scid = this.cids.issued[0].cid;
      h[o++] = scid.length;
      o += scid.copy(h, o);
      if (level === Level.INITIAL) h[o++] = 0; // token length
      h.writeUInt16BE(VARINT_2 | (PN_LEN + payload.length + AEAD_TAG_LEN), o);
      o += 2;
    }
    return sealPacket(keys, h, o, pn, payload);
  }
}

/** ACK (RFC 9000 §19.3) of every range received in `space`, largest first. */
function writeAck(w: Writer, space: Space, now: number): void {
  const r = space.received.ranges;
  if (r.length === 0) return;
  const last = r[r.length - 1];
  const largest = last[1] - 1;
  // ACK Delay in microseconds scaled by the default ack_delay_exponent 3 (RFC 9000 §18.2).
  const delay = Math.max(0, Math.floor(((now - space.largestReceivedTime) * 1000) / 8));
  w.u8(F.ACK)
    .varint(largest)
    .varint(delay)
    .varint(r.length - 1)
    .varint(last[1] - 1 - last[0]);
  for (let i = r.length - 2; i >= 0; i--) {
    const gap = r[i + 1][0] - r[i][1] - 1; // unacknowledged packets between ranges, minus one
    w.varint(gap).varint(r[i][1] - 1 - r[i][0]);
  }
}

/** CRYPTO frames of `space` (RFC 9000 §19.6): lost ranges first, then new data; true if any was written. */
function writeCrypto(w: Writer, space: Space, level: Level, frames: SentFrame[]): boolean {
  let wrote = false;
  while (w.room > 16 && (space.cryptoRetransmit.length > 0 || space.cryptoSent < space.cryptoOut.length)) {
    let off: number;
    let len: number;
    const rt = space.cryptoRetransmit[0];
    if (rt) {
      off = rt[0];
      len = Math.min(rt[1], w.room - 1 - vlen(rt[0]) - 2);
      if (len < rt[1]) rt.splice(0, 2, rt[0] + len, rt[1] - len);
      else space.cryptoRetransmit.shift();
    } else {
      off = space.cryptoSent;
      len = Math.min(space.cryptoOut.length - off, w.room - 1 - vlen(off) - 2);
      space.cryptoSent += len;
    }
    if (len <= 0) break;
    w.u8(F.CRYPTO)
      .varint(off)
      .varint(len)
      .bytes(space.cryptoOut.subarray(off, off + len));
    frames.push({ k: 'crypto', level, offset: off, len });
    wrote = true;
  }
  return wrote;
}
