/**
 * Chunking a flat vector into messages. Chunks bound the size of one frame (and so the memory a receiver holds
 * per message and the head-of-line delay of a heartbeat behind a weights message); the plan is fixed by
 * (length, chunkFloats) so both sides can check every chunk against it.
 */
import { ProtocolError, type WireDtype } from '@hwa/core';
import type { TensorDescriptor } from './messages.js';

/** One chunk of a vector: floats [offset, offset + count). */
export interface Chunk {
  /** First float of the chunk in the whole vector. */
  offset: number;
  /** Floats in the chunk. */
  count: number;
}

/**
 * Splits a vector of `length` floats into chunks of `chunkFloats` (the last one shorter when it does not
 * divide); `chunkFloats` 0 means one chunk. A vector of length 0 is one empty chunk, so every vector is at
 * least one message and the receiver always learns `length`.
 */
export function chunkPlan(length: number, chunkFloats: number): Chunk[] {
  if (!(Number.isSafeInteger(length) && length >= 0)) throw new RangeError(`chunkPlan: length ${length} is not a count`);
  if (!(Number.isSafeInteger(chunkFloats) && chunkFloats >= 0))
    throw new RangeError(`chunkPlan: chunkFloats ${chunkFloats} is not a count`);
  if (chunkFloats === 0 || length <= chunkFloats) return [{ offset: 0, count: length }];
  const plan: Chunk[] = [];
  for (let offset = 0; offset < length; offset += chunkFloats)
    plan.push({ offset, count: Math.min(chunkFloats, length - offset) });
  return plan;
}

/** The descriptors of every chunk of a vector of `length` floats sent as `dtype` (see {@link chunkPlan}). */
export function chunkDescriptors(length: number, chunkFloats: number, dtype: WireDtype): TensorDescriptor[] {
  const plan = chunkPlan(length, chunkFloats);
  return plan.map(({ offset, count }, chunk) => ({ dtype, length, offset, count, chunk, chunks: plan.length }));
}

/**
 * Tracks the chunks of one vector as they arrive, so a receiver knows when the vector is whole. Every chunk
 * must fit one {@link chunkPlan} (equal chunks of some size S, the last one shorter): then "all chunk indices
 * seen once" means "every float written exactly once", with no per-float bookkeeping.
 */
export class ChunkTracker {
  private seen: Uint8Array = new Uint8Array(0);
  private received = 0;
  private first: TensorDescriptor | undefined;
  private size = 0; // S, once known (0 = not yet)

  /**
   * Records one (validated) chunk; returns true when it completes the vector. `sender` only words errors.
   * @throws ProtocolError on a chunk seen twice, or one that disagrees with the plan of the chunks before it.
   */
  add(t: TensorDescriptor, sender?: string): boolean {
    const from = sender !== undefined ? ` from ${sender}` : '';
    const fail = (why: string): never => {
      throw new ProtocolError(`chunk ${t.chunk} of ${t.chunks}${from} (offset ${t.offset}, count ${t.count}) ${why}`);
    };
    const first = this.first;
    if (first === undefined) {
      this.seen = new Uint8Array(t.chunks);
    } else if (t.length !== first.length || t.chunks !== first.chunks || t.dtype !== first.dtype) {
      fail(`describes a ${t.length}-float ${t.dtype} vector in ${t.chunks} chunks; earlier chunks said ` +
        `${first.length} floats, ${first.dtype}, ${first.chunks} chunks`);
    }
    if (this.seen[t.chunk] === 1) fail('arrived twice');
    const last = t.chunks - 1;
    let size = this.size;
    if (t.chunks === 1) {
      if (t.offset !== 0 || t.count !== t.length) fail(`does not cover the whole ${t.length}-float vector`);
    } else if (t.chunk < last) {
      if (t.count === 0 || (size !== 0 && t.count !== size) || t.offset !== t.chunk * t.count)
        fail(`does not fit a plan of equal chunks${size !== 0 ? ` of ${size}` : ''}`);
      size = t.count;
    } else {
      const implied = t.offset / last;
      if (t.offset + t.count !== t.length || !Number.isInteger(implied) || t.count === 0 || t.count > implied ||
        (size !== 0 && implied !== size))
        fail(`is not the tail of a plan of equal chunks${size !== 0 ? ` of ${size}` : ''} of ${t.length} floats`);
      size = implied;
    }
    if (first === undefined) this.first = t;
    this.size = size;
    this.seen[t.chunk] = 1;
    this.received++;
    return this.received === t.chunks;
  }

  /** Whether every chunk has arrived. */
  get complete(): boolean {
    return this.first !== undefined && this.received === this.first.chunks;
  }

  /** Chunks received so far. */
  get count(): number {
    return this.received;
  }

  /** Forgets everything, for the next vector. */
  reset(): void {
    this.first = undefined;
    this.received = 0;
    this.size = 0;
    this.seen = new Uint8Array(0);
  }
}
