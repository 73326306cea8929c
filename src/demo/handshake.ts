// The server side of the TLS handshake inside QUIC (RFC 9001 §4): handshake messages out of
// the CRYPTO streams, fed to the TLS 1.3 state machine (tls.ts), the keys it yields installed
// in the packet-number spaces, and the transport parameters exchanged (RFC 9000 §7.4).
import {
  decodeTransportParameters,
  encodeTransportParameters,
  varintLength,
  writeVarint,
  type TransportParameters,
} from '../wire/index.js';
import { MAX_ISSUED_CIDS, type IssuedCid } from './cids.js';
import { PacketKeys } from './crypto.js';
import { cryptoError, TransportError } from './frames.js';
import type { ServerIdentity } from './cert.js';
import { MAX_DATAGRAM_SIZE } from './paths.js';
import { Level, type Space } from './spaces.js';
import { INITIAL_MAX_STREAM_DATA, INITIAL_MAX_STREAMS_UNI, RECV_WINDOW, STREAMS_WINDOW } from './streams.js';
import { splitHandshakeMessages, TlsAlert, TlsServerHandshake, type ClientHelloInfo } from './tls.js';
import { MAX_DATAGRAM_FRAME_SIZE, TP_MAX_DATAGRAM_FRAME_SIZE } from './webtransport.js';

/** The server's own addresses for preferred_address (RFC 9000 §9.6), one per family. */
export interface PreferredAddressOption {
  ipv4?: { address: string; port: number };
  ipv6?: { address: string; port: number };
}

/** The CIDs of a connection's handshake (RFC 9000 §7.3). */
export interface HandshakeCids {
  /**
   * The DCID of the client's Initial: the Initial keys derive from it (RFC 9001 §5.2) and it
   * finds the connection until the client switches to the server's CID.
   */
  initialDcid: Buffer;
  /** original_destination_connection_id: = initialDcid, or the token's ODCID after an LB Retry. */
  originalDcid: Buffer;
  /** retry_source_connection_id: the Retry's SCID (= initialDcid) after an LB Retry, else absent. */
  retrySourceCid?: Buffer;
  /** The key sequence that opened the LB's token (logs: which key of a rotation is in use). */
  retryKeySequence?: number;
}

function varintBytes(v: number): Buffer {
  const b = Buffer.alloc(varintLength(v));
  writeVarint(b, 0, v);
  return b;
}

/**
 * The transport parameters the server sends (RFC 9000 §18.2): the limits of streams.ts, cids.ts
 * and paths.ts, the CIDs of the handshake (§7.3) and, when given, preferred_address with its CID.
 */
export function serverTransportParameters(o: {
  handshakeCids: HandshakeCids;
  handshakeCid: IssuedCid;
  idleTimeoutMs: number;
  disableActiveMigration: boolean;
  preferred?: { address: PreferredAddressOption; cid: IssuedCid };
}): TransportParameters {
  const params: TransportParameters = {
    originalDestinationConnectionId: o.handshakeCids.originalDcid,
    retrySourceConnectionId: o.handshakeCids.retrySourceCid,
    initialSourceConnectionId: o.handshakeCid.cid,
    statelessResetToken: o.handshakeCid.token,
    maxIdleTimeout: o.idleTimeoutMs,
    maxUdpPayloadSize: MAX_DATAGRAM_SIZE,
    initialMaxData: RECV_WINDOW,
    initialMaxStreamDataBidiLocal: INITIAL_MAX_STREAM_DATA,
    initialMaxStreamDataBidiRemote: INITIAL_MAX_STREAM_DATA,
    initialMaxStreamDataUni: INITIAL_MAX_STREAM_DATA,
    initialMaxStreamsBidi: STREAMS_WINDOW,
    initialMaxStreamsUni: INITIAL_MAX_STREAMS_UNI,
    activeConnectionIdLimit: MAX_ISSUED_CIDS,
    disableActiveMigration: o.disableActiveMigration || undefined,
    // RFC 9221 §3: DATAGRAM frames accepted (RFC 9297 §2.1.1 requires it with SETTINGS_H3_DATAGRAM).
    unknown: [{ id: TP_MAX_DATAGRAM_FRAME_SIZE, value: varintBytes(MAX_DATAGRAM_FRAME_SIZE) }],
  };
  const p = o.preferred;
  if (p)
    params.preferredAddress = {
      ipv4: p.address.ipv4,
      ipv6: p.address.ipv6,
      connectionId: p.cid.cid,
      statelessResetToken: p.cid.token,
    };
  return params;
}

