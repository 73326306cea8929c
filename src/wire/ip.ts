/**
 * IP literal <-> octets, without allocation on the parse side (the LB turns `rinfo.address`
 * into header octets per packet). Formatting follows RFC 5952 (lowercase, longest zero run
 * compressed, IPv4-mapped as ::ffff:a.b.c.d) so strings match what node:dgram reports.
 */

const CH_0 = 48;
const CH_9 = 57;
const CH_A = 65;
const CH_F = 70;
const CH_a = 97;
const CH_f = 102;
const CH_DOT = 46;
const CH_COLON = 58;

/**
 * Writes the 4 octets of dotted-quad `s` at `out[offset]`. Returns true on success, false (out
 * possibly partly written) if `s` is not a strict IPv4 literal (four decimal parts 0..255, no
 * leading zeros). `start` skips a prefix of `s`. Never allocates.
 */
export function parseIPv4Into(s: string, out: Uint8Array, offset: number, start = 0): boolean {
  const n = s.length;
  if (n - start < 7 || n - start > 15 || offset < 0 || offset + 4 > out.length) return false;
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = start; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : CH_DOT;
    if (c >= CH_0 && c <= CH_9) {
      if (digits > 0 && value === 0) return false; // leading zero
      value = value * 10 + (c - CH_0);
      digits++;
      if (value > 255) return false;
    } else if (c === CH_DOT) {
      if (digits === 0 || part > 3) return false;
      out[offset + part] = value;
      part++;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

function hexValue(c: number): number {
  if (c >= CH_0 && c <= CH_9) return c - CH_0;
  if (c >= CH_a && c <= CH_f) return c - CH_a + 10;
  if (c >= CH_A && c <= CH_F) return c - CH_A + 10;
  return -1;
}

/**
 * Writes the 16 octets of IPv6 literal `s` (with `::` compression and an optional trailing
 * dotted quad; a `%zone` suffix is ignored) at `out[offset]`. Returns false if `s` is not a
 * valid IPv6 literal. Never allocates.
 */
export function parseIPv6Into(s: string, out: Uint8Array, offset: number): boolean {
  let n = s.length;
  const pct = s.indexOf('%');
  if (pct >= 0) n = pct;
  if (n < 2 || n > 45 || offset < 0 || offset + 16 > out.length) return false;
  let group = 0; // groups written
  let gap = -1; // group index where '::' was seen
  let i = 0;
  if (s.charCodeAt(0) === CH_COLON) {
    if (s.charCodeAt(1) !== CH_COLON) return false;
    gap = 0;
    i = 2;
    if (i === n) {
      out.fill(0, offset, offset + 16);
      return true;
    }
  }
  while (i < n) {
    // One group: hex digits, or a dotted quad at the end.
    let value = 0;
    let digits = 0;
    const start = i;
    while (i < n) {
      const h = hexValue(s.charCodeAt(i));
      if (h < 0) break;
      value = (value << 4) | h;
      digits++;
      i++;
    }
    if (i < n && s.charCodeAt(i) === CH_DOT) {
      // Embedded IPv4 (needs room for two groups, must be last).
      if (group > 6) return false;
      let part = 0;
      let v = 0;
      let d = 0;
      for (let j = start; j <= n; j++) {
        const c = j < n ? s.charCodeAt(j) : CH_DOT;
        if (c >= CH_0 && c <= CH_9) {
          if (d > 0 && v === 0) return false;
          v = v * 10 + (c - CH_0);
          d++;
          if (v > 255) return false;
        } else if (c === CH_DOT) {
          if (d === 0 || part > 3) return false;
          out[offset + group * 2 + part] = v;
          part++;
          v = 0;
          d = 0;
        } else {
          return false;
        }
      }
      if (part !== 4) return false;
      group += 2;
      i = n;
      break;
    }
    if (digits === 0 || digits > 4 || group > 7) return false;
    out[offset + group * 2] = value >> 8;
    out[offset + group * 2 + 1] = value & 0xff;
    group++;
    if (i === n) break;
    if (s.charCodeAt(i) !== CH_COLON) return false;
    i++;
    if (i < n && s.charCodeAt(i) === CH_COLON) {
      if (gap >= 0) return false;
      gap = group;
      i++;
      if (i === n) break;
    } else if (i === n) {
      return false; // trailing single ':'
    }
  }
  if (gap < 0) return group === 8;
  if (group > 7) return false;
  // Move the groups after the gap to the end and zero the gap.
  const tail = group - gap;
  for (let k = tail - 1; k >= 0; k--) {
    const from = offset + (gap + k) * 2;
    const to = offset + (8 - tail + k) * 2;
    out[to] = out[from];
    out[to + 1] = out[from + 1];
  }
  out.fill(0, offset + gap * 2, offset + (8 - tail) * 2);
  return true;
}

/** Dotted-quad string of the 4 octets at `bytes[offset]`. */
export function formatIPv4(bytes: Uint8Array, offset = 0): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

/** RFC 5952 string of the 16 octets at `bytes[offset]` (e.g. '::1', '2001:db8::1', '::ffff:1.2.3.4'). */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1]);
  // IPv4-mapped ::ffff:a.b.c.d (RFC 5952 §5), as node reports it.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes, offset + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 1; // only runs of 2+ groups are compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    g
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** 4 or 6 for an IP literal, 0 otherwise (allocation-free; same acceptance as the parsers). */
export function ipFamilyOf(s: string, scratch: Uint8Array): 0 | 4 | 6 {
  if (parseIPv4Into(s, scratch, 0)) return 4;
  if (parseIPv6Into(s, scratch, 0)) return 6;
  return 0;
}
