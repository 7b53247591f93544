/**
 * Online weight averaging: the element-wise mean of K equally long vectors, in one pass, into a buffer the
 * caller owns (no allocation per round). The sum is taken in float64 in rank order and divided once, so the
 * result is the same on every machine and in every process that calls it.
 *
 * Two kernels: {@link meanRangeInto} for float32 inputs, and {@link meanCodesRangeInto} for 16-bit wire codes
 * (float16 / bfloat16), which decodes through a lookup table inside the same loop, so a half-precision round
 * reads each received byte once instead of decoding into a float32 scratch vector first. Both keep the
 * arithmetic of the reference trainer: averaging is always in float32 inputs, float64 sums
 * (docs/algorithm.md#online-average).
 */
import { ConfigError } from './errors.js';

/** Checks that `inputs` is a non-empty list of vectors as long as `out`; names the offender otherwise. */
export function checkSameLength(out: Float32Array, inputs: readonly Float32Array[]): void {
  if (inputs.length === 0) throw new ConfigError('averaging needs at least one input vector, got none');
  inputs.forEach((v, k) => {
    if (v.length !== out.length)
      throw new ConfigError(`input ${k} has ${v.length} elements, expected ${out.length} like the output`);
  });
}

/**
 * out[i] = (Σ_k inputs[k][i]) / K for i in [start, end). `out` may alias one of the inputs.
 * Specialised loops for K ≤ 4 keep the hot path free of an inner loop (measured ~2× faster at K=2).
 */
export function meanRangeInto(
  out: Float32Array,
  inputs: readonly Float32Array[],
  start = 0,
  end: number = out.length,
): Float32Array {
  const k = inputs.length;
  if (k === 1) {
    if (inputs[0] !== out) out.set(inputs[0].subarray(start, end), start);
    return out;
  }
  if (k === 2) {
    const [a, b] = inputs as [Float32Array, Float32Array];
    for (let i = start; i < end; i++) out[i] = (a[i] + b[i]) / 2;
  } else if (k === 3) {
    const [a, b, c] = inputs as [Float32Array, Float32Array, Float32Array];
    for (let i = start; i < end; i++) out[i] = (a[i] + b[i] + c[i]) / 3;
  } else if (k === 4) {
    const [a, b, c, d] = inputs as [Float32Array, Float32Array, Float32Array, Float32Array];
    for (let i = start; i < end; i++) out[i] = (a[i] + b[i] + c[i] + d[i]) / 4;
  } else {
    for (let i = start; i < end; i++) {
      // Starting from the first input (not 0) keeps −0 + −0 = −0, as the specialised loops do.
      let sum = inputs[0][i];
      for (let j = 1; j < k; j++) sum += inputs[j][i];
      out[i] = sum / k;
    }
  }
  return out;
}

/**
 * out[i] = (Σ_k table[inputs[k][i]]) / K for i in [start, end): the mean of K vectors of 16-bit codes, each
 * code decoded through `table` (its float32 value; 65536 entries, e.g. `decodeTable('float16')` from
 * @hwa/protocol). Bit-identical to decoding every input to float32 and then calling {@link meanRangeInto}, in
 * one pass and without the K decoded vectors. `out` must not alias an input (they are of another type).
 */
export function meanCodesRangeInto(
  out: Float32Array,
  inputs: readonly Uint16Array[],
  table: Float32Array,
  start = 0,
  end: number = out.length,
): Float32Array {
  const k = inputs.length;
  // Same operation order as meanRangeInto (float64 sum in rank order, one division), so the two kernels agree
  // to the bit and a half-precision run equals "decode, then average" exactly.
  if (k === 1) {
    const a = inputs[0];
    for (let i = start; i < end; i++) out[i] = table[a[i]];
  } else if (k === 2) {
    const [a, b] = inputs as [Uint16Array, Uint16Array];
    for (let i = start; i < end; i++) out[i] = (table[a[i]] + table[b[i]]) / 2;
  } else if (k === 3) {
    const [a, b, c] = inputs as [Uint16Array, Uint16Array, Uint16Array];
    for (let i = start; i < end; i++) out[i] = (table[a[i]] + table[b[i]] + table[c[i]]) / 3;
  } else if (k === 4) {
    const [a, b, c, d] = inputs as [Uint16Array, Uint16Array, Uint16Array, Uint16Array];
    for (let i = start; i < end; i++) out[i] = (table[a[i]] + table[b[i]] + table[c[i]] + table[d[i]]) / 4;
  } else {
    for (let i = start; i < end; i++) {
      let sum = table[inputs[0][i]];
      for (let j = 1; j < k; j++) sum += table[inputs[j][i]];
      out[i] = sum / k;
    }
  }
  return out;
}

/** The mean of all `inputs` into `out` (checked lengths). */
export function meanInto(out: Float32Array, inputs: readonly Float32Array[]): Float32Array {
  checkSameLength(out, inputs);
  return meanRangeInto(out, inputs, 0, out.length);
}

/**
 * Index of the first NaN or ±Inf in v[start, end), or −1. Reads the exponent bits (one integer test per
 * float, no allocation): the check that keeps non-finite weights out of θ̄ (docs/algorithm.md#numerics), run
 * on averaged output while it is still in cache, and on an input only once the output showed that some input
 * is not finite.
 */
export function firstNonFinite(v: Float32Array, start = 0, end: number = v.length): number {
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  for (let i = start; i < end; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) return i;
  return -1;
}
