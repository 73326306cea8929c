// The demo server's WebTransport endpoint: per connection, the session table (webtransport.ts)
// fed by the streams the connection hands over, and the voice application on `/voice-wt`.
// Everything here runs inside socket handlers: nothing throws, every refusal is counted.
import type { Connection } from './connection.js';
import { encodeResponse, encodeResponseHeaders, parseRequest } from './h3.js';
import { VoiceSession } from './voice.js';
import { DRAFT_HEADER, DRAFT_VALUE, parseStreamSignal, WtSessions } from './webtransport.js';

/** The path of the voice session (the page at `/voice` connects here). */
export const VOICE_WT_PATH = '/voice-wt';

/** Counters of the WebTransport endpoint (a test or the CLI reads them). */
export interface WebTransportStats {
  sessionsOpened: number;
  sessionsRefused: number;
  streamsRefused: number;
  datagramsReceived: number;
}

interface PerConnection {
  table: WtSessions;
  voices: Map<number, VoiceSession>;
}

export class WebTransportHost {
  readonly stats: WebTransportStats = {
    sessionsOpened: 0,
    sessionsRefused: 0,
    streamsRefused: 0,
    datagramsReceived: 0,
  };
  private readonly conns = new Map<Connection, PerConnection>();

  constructor(private readonly server: { now(): number; event(name: string, fields: Record<string, unknown>): void }) {}

  private state(conn: Connection): PerConnection {
    let s = this.conns.get(conn);
    if (!s) {
      const table = new WtSessions({
        sendStream: (id, data, fin) => conn.sendStream(id, data, fin),
        unsent: (id) => conn.unsent(id),
        sendDatagram: (d) => conn.sendDatagramFrame(d),
      });
      s = { table, voices: new Map() };
      this.conns.set(conn, s);
    }
    return s;
  }

  /**
   * A client bidirectional stream that has not finished (`data` so far): true when it is a
   * WebTransport stream or an extended CONNECT, which this endpoint then owns.
   */
  claimStream(conn: Connection, id: number, data: Buffer): boolean {
    const sig = parseStreamSignal(data);
    if (sig === 'incomplete') return false;
    if (sig) {
      const st = this.state(conn);
      if (!st.table.attach(id, sig.sessionId)) this.stats.streamsRefused++;
      else if (data.length > sig.length) st.table.onStreamData(id, data.subarray(sig.length), false);
      return true; // a refused stream is still ours: its data is read and dropped
    }
    const req = parseRequest(data);
    if (typeof req === 'string' || req.method !== 'CONNECT' || req.protocol !== 'webtransport') return false;
    this.openSession(conn, id, req.path);
    return true;
  }

  private openSession(conn: Connection, id: number, path: string): void {
    const st = this.state(conn);
    const refuse = (status: 404 | 429): void => {
      this.stats.sessionsRefused++;
      conn.sendStream(id, encodeResponse({ status, body: Buffer.alloc(0) }), true);
    };
    if (path !== VOICE_WT_PATH) return refuse(404);
    const session = st.table.open(id, path);
    if (!session) return refuse(429);
    this.stats.sessionsOpened++;
    conn.sendStream(
      id,
      encodeResponseHeaders({ status: 200, body: Buffer.alloc(0), headers: [[DRAFT_HEADER, DRAFT_VALUE]] }),
      false,
    );
    const voice = new VoiceSession(session, {
      now: () => this.server.now(),
      path: () => {
        const p = conn.currentPath;
        return { client: `${p.address}:${p.port}`, via: p.via.name };
      },
      event: (name, fields) => this.server.event(name, { conn: conn.number, ...fields }),
    });
    session.handler = {
      onStreamData: (s, d, fin) => voice.onStreamData(s, d, fin),
      onDatagram: (d) => voice.onDatagram(d),
      onClose: (reason) => {
        st.voices.delete(id);
        voice.onClose(reason);
      },
    };
    st.voices.set(id, voice);
  }

  onStreamData(conn: Connection, id: number, data: Buffer, fin: boolean): void {
    this.conns.get(conn)?.table.onStreamData(id, data, fin);
  }

  onQuicDatagram(conn: Connection, data: Buffer): void {
    this.stats.datagramsReceived++;
    this.conns.get(conn)?.table.onDatagram(data);
  }

  /** The connection is gone: its sessions end (session-close events), its state is dropped. */
  onConnectionGone(conn: Connection): void {
    const st = this.conns.get(conn);
    if (!st) return;
    this.conns.delete(conn);
    st.table.closeAll('connection-closed');
  }

  /** Timer (the server's tick): voice frames that are due. */
  tick(): void {
    for (const [conn, st] of this.conns) {
      if (conn.closed) continue;
      for (const v of st.voices.values()) v.tick();
    }
  }
}
