// Server side: encodeConnectionIdInto() (no allocation) and encodeConnectionId() per algorithm, and the encoder's
// generateInto() / generate() (counter nonce, random pool for plaintext).
import { add } from 'benny';
import { encodeConnectionId, encodeConnectionIdInto, QuicLbEncoder } from '../../src/cid/index.js';
import { buildInputs, INPUT_MASK, SHAPES, type Shape } from './inputs.js';

export let sink = 0;

export function encodeCase(shape: Shape) {
  return add(`encode ${shape.label}`, () => {
    const { config, serverIds, nonces } = buildInputs(shape);
    const out = new Uint8Array(20);
    let i = 0;
    return () => {
      const k = i++ & INPUT_MASK;
      sink ^= encodeConnectionIdInto(config, serverIds[k], nonces[k], out, 0) + out[1];
    };
  });
}

export function encodeAllocatingCase(shape: Shape) {
  return add(`encodeConnectionId ${shape.label} (allocates result)`, () => {
    const { config, serverIds, nonces } = buildInputs(shape);
    let i = 0;
    return () => {
      const k = i++ & INPUT_MASK;
      sink ^= encodeConnectionId(config, serverIds[k], nonces[k])[1];
    };
  });
}

export function generatorCase(shape: Shape, allocate: boolean) {
  return add(`encoder.${allocate ? 'generate()' : 'generateInto()'} ${shape.label}`, () => {
    const { config, serverIds } = buildInputs(shape);
    const encoder = new QuicLbEncoder({ configs: [{ config, serverId: serverIds[0] }] });
    const out = new Uint8Array(20);
    return allocate
      ? () => {
          sink ^= encoder.generate()[1];
        }
      : () => {
          sink ^= encoder.generateInto(out, 0) + out[1];
        };
  });
}

export const encodeCases = () => [
  encodeCase(SHAPES.plaintext),
  encodeCase(SHAPES.singlePass),
  encodeCase(SHAPES.fourPass3),
  encodeCase(SHAPES.fourPass4),
  encodeAllocatingCase(SHAPES.plaintext),
  encodeAllocatingCase(SHAPES.singlePass),
  encodeAllocatingCase(SHAPES.fourPass3),
  encodeAllocatingCase(SHAPES.fourPass4),
  generatorCase(SHAPES.fourPass3, false),
  generatorCase(SHAPES.fourPass3, true),
  generatorCase(SHAPES.plaintext, false),
];
