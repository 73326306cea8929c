/**
 * QUIC transport parameters (RFC 9000 §18): the body of the quic_transport_parameters TLS
 * extension, a sequence of `Parameter ID (i) | Parameter Length (i) | Parameter Value (..)`.
 *
 * Decoding is strict (every violation RFC 9000 §18/§18.2 calls TRANSPORT_PARAMETER_ERROR throws a
 * typed {@link QuicWireError}); unknown ids, including reserved greasing ids 31*N+27, are kept in
 * `unknown` so a re-encode preserves them.
 *
 * Integer values: `number`. Values above 2^53 - 1 (legal: up to 2^62 - 1) are decoded as
 * Number.MAX_SAFE_INTEGER (saturated), which for every §18.2 limit means "effectively
 * unlimited"; encode accepts `number` up to 2^53 - 1.
 */
import { QuicWireError } from './errors.js';
import { MAX_CID_LENGTH } from './header.js';
import {
  STATELESS_RESET_TOKEN_LENGTH,
  decodePreferredAddress,
  encodePreferredAddress,
  type PreferredAddress,
} from './preferred-address.js';
import {
  VARINT_MAX_BIGINT,
  VARINT_TOO_LARGE,
  VARINT_TRUNCATED,
  readVarint,
  readVarintBigInt,
  varintLength,
  varintSizeAt,
  writeVarint,
} from './varint.js';

/** RFC 9000 §18.2 / IANA "QUIC Transport Parameters" registry ids. */
export const TransportParameterId = {
  ORIGINAL_DESTINATION_CONNECTION_ID: 0x00,
  MAX_IDLE_TIMEOUT: 0x01,
  STATELESS_RESET_TOKEN: 0x02,
  MAX_UDP_PAYLOAD_SIZE: 0x03,
  INITIAL_MAX_DATA: 0x04,
  INITIAL_MAX_STREAM_DATA_BIDI_LOCAL: 0x05,
  INITIAL_MAX_STREAM_DATA_BIDI_REMOTE: 0x06,
  INITIAL_MAX_STREAM_DATA_UNI: 0x07,
  INITIAL_MAX_STREAMS_BIDI: 0x08,
  INITIAL_MAX_STREAMS_UNI: 0x09,
  ACK_DELAY_EXPONENT: 0x0a,
  MAX_ACK_DELAY: 0x0b,
  DISABLE_ACTIVE_MIGRATION: 0x0c,
  PREFERRED_ADDRESS: 0x0d,
  ACTIVE_CONNECTION_ID_LIMIT: 0x0e,
  INITIAL_SOURCE_CONNECTION_ID: 0x0f,
  RETRY_SOURCE_CONNECTION_ID: 0x10,
} as const;

/** Parameters a client MUST NOT send (RFC 9000 §18.2). */
export const SERVER_ONLY_PARAMETERS: readonly number[] = [
  TransportParameterId.ORIGINAL_DESTINATION_CONNECTION_ID,
  TransportParameterId.STATELESS_RESET_TOKEN,
  TransportParameterId.PREFERRED_ADDRESS,
  TransportParameterId.RETRY_SOURCE_CONNECTION_ID,
];

/** An unknown (or greasing) parameter, kept verbatim. */
export interface UnknownTransportParameter {
  /** A number up to 2^53 - 1; a bigint above (decoded ids are numbers whenever they fit). */
  id: number | bigint;
  value: Uint8Array;
}

