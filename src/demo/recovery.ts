// Loss recovery of the demo connection (RFC 9002 reduced to what a demo needs): the RTT
// estimate, loss detection by packet and time threshold, the probe timeout with backoff and
// the fixed congestion window. What a lost or acknowledged frame means is the connection's
// business (the `LossHandler` it passes in).
import { ALL_LEVELS, type Level, type SentFrame, type SentPacket, type Space } from './spaces.js';

/** Fixed congestion window in packets: enough for loopback, bounded burst under loss. */
const CWND_PACKETS = 48;
/** RFC 9002 §6.1.1 packet threshold. */
const PACKET_THRESHOLD = 3;
/** RFC 9002 §6.2.1 initial RTT is 333 ms; loopback peers answer within milliseconds. */
const INITIAL_RTT_MS = 50;
const MIN_PTO_MS = 20;
/** RFC 9002 §6.2.1: the PTO doubles per consecutive expiry; capped here at 2^6. */
const MAX_PTO_BACKOFF = 6;
/** RFC 9000 §18.2: max_ack_delay when the peer does not say. */
const DEFAULT_MAX_ACK_DELAY_MS = 25;

/** What the connection does with the frames of a packet once it is known lost or acknowledged. */
export interface LossHandler {
  onFrameLost(level: Level, frame: SentFrame): void;
  onFrameAcked(frame: SentFrame): void;
}

export class LossRecovery {
  private srtt = INITIAL_RTT_MS;
  private rttvar = INITIAL_RTT_MS / 2;
  private ptoCount = 0;
  private lastAckElicitingSent = 0;
  /** The peer's max_ack_delay in ms (RFC 9000 §18.2), once its transport parameters are known. */
  maxAckDelay = DEFAULT_MAX_ACK_DELAY_MS;

  constructor(
    private readonly spaces: readonly Space[],
    private readonly handler: LossHandler,
  ) {}

  /** Probe timeout without backoff (RFC 9002 §6.2.1), in ms. */
  pto(): number {
    return Math.max(this.srtt + Math.max(4 * this.rttvar, 1) + this.maxAckDelay, MIN_PTO_MS);
  }

  /** True while fewer ack-eliciting packets than the fixed window are in flight. */
  get windowOpen(): boolean {
    let n = 0;
    for (const s of this.spaces) for (const p of s.sent.values()) if (p.ackEliciting) n++;
    return n < CWND_PACKETS;
  }

  /**
   * Records a sent packet: kept for loss detection when it is ack-eliciting or carries frames
   * to resend; `ackEliciting` restarts the probe timer.
   */
  onPacketSent(level: Level, pkt: SentPacket, ackEliciting: boolean): void {
    if (!ackEliciting && pkt.frames.length === 0) {
      if (pkt.ackEliciting) this.lastAckElicitingSent = pkt.time;
      return;
    }
    this.spaces[level].sent.set(pkt.pn, pkt);
    if (ackEliciting) this.lastAckElicitingSent = pkt.time;
  }

  /**
   * An ACK frame (RFC 9000 §19.3) at `level`: `ranges` of acknowledged packet numbers,
   * inclusive, largest first. False (nothing changed) when it acknowledges a packet never sent.
   */
  onAck(level: Level, largest: number, ranges: ReadonlyArray<readonly [number, number]>, now: number): boolean {
    const space = this.spaces[level];
    if (largest >= space.nextPn) return false;
    let newlyAcked = false;
    for (const [pn, pkt] of space.sent) {
      let acked = false;
      for (const [lo, hi] of ranges) if (pn >= lo && pn <= hi) acked = true;
      if (!acked) continue;
      space.sent.delete(pn);
      newlyAcked = true;
      if (pn === largest && pkt.ackEliciting) this.updateRtt(now - pkt.time);
      for (const f of pkt.frames) this.handler.onFrameAcked(f);
    }
    if (largest > space.largestAcked) space.largestAcked = largest;
    if (newlyAcked) this.ptoCount = 0;
    this.detectLoss(level, now);
    return true;
  }

  /**
   * Timer (RFC 9002 §6): loss detection in every live space, then the probe timeout: when it
   * expires, every unacknowledged ack-eliciting packet counts as lost (its frames are resent).
   */
  onTimer(now: number): void {
    let outstanding = false;
    for (const l of ALL_LEVELS) {
      const space = this.spaces[l];
      if (space.discarded) continue;
      this.detectLoss(l, now);
      for (const pkt of space.sent.values()) if (pkt.ackEliciting) outstanding = true;
    }
    if (!outstanding || now - this.lastAckElicitingSent <= this.pto() * 2 ** this.ptoCount) return;
    this.ptoCount = Math.min(this.ptoCount + 1, MAX_PTO_BACKOFF);
    for (const l of ALL_LEVELS) {
      const space = this.spaces[l];
      if (space.discarded) continue;
      for (const [pn, pkt] of space.sent) {
        if (!pkt.ackEliciting) continue;
        space.sent.delete(pn);
        this.lost(l, pkt);
      }
    }
    this.lastAckElicitingSent = now;
  }

  /** RFC 9002 §5.3, without the min_rtt and ack-delay adjustments. */
  private updateRtt(sample: number): void {
    const s = Math.max(sample, 0.1);
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - s);
    this.srtt = 0.875 * this.srtt + 0.125 * s;
  }

  /** RFC 9002 §6.1: packet threshold 3, time threshold 9/8 RTT. */
  private detectLoss(level: Level, now: number): void {
    const space = this.spaces[level];
    const lossDelay = Math.max(1.125 * this.srtt, 2);
    for (const [pn, pkt] of space.sent) {
      if (pn >= space.largestAcked) continue;
      if (pn <= space.largestAcked - PACKET_THRESHOLD || pkt.time <= now - lossDelay) {
        space.sent.delete(pn);
        this.lost(level, pkt);
      }
    }
  }

  private lost(level: Level, pkt: SentPacket): void {
    for (const f of pkt.frames) this.handler.onFrameLost(level, f);
  }
}
