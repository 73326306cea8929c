// Just enough QPACK (RFC 9204) to read a request's pseudo-headers: prefixed integers, string
// literals with the HPACK Huffman code (RFC 7541 Appendix B), and the static table. The demo
// server advertises a zero-capacity dynamic table, so references to it are refused.

/**
 * RFC 7541 Appendix B: code length in bits of each symbol 0..256 (256 = EOS). The code is
 * canonical (codes of one length are consecutive in symbol order, shorter codes first), so
 * the lengths alone define it; `huffmanCode` below rebuilds the table's hex values.
 */
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
  28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6,
  5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23,
  22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22,
  23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26,
  20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27,
  27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27,
  27, 27, 27, 26, 30,
];
const EOS = 256;

interface HuffNode {
  sym: number;
  child: [HuffNode | undefined, HuffNode | undefined];
}

/** Canonical codes from the lengths: returns [code, length] per symbol. */
export function huffmanCodes(): Array<[number, number]> {
  const order = HUFFMAN_LENGTHS.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  const codes: Array<[number, number]> = new Array(HUFFMAN_LENGTHS.length);
  let code = 0;
  let prevLen = order[0].len;
  for (const { len, sym } of order) {
    code *= 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = [code, len];
    code++;
  }
  return codes;
}

let root: HuffNode | undefined;
function huffmanTree(): HuffNode {
  if (root) return root;
  const r: HuffNode = { sym: -1, child: [undefined, undefined] };
  huffmanCodes().forEach(([code, len], sym) => {
    let n = r;
    for (let bit = len - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) & 1;
      n = n.child[b] ??= { sym: -1, child: [undefined, undefined] };
    }
    n.sym = sym;
  });
  root = r;
  return r;
}

/** Decodes a Huffman-coded string (RFC 7541 §5.2); undefined on EOS or bad padding. */
export function huffmanDecode(data: Uint8Array): Buffer | undefined {
  const tree = huffmanTree();
  const out: number[] = [];
  let n = tree;
  let depth = 0;
  let ones = true;
  for (const byte of data) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const next = n.child[b];
      if (!next) return undefined;
      depth++;
      ones &&= b === 1;
      if (next.sym >= 0) {
        if (next.sym === EOS) return undefined;
        out.push(next.sym);
        n = tree;
        depth = 0;
        ones = true;
      } else {
        n = next;
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the EOS prefix).
  if (depth > 7 || !ones) return undefined;
  return Buffer.from(out);
}

/** RFC 9204 Appendix A: static table entries the demo needs to name request fields (0..28). */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':path', '/'],
  ['age', '0'],
  ['content-disposition', ''],
  ['content-length', '0'],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['referer', ''],
  ['set-cookie', ''],
  [':method', 'CONNECT'],
  [':method', 'DELETE'],
  [':method', 'GET'],
  [':method', 'HEAD'],
  [':method', 'OPTIONS'],
  [':method', 'POST'],
  [':method', 'PUT'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '103'],
  [':status', '200'],
  [':status', '304'],
  [':status', '404'],
  [':status', '503'],
];

/** RFC 9204 §4.5.2 / RFC 7541 §5.1 prefixed integer. Returns [value, next offset] or undefined. */
function prefixInt(buf: Uint8Array, off: number, prefixBits: number): [number, number] | undefined {
  if (off >= buf.length) return undefined;
  const max = (1 << prefixBits) - 1;
  let v = buf[off++] & max;
  if (v < max) return [v, off];
  let shift = 0;
  for (;;) {
    if (off >= buf.length || shift > 28) return undefined;
    const b = buf[off++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [v, off];
  }
}

/** A string literal whose H flag sits just above a `prefixBits` length. */
function stringLiteral(buf: Uint8Array, off: number, prefixBits: number): [string, number] | undefined {
  if (off >= buf.length) return undefined;
  const huffman = (buf[off] & (1 << prefixBits)) !== 0;
  const len = prefixInt(buf, off, prefixBits);
  if (!len || len[1] + len[0] > buf.length) return undefined;
  const raw = buf.subarray(len[1], len[1] + len[0]);
  const bytes = huffman ? huffmanDecode(raw) : Buffer.from(raw);
  if (!bytes) return undefined;
  return [bytes.toString('latin1'), len[1] + len[0]];
}

function staticName(index: number): string {
  return STATIC_TABLE[index]?.[0] ?? `static:${index}`;
}

/** QPACK decoding failure (RFC 9204 §6: QPACK_DECOMPRESSION_FAILED = 0x0200). */
export const QPACK_DECOMPRESSION_FAILED = 0x0200;

/**
 * Decodes an encoded field section that uses only the static table and literals. Returns the
 * fields in order, or undefined when it is malformed or refers to the dynamic table.
 */
export function decodeFieldSection(block: Uint8Array): Array<[string, string]> | undefined {
  const ric = prefixInt(block, 0, 8);
  if (!ric || ric[0] !== 0) return undefined; // Required Insert Count 0: no dynamic table
  const base = prefixInt(block, ric[1], 7);
  if (!base) return undefined;
  let off = base[1];
  const fields: Array<[string, string]> = [];
  while (off < block.length) {
    const b = block[off];
    if (b & 0x80) {
      // 1Txxxxxx indexed field line
      if ((b & 0x40) === 0) return undefined;
      const idx = prefixInt(block, off, 6);
      if (!idx) return undefined;
      const entry = STATIC_TABLE[idx[0]];
      fields.push(entry ? [entry[0], entry[1]] : [`static:${idx[0]}`, '']);
      off = idx[1];
    } else if (b & 0x40) {
      // 01NTxxxx literal with name reference
      if ((b & 0x10) === 0) return undefined;
      const idx = prefixInt(block, off, 4);
      if (!idx) return undefined;
      const value = stringLiteral(block, idx[1], 7);
      if (!value) return undefined;
      fields.push([staticName(idx[0]), value[0]]);
      off = value[1];
    } else if (b & 0x20) {
      // 001NHxxx literal with literal name
      const name = stringLiteral(block, off, 3);
      if (!name) return undefined;
      const value = stringLiteral(block, name[1], 7);
      if (!value) return undefined;
      fields.push([name[0], value[0]]);
      off = value[1];
    } else {
      return undefined; // post-base references need the dynamic table
    }
  }
  return fields;
}