/** Decoded transport parameters; absent ones are undefined (see {@link TRANSPORT_PARAMETER_DEFAULTS}). */
export interface TransportParameters {
  originalDestinationConnectionId?: Uint8Array;
  /** Milliseconds; 0 = no idle timeout. */
  maxIdleTimeout?: number;
  statelessResetToken?: Uint8Array;
  /** >= 1200. */
  maxUdpPayloadSize?: number;
  initialMaxData?: number;
  initialMaxStreamDataBidiLocal?: number;
  initialMaxStreamDataBidiRemote?: number;
  initialMaxStreamDataUni?: number;
  /** <= 2^60. */
  initialMaxStreamsBidi?: number;
  /** <= 2^60. */
  initialMaxStreamsUni?: number;
  /** <= 20. */
  ackDelayExponent?: number;
  /** Milliseconds, < 2^14. */
  maxAckDelay?: number;
  /** Zero-length flag: present = true. */
  disableActiveMigration?: boolean;
  preferredAddress?: PreferredAddress;
  /** >= 2. */
  activeConnectionIdLimit?: number;
  initialSourceConnectionId?: Uint8Array;
  retrySourceConnectionId?: Uint8Array;
  /** Unknown / greasing parameters, in wire order; encoded after the known ones. */
  unknown?: UnknownTransportParameter[];
}

/** RFC 9000 §18.2 defaults for absent parameters (others default to 0 / absent). */
export const TRANSPORT_PARAMETER_DEFAULTS: Readonly<Required<Pick<TransportParameters, DefaultedKey>>> = Object.freeze({
  maxIdleTimeout: 0,
  maxUdpPayloadSize: 65527,
  initialMaxData: 0,
  initialMaxStreamDataBidiLocal: 0,
  initialMaxStreamDataBidiRemote: 0,
  initialMaxStreamDataUni: 0,
  initialMaxStreamsBidi: 0,
  initialMaxStreamsUni: 0,
  ackDelayExponent: 3,
  maxAckDelay: 25,
  disableActiveMigration: false,
  activeConnectionIdLimit: 2,
});

type DefaultedKey = IntKey | 'disableActiveMigration';

/** Options of {@link decodeTransportParameters}. */
export interface DecodeTransportParametersOptions {
  /** Who sent them. 'client' rejects server-only parameters with ERR_TP_SERVER_ONLY. */
  sender?: 'client' | 'server';
}

type IntKey =
  | 'maxIdleTimeout'
  | 'maxUdpPayloadSize'
  | 'initialMaxData'
  | 'initialMaxStreamDataBidiLocal'
  | 'initialMaxStreamDataBidiRemote'
  | 'initialMaxStreamDataUni'
  | 'initialMaxStreamsBidi'
  | 'initialMaxStreamsUni'
  | 'ackDelayExponent'
  | 'maxAckDelay'
  | 'activeConnectionIdLimit';
type Cid = 'originalDestinationConnectionId' | 'initialSourceConnectionId' | 'retrySourceConnectionId';

interface Spec {
  id: number;
  name: string; // RFC name, used as QuicWireError.field
  kind: 'int' | 'cid' | 'token' | 'flag' | 'preferred';
  key: keyof TransportParameters;
  min?: number; // inclusive
  max?: bigint; // inclusive
}

