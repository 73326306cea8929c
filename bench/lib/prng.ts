// Seeded PRNG (sfc32): every packet, CID and schedule in the harness comes from a fixed seed so
// two runs offer byte-identical traffic.

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Integer in [min, max] inclusive. */
  int(min: number, max: number): number {
    return min + (this.nextU32() % (max - min + 1));
  }

  /** Float in [0, 1). */
  float(): number {
    return this.nextU32() / 0x1_0000_0000;
  }

  fill(buf: Uint8Array, start = 0, end = buf.length): Uint8Array {
    for (let i = start; i < end; i++) buf[i] = this.nextU32() & 0xff;
    return buf;
  }

  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }
}
