/**
 * In-process ceilings and costs of `hwa bench comm`, measured on the same vectors and in the same run as the
 * rounds: memcpy (`Float32Array.set`), the averaging kernel alone, and the wire conversions.
 */
import { StagedMean, meanCodesRangeInto, type WireDtype } from '@hwa/core';
import { decodeRange, decodeTable, encodeRange } from '@hwa/protocol';

/** Sorted-sample summary of repeated timings (ms). */
export interface Timing {
  min: number;
  median: number;
  max: number;
}

export function summarize(samples: readonly number[]): Timing {
  if (samples.length === 0) return { min: NaN, median: NaN, max: NaN };
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { min: s[0], median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, max: s[s.length - 1] };
}

/** Runs `f` `warmup` times untimed (page faults, JIT), then `reps` times timed. */
export function time(f: () => void, reps: number, warmup = 2): Timing {
  for (let i = 0; i < warmup; i++) f();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

/** A vector of weight-like values (about N(0, 0.05²), deterministic), so 16-bit conversion takes its normal paths. */
export function weightLike(n: number, seed = 1): Float32Array {
  const v = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    // xorshift32, then the sum of two uniforms as a cheap bell shape
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const a = (x >>> 0) / 4294967296;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const b = (x >>> 0) / 4294967296;
    v[i] = (a + b - 1) * 0.1;
  }
  return v;
}

export interface InProcessCosts {
  /** `Float32Array.set` of N floats into a preallocated, already-touched vector. */
  memcpy: Timing;
  /**
   * The coordinator's averaging kernel alone over N floats of K inputs: float32 as a shm round runs it, block by
   * block on inputs already in StagedMean's WebAssembly slots (where the shared-memory reads put them) including
   * the copy of each averaged block out; 16-bit codes through the fused decode-and-mean loop.
   */
  average: Timing;
  /**
   * float32 only (else equal to `average`): StagedMean.meanRangeInto on K vectors in JS memory, as a frame round
   * runs it — each block is first copied into the slots.
   */
  averageStaged: Timing;
  /** float32 → wire dtype of N floats (0 for float32, which is sent as a view). */
  encode: Timing;
  /** wire dtype → float32 of N floats (what a worker does on receipt; a byte copy for float32). */
  decode: Timing;
}

/**
 * Measures memcpy, the averaging kernel, and the conversions for N floats and K inputs. Allocates its own
 * vectors (about (K + 3)·N·4 bytes) and lets them go when done.
 */
export function measureInProcess(n: number, k: number, dtype: WireDtype, reps = 7): InProcessCosts {
  const src = weightLike(n, 7);
  const dst = new Float32Array(n);
  const memcpy = time(() => dst.set(src), reps);
  let average: Timing;
  let averageStaged: Timing;
  const wire = new Uint8Array(n * (dtype === 'float32' ? 4 : 2));
  if (dtype === 'float32') {
    const inputs = Array.from({ length: k }, (_, j) => weightLike(n, 11 + j));
    const stager = new StagedMean(k);
    const block = stager.blockFloats;
    for (let j = 0; j < k; j++) stager.slot(j).set(inputs[j].subarray(0, Math.min(block, n)));
    average = time(() => {
      for (let at = 0; at < n; at += block) stager.meanOfSlots(dst, at, Math.min(block, n - at));
    }, reps);
    averageStaged = time(() => stager.meanRangeInto(dst, inputs, 0, n), reps);
  } else {
    const table = decodeTable(dtype);
    const inputs = Array.from({ length: k }, (_, j) => {
      const codes = new Uint8Array(n * 2);
      encodeRange(weightLike(n, 11 + j), 0, n, dtype, codes);
      return new Uint16Array(codes.buffer);
    });
    average = time(() => meanCodesRangeInto(dst, inputs, table, 0, n), reps);
    averageStaged = average;
  }
  const encode = dtype === 'float32' ? { min: 0, median: 0, max: 0 } : time(() => encodeRange(src, 0, n, dtype, wire), reps);
  if (dtype === 'float32') encodeRange(src, 0, n, dtype, wire);
  const decode = time(() => decodeRange(wire, n, dtype, dst, 0), reps);
  return { memcpy, average, averageStaged, encode, decode };
}
