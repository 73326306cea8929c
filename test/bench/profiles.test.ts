// Command-line overrides of the run profiles: applied, and refused with a clear message when out of range.
import { describe, expect, it } from 'vitest';
import { PROFILES, withOverrides } from '../../bench/harness/profiles.js';
import { parseArgs } from '../../bench/routers/args.js';

describe('bench profiles', () => {
  it('applies traffic overrides from the command line', () => {
    const p = withOverrides(
      PROFILES.quick,
      parseArgs(['--conns', '50', '--size=600', '--rebind-share', '0.25', '--memory-steps', '100,1000']),
    );
    expect(p).toMatchObject({
      conns: 50,
      packetSize: 600,
      rebindShare: 0.25,
      memorySteps: [100, 1000],
      trialMs: PROFILES.quick.trialMs,
    });
    expect(PROFILES.quick.conns).toBe(500); // the profile itself is untouched
  });

  it('refuses values the generator cannot honour', () => {
    expect(() => withOverrides(PROFILES.quick, parseArgs(['--conns', '0']))).toThrow(/--conns/);
    expect(() => withOverrides(PROFILES.quick, parseArgs(['--size', '2000']))).toThrow(/--size/);
    expect(() => withOverrides(PROFILES.quick, parseArgs(['--rebind-share', '0.9']))).toThrow(/--rebind-share/);
    expect(() => withOverrides(PROFILES.quick, parseArgs(['--trial-ms', 'abc']))).toThrow(/non-negative/);
  });

  it('keeps redis-restart last (it empties the map later Redis trials would start from)', () => {
    for (const p of Object.values(PROFILES))
      if (p.scenarios.includes('redis-restart')) expect(p.scenarios.at(-1)).toBe('redis-restart');
  });
});
