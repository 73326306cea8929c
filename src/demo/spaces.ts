// Packet-number spaces (RFC 9000 §12.3) of the demo connection and what the server sent in
// them: the state the receive path, the send path and loss recovery share.
import type { PacketKeys } from './crypto.js';
import { KEY_PHASE_BIT, openPacket, type OpenedPacket } from './packet.js';
import { RangeSet, Reassembler } from './buffers.js';
import type { IssuedCid } from './cids.js';
import type { SendStream } from './streams.js';

/** Encryption levels / packet-number spaces (RFC 9000 §12.3). */
export const Level = { INITIAL: 0, HANDSHAKE: 1, APPLICATION: 2 } as const;
export type Level = (typeof Level)[keyof typeof Level];
export const LEVEL_NAMES = ['initial', 'handshake', '1rtt'];
export const ALL_LEVELS: readonly Level[] = [Level.INITIAL, Level.HANDSHAKE, Level.APPLICATION];

/** CRYPTO data the server buffers per space beyond the read offset (RFC 9000 §7.5). */
const CRYPTO_BUFFER = 1 << 16;

/** A frame of a sent packet, kept to be resent if the packet is lost (RFC 9000 §13.3). */
export type SentFrame =
  | { k: 'crypto'; level: Level; offset: number; len: number }
  | { k: 'stream'; s: SendStream; offset: number; len: number; fin: boolean }
  | { k: 'handshake_done' }
  | { k: 'new_cid'; entry: IssuedCid; retirePriorTo: number }
  | { k: 'control'; bytes: Buffer };

export interface SentPacket {
  pn: number;
  time: number;
  frames: SentFrame[];
  ackEliciting: boolean;
}

/** One packet-number space: keys, packets sent and received, CRYPTO data both ways. */
export class Space {
  rx?: PacketKeys;
  tx?: PacketKeys;
  discarded = false;
  nextPn = 0;
  sent = new Map<number, SentPacket>();
  largestAcked = -1;
  received = new RangeSet(32);
  largestReceivedTime = 0;
  ackPending = false;
  crypto = new Reassembler(CRYPTO_BUFFER);
  cryptoOut: Buffer = Buffer.alloc(0);
  cryptoSent = 0;
  cryptoRetransmit: Array<[number, number]> = [];
  /** Handshake-message bytes received but not yet a complete message. */
  cryptoPartial?: Buffer;
  /** 1-RTT key update (RFC 9001 §6): current phase, previous and next receive keys. */
  keyPhase = 0;
  keyPhaseStartPn = 0;
  prevRx?: PacketKeys;
  nextRx?: PacketKeys;

  /**
   * Removes protection from a packet of this space (see openPacket); undefined when it does not
   * decrypt. `keyPhased` (1-RTT): the Key Phase bit picks the keys, and a packet that opens
   * with the next keys is the peer's key update (RFC 9001 §6.2), followed in both directions
   * (`keyPhase` flips).
   */
  open(pkt: Buffer, pnOffset: number, keyPhased: boolean): OpenedPacket | undefined {
    const rx = this.rx!;
    let candidate: PacketKeys | undefined;
    const opened = openPacket(
      rx,
      pkt,
      pnOffset,
      this.received.largest,
      keyPhased
        ? (b, n) => {
            if (((b & KEY_PHASE_BIT) !== 0 ? 1 : 0) === this.keyPhase) return rx;
            // RFC 9001 §6.3: the other phase is the previous keys for older packets, else the next ones.
            if (this.prevRx && n < this.keyPhaseStartPn) return this.prevRx;
            this.nextRx ??= rx.next();
            candidate = this.nextRx;
            return candidate;
          }
        : undefined,
    );
    if (opened && candidate) {
      this.prevRx = rx;
      this.rx = candidate;
      this.tx = this.tx!.next();
      this.nextRx = undefined;
      this.keyPhase ^= 1;
      this.keyPhaseStartPn = opened.pn;
    }
    return opened;
  }

  /** Stops using the space (RFC 9001 §4.9): its packets in flight are forgotten, nothing in it is resent. */
  discard(): void {
    this.discarded = true;
    this.sent.clear();
    this.cryptoRetransmit.length = 0;
    this.ackPending = false;
  }
}
