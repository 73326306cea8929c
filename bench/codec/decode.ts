// LB hot path: QuicLbDecoder.decode() on a short-header datagram (CID at offset 1), per algorithm
// and cipher, plus the allocating convenience decodeServerId().
import { add } from 'benny';
import { decodeServerId, QuicLbDecoder } from '../../src/cid/index.js';
import type { CipherName } from '../../src/cid/index.js';
import { buildInputs, INPUT_MASK, SHAPES, type Shape } from './inputs.js';

export let sink = 0;

export function decoderCase(shape: Shape, cipher: CipherName = 'table') {
  return add(`decode ${shape.label}${shape.encrypted ? ` [${cipher}]` : ''}`, () => {
    const { config, datagrams } = buildInputs(shape, cipher);
    const decoder = new QuicLbDecoder([config]);
    const out = new Uint8Array(20);
    let i = 0;
    return () => {
      const d = datagrams[i++ & INPUT_MASK];
      sink ^= decoder.decode(d, 1, d.length - 1, out) + out[0];
    };
  });
}

export function decodeServerIdCase(shape: Shape) {
  return add(`decodeServerId ${shape.label} (allocates result)`, () => {
    const { config, cids } = buildInputs(shape);
    let i = 0;
    return () => {
      const sid = decodeServerId(config, cids[i++ & INPUT_MASK]);
      sink ^= sid === undefined ? 0 : sid[0];
    };
  });
}

export const decodeCases = () => [
  decoderCase(SHAPES.plaintext),
  decoderCase(SHAPES.singlePass),
  decoderCase(SHAPES.fourPass3),
  decoderCase(SHAPES.fourPass4),
  decoderCase(SHAPES.fourPassEven),
  decoderCase(SHAPES.singlePass, 'node'),
  decoderCase(SHAPES.fourPass3, 'node'),
  decoderCase(SHAPES.fourPass4, 'node'),
  decodeServerIdCase(SHAPES.plaintext),
  decodeServerIdCase(SHAPES.singlePass),
  decodeServerIdCase(SHAPES.fourPass3),
  decodeServerIdCase(SHAPES.fourPass4),
];