/** What the handshake needs from its connection. */
export interface HandshakeOwner {
  /** The client's transport parameters, decoded: apply them and return the server's (RFC 9000 §18.2). */
  transportParameters(client: TransportParameters): TransportParameters;
  /** The client's Finished verified (RFC 9001 §4.1.2: the handshake is complete). */
  onHandshakeComplete(): void;
  /** Closes the connection with a transport error, at `level` if given. */
  close(code: number, reason: string, level?: Level): void;
}

export class ServerHandshake {
  private readonly tls: TlsServerHandshake;
  clientHello?: ClientHelloInfo;
  /** Why the client's transport parameters were refused (TRANSPORT_PARAMETER_ERROR, not a TLS alert). */
  private transportParameterError?: string;

  constructor(
    identity: ServerIdentity,
    alpn: readonly string[],
    private readonly spaces: readonly Space[],
    private readonly owner: HandshakeOwner,
  ) {
    this.tls = new TlsServerHandshake(identity, alpn);
  }

  /**
   * In-order CRYPTO data at `level`: each complete handshake message goes to TLS (ClientHello in
   * Initial, Finished in Handshake). False when it closed the connection: a TLS alert becomes
   * CRYPTO_ERROR (RFC 9001 §4.8), bad transport parameters TRANSPORT_PARAMETER_ERROR, a message
   * at 1-RTT PROTOCOL_VIOLATION.
   */
  onCryptoData(level: Level, data: Buffer): boolean {
    const space = this.spaces[level];
    // Keep unconsumed bytes (a message split across CRYPTO frames) in front of new data.
    const buf = space.cryptoPartial ? Buffer.concat([space.cryptoPartial, data]) : data;
    const { messages, consumed } = splitHandshakeMessages(buf);
    space.cryptoPartial = consumed < buf.length ? Buffer.from(buf.subarray(consumed)) : undefined;
    for (const msg of messages) {
      if (level === Level.INITIAL) {
        const r = this.tls.onClientHello(msg, (ch) => this.serverTransportParameters(ch));
        if (!r.ok) {
          if (this.transportParameterError)
            this.owner.close(TransportError.TRANSPORT_PARAMETER_ERROR, this.transportParameterError, Level.INITIAL);
          else this.owner.close(cryptoError(r.alert), r.reason, Level.INITIAL);
          return false;
        }
        this.clientHello = r.value.clientHello;
        space.cryptoOut = r.value.initial;
        const hs = this.spaces[Level.HANDSHAKE];
        hs.rx = new PacketKeys(r.value.handshakeSecrets.client);
        hs.tx = new PacketKeys(r.value.handshakeSecrets.server);
        hs.cryptoOut = r.value.handshake;
        const app = this.spaces[Level.APPLICATION];
        app.rx = new PacketKeys(r.value.applicationSecrets.client);
        app.tx = new PacketKeys(r.value.applicationSecrets.server);
      } else if (level === Level.HANDSHAKE) {
        const r = this.tls.onClientFinished(msg);
        if (!r.ok) {
          this.owner.close(cryptoError(r.alert), r.reason, Level.HANDSHAKE);
          return false;
        }
        this.owner.onHandshakeComplete();
      } else {
        // Post-handshake messages (NewSessionTicket, KeyUpdate) are not expected from a client.
        this.owner.close(TransportError.PROTOCOL_VIOLATION, 'unexpected post-handshake message');
        return false;
      }
    }
    return true;
  }

  /** The server's quic_transport_parameters for ClientHello `ch`, or a TLS alert when the client's do not decode. */
  private serverTransportParameters(ch: ClientHelloInfo): Buffer | number {
    let client: TransportParameters;
    try {
      client = decodeTransportParameters(ch.transportParameters, { sender: 'client' });
    } catch (err) {
      this.transportParameterError = err instanceof Error ? err.message : String(err);
      return TlsAlert.ILLEGAL_PARAMETER;
    }
    return encodeTransportParameters(this.owner.transportParameters(client));
  }
}
