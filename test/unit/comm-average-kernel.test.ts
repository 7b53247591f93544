/**
 * The coordinator's averaging kernels (docs/algorithm.md#online-average): the fused decode-and-average of
 * 16-bit wire codes equals decoding to float32 and then averaging, bit for bit, for every K the kernels
 * specialise and beyond; both kernels respect their range and never touch anything outside it.
 */
import { meanCodesRangeInto, meanRangeInto, mulberry32 } from '@hwa/core';
import { decodeRange, decodeTable, encodeRange } from '@hwa/protocol';
import { describe, expect, it } from 'vitest';

const bits = (v: Float32Array) => new Uint32Array(v.buffer, v.byteOffset, v.length);

/** Weight-like values plus the awkward ones: zeros of both signs, subnormals, huge, ±Inf, NaN. */
function vector(n: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const v = Float32Array.from({ length: n }, () => (random() * 2 - 1) * 0.1);
  const special = [0, -0, 1e-8, -3e-6, 6e-5, 65504, 70000, -1e30, Infinity, -Infinity, NaN];
  special.forEach((x, i) => {
    if (i < n) v[(i * 7919) % n] = x;
  });
  return v;
}

function codes(v: Float32Array, dtype: 'float16' | 'bfloat16'): Uint16Array {
  const bytes = new Uint8Array(v.length * 2);
  encodeRange(v, 0, v.length, dtype, bytes);
  return new Uint16Array(bytes.buffer);
}

describe.each(['float16', 'bfloat16'] as const)('fused %s decode + average', (dtype) => {
  it.each([1, 2, 3, 4, 5, 7])('equals decode-then-meanRangeInto bit for bit with K=%i', (k) => {
    const n = 4099;
    const inputs = Array.from({ length: k }, (_, j) => codes(vector(n, 100 + j), dtype));
    const fused = meanCodesRangeInto(new Float32Array(n), inputs, decodeTable(dtype));
    const decoded = inputs.map((c) => {
      const f = new Float32Array(n);
      decodeRange(new Uint8Array(c.buffer), n, dtype, f, 0);
      return f;
    });
    const reference = meanRangeInto(new Float32Array(n), decoded);
    // NaN payloads may differ between paths; everything else must be the same bits.
    for (let i = 0; i < n; i++)
      if (!(Number.isNaN(fused[i]) && Number.isNaN(reference[i])) && bits(fused)[i] !== bits(reference)[i])
        expect.fail(`element ${i}: fused ${fused[i]}, decode-then-average ${reference[i]}`);
  });

  it('writes only [start, end) of the output', () => {
    const n = 100;
    const inputs = [codes(vector(n, 1), dtype), codes(vector(n, 2), dtype)];
    const out = new Float32Array(n).fill(42);
    meanCodesRangeInto(out, inputs, decodeTable(dtype), 10, 90);
    expect([...out.subarray(0, 10), ...out.subarray(90)].every((x) => x === 42)).toBe(true);
    expect(out.subarray(10, 90).some((x) => x !== 42)).toBe(true);
  });
});

describe('decodeTable', () => {
  it.each(['float16', 'bfloat16'] as const)('%s: holds the float32 value of every code', (dtype) => {
    const table = decodeTable(dtype);
    expect(table.length).toBe(65536);
    const all = new Uint16Array(65536).map((_, i) => i);
    const decoded = new Float32Array(65536);
    decodeRange(new Uint8Array(all.buffer), 65536, dtype, decoded, 0);
    for (let h = 0; h < 65536; h++)
      if (!(Number.isNaN(table[h]) && Number.isNaN(decoded[h])) && !Object.is(table[h], decoded[h]))
        expect.fail(`code 0x${h.toString(16)}: table ${table[h]}, decodeRange ${decoded[h]}`);
  });
});

describe('meanRangeInto', () => {
  it.each([1, 2, 3, 4, 6])('with K=%i is the float64 sum in rank order divided once, rounded to float32 (−0 kept)', (k) => {
    const n = 1001;
    const inputs = Array.from({ length: k }, (_, j) => vector(n, 50 + j));
    const out = meanRangeInto(new Float32Array(n), inputs);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let sum = inputs[0][i];
      for (let j = 1; j < k; j++) sum += inputs[j][i];
      want[i] = sum / k;
    }
    expect(out).toEqual(want);
  });

  it('averages a 1-float vector and an empty range', () => {
    expect(meanRangeInto(new Float32Array(1), [Float32Array.of(1), Float32Array.of(2)])[0]).toBe(1.5);
    const out = Float32Array.of(7);
    meanRangeInto(out, [Float32Array.of(1), Float32Array.of(2)], 1, 1);
    expect(out[0]).toBe(7);
  });
});