const TP = TransportParameterId;
const SPECS: readonly Spec[] = [
  {
    id: TP.ORIGINAL_DESTINATION_CONNECTION_ID,
    name: 'original_destination_connection_id',
    kind: 'cid',
    key: 'originalDestinationConnectionId',
  },
  { id: TP.MAX_IDLE_TIMEOUT, name: 'max_idle_timeout', kind: 'int', key: 'maxIdleTimeout' },
  { id: TP.STATELESS_RESET_TOKEN, name: 'stateless_reset_token', kind: 'token', key: 'statelessResetToken' },
  { id: TP.MAX_UDP_PAYLOAD_SIZE, name: 'max_udp_payload_size', kind: 'int', key: 'maxUdpPayloadSize', min: 1200 },
  { id: TP.INITIAL_MAX_DATA, name: 'initial_max_data', kind: 'int', key: 'initialMaxData' },
  {
    id: TP.INITIAL_MAX_STREAM_DATA_BIDI_LOCAL,
    name: 'initial_max_stream_data_bidi_local',
    kind: 'int',
    key: 'initialMaxStreamDataBidiLocal',
  },
  {
    id: TP.INITIAL_MAX_STREAM_DATA_BIDI_REMOTE,
    name: 'initial_max_stream_data_bidi_remote',
    kind: 'int',
    key: 'initialMaxStreamDataBidiRemote',
  },
  {
    id: TP.INITIAL_MAX_STREAM_DATA_UNI,
    name: 'initial_max_stream_data_uni',
    kind: 'int',
    key: 'initialMaxStreamDataUni',
  },
  // RFC 9000 §4.6: max_streams above 2^60 is a TRANSPORT_PARAMETER_ERROR.
  {
    id: TP.INITIAL_MAX_STREAMS_BIDI,
    name: 'initial_max_streams_bidi',
    kind: 'int',
    key: 'initialMaxStreamsBidi',
    max: 1n << 60n,
  },
  {
    id: TP.INITIAL_MAX_STREAMS_UNI,
    name: 'initial_max_streams_uni',
    kind: 'int',
    key: 'initialMaxStreamsUni',
    max: 1n << 60n,
  },
  // RFC 9000 §18.2: ack_delay_exponent above 20 and max_ack_delay of 2^14 or more are invalid.
  { id: TP.ACK_DELAY_EXPONENT, name: 'ack_delay_exponent', kind: 'int', key: 'ackDelayExponent', max: 20n },
  { id: TP.MAX_ACK_DELAY, name: 'max_ack_delay', kind: 'int', key: 'maxAckDelay', max: (1n << 14n) - 1n },
  { id: TP.DISABLE_ACTIVE_MIGRATION, name: 'disable_active_migration', kind: 'flag', key: 'disableActiveMigration' },
  { id: TP.PREFERRED_ADDRESS, name: 'preferred_address', kind: 'preferred', key: 'preferredAddress' },
  // RFC 9000 §18.2: active_connection_id_limit below 2 is invalid.
  {
    id: TP.ACTIVE_CONNECTION_ID_LIMIT,
    name: 'active_connection_id_limit',
    kind: 'int',
    key: 'activeConnectionIdLimit',
    min: 2,
  },
  {
    id: TP.INITIAL_SOURCE_CONNECTION_ID,
    name: 'initial_source_connection_id',
    kind: 'cid',
    key: 'initialSourceConnectionId',
  },
  {
    id: TP.RETRY_SOURCE_CONNECTION_ID,
    name: 'retry_source_connection_id',
    kind: 'cid',
    key: 'retrySourceConnectionId',
  },
];

function checkIntRange(spec: Spec, v: number | bigint): void {
  const big = typeof v === 'bigint' ? v : BigInt(v);
  if (spec.min !== undefined && big < BigInt(spec.min)) {
    throw new QuicWireError('ERR_TP_VALUE', `${spec.name} = ${v} is below ${spec.min}`, spec.name);
  }
  if (spec.max !== undefined && big > spec.max) {
    throw new QuicWireError('ERR_TP_VALUE', `${spec.name} = ${v} is above ${spec.max}`, spec.name);
  }
}

function copy(buf: Uint8Array, from: number, to: number): Uint8Array {
  return Uint8Array.prototype.slice.call(buf, from, to);
}

/**
 * Decodes the body of a quic_transport_parameters extension. Throws QuicWireError (with
 * `field` = the RFC parameter name where one applies):
 * ERR_TP_TRUNCATED, ERR_TP_DUPLICATE (any id twice, known or not), ERR_TP_LENGTH (integer
 * value not exactly one varint, token not 16, flag not empty), ERR_TP_VALUE (§18.2 ranges),
 * ERR_TP_CID_LENGTH (CID > 20), ERR_TP_SERVER_ONLY (with `sender: 'client'`), and the
 * ERR_PREFERRED_ADDRESS_* codes of {@link decodePreferredAddress}.
 */
