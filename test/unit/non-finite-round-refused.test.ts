/**
 * Non-finite contributions (docs/algorithm.md#numerics), the pure part:
 * HierarchicalAverager.completeFiniteRound (what the in-process reference runs each round, and what the
 * coordinator does chunk by chunk) refuses a rank whose loss or vector is not finite and averages the others;
 * with no finite contribution it throws and stays at the last finite round.
 */
import { describe, expect, it } from 'vitest';
import { DivergenceError, HierarchicalAverager, firstNonFinite, makeRunConfig, meanInto, trainingPart, type RunPlan } from '@hwa/core';

const plan: RunPlan = { workers: 3, syncPeriod: 1, stepsPerEpoch: 10, totalSteps: 10, rounds: 10, offline: 'window', offlineStartRound: 1 };
const config = trainingPart(makeRunConfig({ workers: 3, window: 2 }));
const vectors = () => [Float32Array.of(1, 2, 3, 4), Float32Array.of(3, 4, 5, 6), Float32Array.of(5, 6, 7, 8)];
const averager = () => new HierarchicalAverager(plan, config, 3, 4, new Float32Array(4));

describe('completeFiniteRound', () => {
  it('with every contribution finite equals completeRound bit for bit', () => {
    const a = averager();
    const b = averager();
    expect(a.completeFiniteRound(vectors(), [1, 1, 1])).toEqual([]);
    b.completeRound(vectors());
    expect(a.online).toEqual(b.online);
    expect(a.offline).toEqual(b.offline);
  });

  it('refuses a rank whose weights hold NaN or ±Inf, naming the element, and averages the others', () => {
    const a = averager();
    const v = vectors();
    v[1][2] = NaN;
    v[2][0] = -Infinity;
    const refused = a.completeFiniteRound(v, [1, 1, 1]);
    expect(refused).toEqual([
      { rank: 1, reason: 'its weights hold NaN at element 2' },
      { rank: 2, reason: 'its weights hold -Infinity at element 0' },
    ]);
    expect(Array.from(a.online)).toEqual([1, 2, 3, 4]);
    expect(a.round).toBe(1);
  });

  it('refuses a rank whose loss is not finite, even with finite weights', () => {
    const a = averager();
    const refused = a.completeFiniteRound(vectors(), [1, null, NaN]);
    expect(refused.map((r) => r.rank)).toEqual([1, 2]);
    expect(Array.from(a.online)).toEqual([1, 2, 3, 4]);
  });

  it('with no finite contribution throws DivergenceError and keeps the last finite round', () => {
    const a = averager();
    a.completeFiniteRound(vectors(), [1, 1, 1]);
    const before = Float32Array.from(a.online);
    const nan = vectors().map((v) => v.fill(NaN));
    expect(() => a.completeFiniteRound(nan, [1, 1, Infinity])).toThrow(DivergenceError);
    expect(() => a.completeFiniteRound(nan, [1, 1, 1])).toThrow(/no worker's contribution to round 2 was finite .*the run stops at round 1, the last finite one/);
    expect(a.round).toBe(1);
    expect(a.online).toEqual(before);
    expect(firstNonFinite(a.offline)).toBe(-1);
  });

  it('firstNonFinite finds NaN, ±Inf and nothing else, within a range', () => {
    const v = Float32Array.of(0, -0, 3.4e38, 1e-45, NaN, Infinity);
    expect(firstNonFinite(v)).toBe(4);
    expect(firstNonFinite(v, 0, 4)).toBe(-1);
    expect(firstNonFinite(v, 5)).toBe(5);
    expect(firstNonFinite(meanInto(new Float32Array(2), [Float32Array.of(3e38, 1), Float32Array.of(3e38, 1)]))).toBe(-1);
  });
});
