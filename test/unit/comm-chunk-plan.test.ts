/**
 * Chunk boundaries (docs/protocol.md#chunking): the plan covers every float exactly once, in order, for sizes
 * the chunk does not divide, a 1-float vector, an empty one, and chunks larger than the vector; the
 * receiver's tracker accepts every plan and completes exactly on its last chunk.
 */
import { ChunkTracker, chunkDescriptors, chunkPlan } from '@hwa/protocol';
import { describe, expect, it } from 'vitest';

const cases: [length: number, chunkFloats: number, chunks: number][] = [
  [1, 0, 1],
  [1, 1, 1],
  [1, 1000, 1],
  [0, 0, 1],
  [0, 7, 1],
  [10, 3, 4],
  [10, 5, 2],
  [10, 10, 1],
  [10, 11, 1],
  [4099, 1024, 5],
  [25_000_000, 1 << 20, 24],
];

describe('chunkPlan', () => {
  it.each(cases)('%i floats in chunks of %i: %i chunks covering every float once', (length, chunkFloats, chunks) => {
    const plan = chunkPlan(length, chunkFloats);
    expect(plan.length).toBe(chunks);
    let next = 0;
    for (const [i, c] of plan.entries()) {
      expect(c.offset).toBe(next);
      if (i < plan.length - 1) expect(c.count).toBe(chunkFloats);
      else expect(c.count).toBeGreaterThanOrEqual(length === 0 ? 0 : 1);
      next += c.count;
    }
    expect(next).toBe(length);
  });

  it.each(cases)('%i floats in chunks of %i: the tracker completes on the last of %i chunks', (length, chunkFloats) => {
    const tracker = new ChunkTracker();
    const descriptors = chunkDescriptors(length, chunkFloats, 'float32');
    descriptors.forEach((d, i) => expect(tracker.add(d)).toBe(i === descriptors.length - 1));
    expect(tracker.complete).toBe(true);
  });

  it('rejects sizes that are not counts', () => {
    expect(() => chunkPlan(-1, 0)).toThrow(RangeError);
    expect(() => chunkPlan(10, 1.5)).toThrow(RangeError);
  });
});
