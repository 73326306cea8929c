// Session accounting (pure): from the per-frame bitmaps of one run, which sessions lost frames,
// which broke, and in which phase.
//
// Frame f of session i is *delivered* when it reached the session's owner (bit f of row i in
// `up`, set by the sinks, which count a frame at another backend as undelivered: that backend
// does not hold the connection) and *answered* when the owner's echo came back to the client (bit f
// of row i in `down`). A frame is lost up when not delivered, lost down when delivered but not
// answered.
//
// Phases of a session, by frame number: `steady` until its NAT rebinding (or the restart mark),
// `rebind` from the rebinding to the restart mark, `restart` from the mark to the end. A session
// is *broken* when a run of lost frames (either way) starts somewhere and lasts to its last frame
// for at least `breakFrames` frames (default one second of frames): it never recovered. It is
// broken at the phase in which that run starts.

export const PHASES = ['steady', 'rebind', 'restart'] as const;
export type Phase = (typeof PHASES)[number];

export interface SessionRun {
  /** Octets per session row in `up` and `down`. */
  rowBytes: number;
  up: Uint8Array;
  down: Uint8Array;
  /** Frames each session sent (its next frame number). */
  sent: readonly number[];
  /** Frame number of each session's NAT rebinding, -1 for none. */
  rebindSeq: readonly number[];
  /** Each session's next frame number when the tier was restarted, -1 for no restart. */
  markSeq: readonly number[];
  /** Owner (backend index) of each session after the handshake, -1 when the handshake failed. */
  owner: ArrayLike<number>;
}

export interface SessionTally {
  sessions: number;
  /** Sessions whose handshake gave them an owner. */
  established: number;
  rebound: number;
  framesSent: number;
  lostUp: number;
  lostDown: number;
  /** Frames lost (either way) per phase. */
  lostFrames: Record<Phase, number>;
  /** Sessions that lost at least one frame (either way) in each phase, and in any. */
  lostSessions: Record<Phase | 'any', number>;
  /** Sessions broken (see above), by the phase where the final run of losses began. */
  broken: Record<Phase, number>;
}

function bit(map: Uint8Array, row: number, rowBytes: number, f: number): boolean {
  return (map[row * rowBytes + (f >>> 3)] & (1 << (f & 7))) !== 0;
}

/** The phase of frame `f` of a session rebound at `rebind` (-1: never) and marked at `mark` (-1: never). */
export function phaseOf(f: number, rebind: number, mark: number): Phase {
  if (mark >= 0 && f >= mark) return 'restart';
  if (rebind >= 0 && f >= rebind) return 'rebind';
  return 'steady';
}

export function tallySessions(r: SessionRun, breakFrames = 50): SessionTally {
  const zero = (): Record<Phase, number> => ({ steady: 0, rebind: 0, restart: 0 });
  const t: SessionTally = {
    sessions: r.sent.length,
    established: 0,
    rebound: 0,
    framesSent: 0,
    lostUp: 0,
    lostDown: 0,
    lostFrames: zero(),
    lostSessions: { ...zero(), any: 0 },
    broken: zero(),
  };
  const cap = r.rowBytes * 8;
  for (let i = 0; i < r.sent.length; i++) {
    if (r.owner[i] < 0) continue;
    t.established++;
    const rebind = r.rebindSeq[i] ?? -1;
    const mark = r.markSeq[i] ?? -1;
    if (rebind >= 0) t.rebound++;
    const n = Math.min(r.sent[i], cap);
    t.framesSent += n;
    const lostIn = zero();
    let runStart = -1; // first frame of the current run of lost frames
    for (let f = 0; f < n; f++) {
      const up = bit(r.up, i, r.rowBytes, f);
      const down = up && bit(r.down, i, r.rowBytes, f);
      if (down) {
        runStart = -1;
        continue;
      }
      if (up) t.lostDown++;
      else t.lostUp++;
      lostIn[phaseOf(f, rebind, mark)]++;
      if (runStart < 0) runStart = f;
    }
    for (const p of PHASES) {
      t.lostFrames[p] += lostIn[p];
      if (lostIn[p] > 0) t.lostSessions[p]++;
    }
    if (PHASES.some((p) => lostIn[p] > 0)) t.lostSessions.any++;
    if (runStart >= 0 && n - runStart >= breakFrames) t.broken[phaseOf(runStart, rebind, mark)]++;
  }
  return t;
}
