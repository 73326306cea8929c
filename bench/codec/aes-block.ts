// One AES-128 block: node:crypto with a reused cipher (AES-NI, constant time) against the pure
// TypeScript T-table implementation, in the same run.
import { add } from 'benny';
import { createBlockCipher } from '../../src/cid/index.js';
import { prng, randomBytes } from './inputs.js';

export let sink = 0;

function blockCase(name: 'table' | 'node', direction: 'encrypt' | 'decrypt') {
  return add(`aes-128 one block ${direction} [${name}]`, () => {
    const next = prng(0xae5);
    const cipher = createBlockCipher(randomBytes(next, 16), name);
    const src = randomBytes(next, 16);
    const dst = new Uint8Array(16);
    return direction === 'encrypt'
      ? () => {
          cipher.encryptBlock(src, 0, dst, 0);
          sink ^= dst[0];
        }
      : () => {
          cipher.decryptBlock(src, 0, dst, 0);
          sink ^= dst[0];
        };
  });
}

export const aesCases = () => [
  blockCase('node', 'encrypt'),
  blockCase('table', 'encrypt'),
  blockCase('node', 'decrypt'),
  blockCase('table', 'decrypt'),
];
