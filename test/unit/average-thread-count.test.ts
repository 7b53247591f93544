/**
 * How many threads average a shared-memory round (`--average-threads`): 0 = the cores, at most 4; a bad value is
 * one ConfigError line; rounds that are not split (other transports, 16-bit files, short vectors) take one.
 */
import { ConfigError } from '@hwa/core';
import { averageThreadCount, MIN_THREADED_FLOATS, roundThreads } from '@hwa/coordinator';
import { describe, expect, it } from 'vitest';

describe('averageThreadCount', () => {
  it('0 or absent is the cores, at most 4; a given count is taken as it is', () => {
    expect([1, 2, 3, 4, 16].map((cores) => averageThreadCount(0, cores))).toEqual([1, 2, 3, 4, 4]);
    expect(averageThreadCount(undefined, 2)).toBe(2);
    expect(averageThreadCount(1, 16)).toBe(1);
    expect(averageThreadCount(6, 2)).toBe(6);
  });

  it.each([-1, 1.5, Number.NaN])('refuses %s with one line naming the option', (bad) => {
    expect(() => averageThreadCount(bad)).toThrow(ConfigError);
    expect(() => averageThreadCount(bad)).toThrow(`--average-threads must be a whole number ≥ 0 (0 = the machine's cores, at most 4), got ${bad}`);
  });
});

describe('roundThreads', () => {
  const long = { averageThreads: 3, sharedMemory: true, wireDtype: 'float32' as const, syncSize: MIN_THREADED_FLOATS };

  it('splits float32 shared-memory rounds of at least MIN_THREADED_FLOATS floats', () => {
    expect(roundThreads(long)).toBe(3);
    expect(roundThreads({ ...long, syncSize: 10, minFloats: 10 })).toBe(3);
  });

  it('keeps every other round on one thread', () => {
    expect(roundThreads({ ...long, sharedMemory: false })).toBe(1);
    expect(roundThreads({ ...long, wireDtype: 'bfloat16' })).toBe(1);
    expect(roundThreads({ ...long, syncSize: MIN_THREADED_FLOATS - 1 })).toBe(1);
    expect(roundThreads({ ...long, averageThreads: 1 })).toBe(1);
  });
});