export function decodeTransportParameters(
  buf: Uint8Array,
  options: DecodeTransportParametersOptions = {},
): TransportParameters {
  const result: TransportParameters = {};
  const seen = new Set<number>();
  const seenBig = new Set<bigint>();
  let off = 0;
  while (off < buf.length) {
    const id = readVarint(buf, off);
    if (id === VARINT_TRUNCATED)
      throw new QuicWireError('ERR_TP_TRUNCATED', `parameter id truncated at octet ${off}`, 'id');
    // Ids above 2^53 - 1 can only be unknown (greasing) ones: keep them as bigint.
    const bigId = id === VARINT_TOO_LARGE ? readVarintBigInt(buf, off) : -1n;
    off += varintSizeAt(buf, off);
    const len = readVarint(buf, off);
    if (len === VARINT_TRUNCATED || len === VARINT_TOO_LARGE) {
      throw new QuicWireError('ERR_TP_TRUNCATED', `parameter length truncated at octet ${off}`, 'length');
    }
    off += varintSizeAt(buf, off);
    if (off + len > buf.length) {
      throw new QuicWireError('ERR_TP_TRUNCATED', `parameter value of ${len} octets runs past the end`, 'value');
    }
    const start = off;
    const end = off + len;
    off = end;
    if (bigId >= 0n) {
      if (seenBig.has(bigId)) {
        throw new QuicWireError(
          'ERR_TP_DUPLICATE',
          `transport parameter 0x${bigId.toString(16)} appears twice`,
          `0x${bigId.toString(16)}`,
        );
      }
      seenBig.add(bigId);
      (result.unknown ??= []).push({ id: bigId, value: copy(buf, start, end) });
      continue;
    }
    const spec = id < SPECS.length ? SPECS[id] : undefined;
    const name = spec?.name ?? `0x${id.toString(16)}`;
    if (seen.has(id)) throw new QuicWireError('ERR_TP_DUPLICATE', `transport parameter ${name} appears twice`, name);
    seen.add(id);
    if (spec === undefined) {
      (result.unknown ??= []).push({ id: id, value: copy(buf, start, end) });
      continue;
    }
    if (options.sender === 'client' && SERVER_ONLY_PARAMETERS.includes(spec.id)) {
      throw new QuicWireError('ERR_TP_SERVER_ONLY', `a client must not send ${spec.name}`, spec.name);
    }
    switch (spec.kind) {
      case 'int': {
        if (len === 0 || varintSizeAt(buf, start) !== len) {
          throw new QuicWireError(
            'ERR_TP_LENGTH',
            `${spec.name} must be exactly one varint (length ${len})`,
            spec.name,
          );
        }
        let v = readVarint(buf, start);
        if (v === VARINT_TOO_LARGE) {
          checkIntRange(spec, readVarintBigInt(buf, start));
          v = Number.MAX_SAFE_INTEGER;
        } else {
          checkIntRange(spec, v);
        }
        result[spec.key as IntKey] = v;
        break;
      }
      case 'cid':
        if (len > MAX_CID_LENGTH) {
          throw new QuicWireError('ERR_TP_CID_LENGTH', `${spec.name} has ${len} octets (max 20)`, spec.name);
        }
        result[spec.key as Cid] = copy(buf, start, end);
        break;
      case 'token':
        if (len !== STATELESS_RESET_TOKEN_LENGTH) {
          throw new QuicWireError('ERR_TP_LENGTH', `${spec.name} must be 16 octets (got ${len})`, spec.name);
        }
        result.statelessResetToken = copy(buf, start, end);
        break;
      case 'flag':
        if (len !== 0) throw new QuicWireError('ERR_TP_LENGTH', `${spec.name} must be empty (got ${len})`, spec.name);
        result.disableActiveMigration = true;
        break;
      case 'preferred':
        result.preferredAddress = decodePreferredAddress(buf.subarray(start, end));
        break;
    }
  }
  return result;
}

/**
 * Encodes transport parameters in id order (then `unknown` ones in their order). Absent
 * (undefined) parameters are omitted; `disableActiveMigration: false` is omitted. Validates like
 * the decoder and throws the same codes (ERR_TP_VALUE for out-of-range or non-integer numbers,
 * ERR_TP_CID_LENGTH, ERR_TP_LENGTH for a token not 16 octets, ERR_TP_DUPLICATE when an unknown
 * id repeats or collides with a known one, ERR_PREFERRED_ADDRESS_*).
 */
