/**
 * What a vector loses on the wire (docs/protocol.md#wire-dtypes): every wire dtype's round trip
 * float32 → wire → float32 through the path the coordinator and workers use (tensorFrame / readTensorInto,
 * chunk by chunk), within its bound:
 * float32 exact; float16 relative error ≤ 2^-11 in its normal range and absolute ≤ 2^-25 below it;
 * bfloat16 relative ≤ 2^-8 over the whole float32 normal range.
 */
import { mulberry32, WIRE_DTYPES, type WireDtype } from '@hwa/core';
import { chunkDescriptors, readTensorInto, tensorFrame } from '@hwa/protocol';
import { describe, expect, it } from 'vitest';

/** Sends `v` in chunks of `chunkFloats` and reassembles it, as worker → coordinator does. */
function roundTrip(v: Float32Array, dtype: WireDtype, chunkFloats: number): Float32Array {
  const out = new Float32Array(v.length);
  const scratch = new Uint8Array(v.length * 2);
  for (const d of chunkDescriptors(v.length, chunkFloats, dtype)) {
    const frame = tensorFrame(v, d.offset, d.count, dtype, scratch.subarray(d.offset * 2));
    // A fresh buffer, as a received zeromq frame is.
    readTensorInto(Buffer.from(frame), d, out);
  }
  return out;
}

/** Bound on |decoded − x| for one value. */
function bound(dtype: WireDtype, x: number): number {
  const a = Math.abs(x);
  if (dtype === 'float32') return 0;
  if (dtype === 'bfloat16') return a * 2 ** -8;
  return a >= 2 ** -14 ? a * 2 ** -11 : 2 ** -25; // below the normal range, half an ulp of the subnormals
}

describe.each(WIRE_DTYPES)('%s on the wire', (dtype) => {
  const random = mulberry32(3);
  // Weight-like values, then magnitudes across the dtype's whole finite range (both signs).
  const top = dtype === 'float16' ? 15.99 : 127;
  const v = Float32Array.from({ length: 20_011 }, (_, i) =>
    i < 10_000 ? (random() * 2 - 1) * 0.1 : (random() < 0.5 ? -1 : 1) * 2 ** (-30 + random() * (top + 30)),
  );

  it.each([0, 1, 4096, 7777, 30_000])('stays within its error bound, chunkFloats %i', (chunkFloats) => {
    const back = roundTrip(v, dtype, chunkFloats);
    let worst = 0;
    for (let i = 0; i < v.length; i++) {
      const err = Math.abs(back[i] - v[i]);
      if (err > bound(dtype, v[i])) expect.fail(`element ${i}: ${v[i]} came back as ${back[i]} (error ${err})`);
      worst = Math.max(worst, err / Math.max(Math.abs(v[i]), 2 ** -14));
    }
    if (dtype === 'float32') expect(back).toEqual(v);
    else expect(worst).toBeGreaterThan(0);
  });

  it('is idempotent: a decoded vector goes through the wire unchanged', () => {
    const once = roundTrip(v, dtype, 0);
    expect(roundTrip(once, dtype, 1000)).toEqual(once);
  });

  it('carries a 1-float vector', () => {
    expect(roundTrip(Float32Array.of(0.1), dtype, 0)[0]).toBeCloseTo(0.1, dtype === 'bfloat16' ? 2 : 3);
    expect(roundTrip(Float32Array.of(-2), dtype, 5)[0]).toBe(-2);
  });
});