export function encodeTransportParameters(params: TransportParameters): Buffer {
  const parts: Uint8Array[] = [];
  const ids: (number | bigint)[] = [];
  for (const spec of SPECS) {
    const raw = params[spec.key];
    if (raw === undefined) continue;
    let value: Uint8Array;
    switch (spec.kind) {
      case 'int': {
        const v = raw as number;
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
          throw new QuicWireError('ERR_TP_VALUE', `${spec.name} must be an integer in 0..2^53-1`, spec.name);
        }
        checkIntRange(spec, v);
        value = Buffer.alloc(varintLength(v));
        writeVarint(value, 0, v);
        break;
      }
      case 'cid': {
        const cid = raw as Uint8Array;
        if (!(cid instanceof Uint8Array) || cid.length > MAX_CID_LENGTH) {
          throw new QuicWireError('ERR_TP_CID_LENGTH', `${spec.name} must be a Uint8Array of 0..20 octets`, spec.name);
        }
        value = cid;
        break;
      }
      case 'token': {
        const token = raw as Uint8Array;
        if (!(token instanceof Uint8Array) || token.length !== STATELESS_RESET_TOKEN_LENGTH) {
          throw new QuicWireError('ERR_TP_LENGTH', `${spec.name} must be 16 octets`, spec.name);
        }
        value = token;
        break;
      }
      case 'flag':
        if (raw !== true) continue;
        value = new Uint8Array(0);
        break;
      case 'preferred':
        value = encodePreferredAddress(raw as PreferredAddress);
        break;
    }
    ids.push(spec.id);
    parts.push(value);
  }
  const seen = new Set<string>(ids.map(String));
  for (const u of params.unknown ?? []) {
    const okId =
      typeof u.id === 'bigint' ? u.id >= 0n && u.id <= VARINT_MAX_BIGINT : Number.isSafeInteger(u.id) && u.id >= 0;
    if (!okId || !(u.value instanceof Uint8Array)) {
      throw new QuicWireError(
        'ERR_TP_VALUE',
        'unknown parameter needs an integer id in 0..2^62-1 and a Uint8Array value',
        'unknown',
      );
    }
    // Normalise: a bigint id that fits a safe number collides with the same number.
    const key =
      typeof u.id === 'bigint' && u.id <= BigInt(Number.MAX_SAFE_INTEGER) ? String(Number(u.id)) : String(u.id);
    if (seen.has(key)) {
      throw new QuicWireError(
        'ERR_TP_DUPLICATE',
        `transport parameter 0x${u.id.toString(16)} appears twice`,
        'unknown',
      );
    }
    seen.add(key);
    ids.push(u.id);
    parts.push(u.value);
  }
  let size = 0;
  for (let i = 0; i < parts.length; i++) {
    size += varintLength(ids[i]) + varintLength(parts[i].length) + parts[i].length;
  }
  const out = Buffer.alloc(size);
  let off = 0;
  for (let i = 0; i < parts.length; i++) {
    off = writeVarint(out, off, ids[i]);
    off = writeVarint(out, off, parts[i].length);
    out.set(parts[i], off);
    off += parts[i].length;
  }
  return out;
}

/** `params` with RFC 9000 §18.2 defaults filled in for absent integer/flag parameters. */
export function withTransportParameterDefaults(
  params: TransportParameters,
): TransportParameters & Required<Pick<TransportParameters, DefaultedKey>> {
  return { ...TRANSPORT_PARAMETER_DEFAULTS, ...stripUndefined(params) } as TransportParameters &
    Required<Pick<TransportParameters, DefaultedKey>>;
}

function stripUndefined(p: TransportParameters): TransportParameters {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) if (v !== undefined) out[k] = v;
  return out as TransportParameters;
}
