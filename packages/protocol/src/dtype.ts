/**
 * Wire dtypes: float32 ⇄ IEEE 754 half (float16) and float32 ⇄ bfloat16, bit-exact and allocation-free.
 *
 * Weights are averaged in float32 (or wider); float16/bfloat16 only halve the bytes on the wire
 * (docs/protocol.md#wire-dtypes).
 * Every converter works on integer views of the caller's arrays in one loop and writes into an output the
 * caller owns, so a 25M-float round costs no allocation. Rounding is round-to-nearest-even everywhere, as in
 * the hardware conversions (`vcvtps2ph` with rounding mode 0, `torch.Tensor.half()` / `.bfloat16()`), so a
 * vector encoded here decodes to the same numbers PyTorch would give.
 *
 * - float16: subnormals kept, |x| ≥ 65520 → ±Inf, |x| ≤ 2^-25 → ±0, NaN stays NaN (payload kept where it fits).
 * - bfloat16: the upper 16 bits of a float32, rounded; finite values past 0x7F7F8000 round to ±Inf as in IEEE;
 *   NaN stays NaN (truncation alone could turn a NaN with a low-bit payload into Inf).
 *
 * Relative error of one conversion for normal values: ≤ 2^-11 (float16), ≤ 2^-8 (bfloat16).
 */
import type { WireDtype } from '@hwa/core';

/** Bytes one element of `dtype` takes on the wire. */
export function bytesPerElement(dtype: WireDtype): 2 | 4 {
  return dtype === 'float32' ? 4 : 2;
}

/** float32 bit patterns of all 65536 halfs, built on first use (256 KiB): decoding is then one load per element. */
let halfTable: Int32Array | undefined;

function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = h & 0x7c00;
  const mant = h & 0x03ff;
  if (exp === 0x7c00) return sign | 0x7f800000 | (mant << 13); // Inf / NaN, payload shifted up
  if (exp !== 0) return sign | (((h & 0x7fff) << 13) + 0x38000000); // rebias 15 → 127
  if (mant === 0) return sign;
  // Subnormal half m·2^-24 is a normal float32: move the leading bit to the implicit position.
  const lead = 31 - Math.clz32(mant); // 0..9
  return sign | ((lead + 103) << 23) | ((mant << (23 - lead)) & 0x7fffff);
}

function table(): Int32Array {
  if (halfTable === undefined) {
    halfTable = new Int32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloatBits(h);
  }
  return halfTable;
}

/**
 * float32 bits (as int32) → float16 bits, round-to-nearest-even. Kept a small plain function so V8 inlines it
 * into the loops; bit patterns travel as int32 (never uint32) so they stay small integers in V8 — reading a
 * Uint32Array yields heap doubles for negative floats, which measured ~1.5× slower.
 */
function floatBitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x477ff000) {
    // ≥ 65520 (halfway between 65504, odd mantissa, and 65536): rounds to Inf; or already Inf / NaN.
    if (abs <= 0x7f800000) return sign | 0x7c00;
    const payload = (abs >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload); // a NaN whose payload sat in the low bits stays NaN
  }
  if (abs >= 0x38800000) {
    // Normal half. Adding 0xfff + lsb rounds to nearest even; a carry out of the mantissa bumps the exponent,
    // which is exactly right (and cannot reach Inf: abs < 0x477ff000).
    return sign | ((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13);
  }
  if (abs > 0x33000000) {
    // Subnormal half (2^-25 < |x| < 2^-14): m·2^(e-150) in units of 2^-24 is m >> (126 - e).
    const shift = 126 - (abs >>> 23); // 14..24
    const m = (abs & 0x7fffff) | 0x800000;
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (h & 1) === 1)) h++; // may carry into the smallest normal: correct
    return sign | h;
  }
  return sign; // |x| ≤ 2^-25 (2^-25 itself is a tie, to even = 0)
}

/** float32 bits (as int32) → bfloat16 bits, round-to-nearest-even on the upper 16 bits. */
function floatBitsToBfloat(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) {
    const h = (x >> 16) & 0xffff;
    return (h & 0x7f) === 0 ? h | 0x40 : h; // keep it a NaN; keep the payload when it fits
  }
  // `| 0` wraps the sum to int32 (asm.js style, no heap number); only the low 16 bits of the shift matter.
  return (((x + 0x7fff + ((x >> 16) & 1)) | 0) >> 16) & 0xffff;
}

function i32(src: Float32Array): Int32Array {
  return new Int32Array(src.buffer, src.byteOffset, src.length);
}

function checkRange(what: string, srcLength: number, start: number, end: number, dstLength: number, dstOffset: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= srcLength))
    throw new RangeError(`${what}: range [${start}, ${end}) is outside the source of ${srcLength} elements`);
  if (!(Number.isInteger(dstOffset) && dstOffset >= 0 && dstOffset + (end - start) <= dstLength))
    throw new RangeError(
      `${what}: ${end - start} elements at offset ${dstOffset} do not fit the destination of ${dstLength} elements`,
    );
}

/** dst[dstOffset + i] = float16(src[start + i]) for i in [0, end - start). */
export function float32ToFloat16Range(
  src: Float32Array,
  start: number,
  end: number,
  dst: Uint16Array,
  dstOffset = 0,
): void {
  checkRange('float32ToFloat16Range', src.length, start, end, dst.length, dstOffset);
  const bits = i32(src);
  // Weights are almost all normal halves: one unsigned range test selects the inline fast path (the normal
  // case of floatBitsToHalf), everything else takes the full function (~10% less CPU on 25M floats).
  for (let i = start, j = dstOffset; i < end; i++, j++) {
    const x = bits[i];
    const abs = x & 0x7fffffff;
    if (((abs - 0x38800000) >>> 0) < 0x477ff000 - 0x38800000)
      dst[j] = ((x >>> 16) & 0x8000) | ((abs - 0x38000000 + 0xfff + ((abs >>> 13) & 1)) >>> 13);
    else dst[j] = floatBitsToHalf(x);
  }
}

/** dst[dstOffset + i] = float32(src[start + i]) for half bit patterns src, i in [0, end - start). Exact. */
export function float16ToFloat32Range(
  src: Uint16Array,
  start: number,
  end: number,
  dst: Float32Array,
  dstOffset = 0,
): void {
  checkRange('float16ToFloat32Range', src.length, start, end, dst.length, dstOffset);
  const lut = table();
  // Written as bits, not numbers: a float32 store could canonicalise NaN payloads.
  const out = i32(dst);
  for (let i = start, j = dstOffset; i < end; i++, j++) out[j] = lut[src[i]];
}

/** dst[dstOffset + i] = bfloat16(src[start + i]) for i in [0, end - start). */
export function float32ToBfloat16Range(
  src: Float32Array,
  start: number,
  end: number,
  dst: Uint16Array,
  dstOffset = 0,
): void {
  checkRange('float32ToBfloat16Range', src.length, start, end, dst.length, dstOffset);
  const bits = i32(src);
  // Round every element branch-free (right for all but NaN) and note whether any exponent is all ones; only
  // then fix NaNs in a second pass. A per-element NaN branch took ~1.3× the CPU time on 25M floats.
  let special = 0;
  for (let i = start, j = dstOffset; i < end; i++, j++) {
    const x = bits[i];
    special |= (((x >>> 23) & 0xff) + 1) >> 8;
    dst[j] = ((x + 0x7fff + ((x >> 16) & 1)) | 0) >> 16;
  }
  if (special !== 0)
    for (let i = start, j = dstOffset; i < end; i++, j++) if ((bits[i] & 0x7fffffff) > 0x7f800000) dst[j] = floatBitsToBfloat(bits[i]);
}

/** dst[dstOffset + i] = float32(src[start + i]) for bfloat16 bit patterns src. Exact (a shift). */
export function bfloat16ToFloat32Range(
  src: Uint16Array,
  start: number,
  end: number,
  dst: Float32Array,
  dstOffset = 0,
): void {
  checkRange('bfloat16ToFloat32Range', src.length, start, end, dst.length, dstOffset);
  const out = i32(dst);
  for (let i = start, j = dstOffset; i < end; i++, j++) out[j] = src[i] << 16;
}

/** The whole of `src` into `dst` (which must be at least as long). */
export function float32ToFloat16(src: Float32Array, dst: Uint16Array): void {
  float32ToFloat16Range(src, 0, src.length, dst, 0);
}

/** The whole of `src` into `dst` (which must be at least as long). */
export function float16ToFloat32(src: Uint16Array, dst: Float32Array): void {
  float16ToFloat32Range(src, 0, src.length, dst, 0);
}

/** The whole of `src` into `dst` (which must be at least as long). */
export function float32ToBfloat16(src: Float32Array, dst: Uint16Array): void {
  float32ToBfloat16Range(src, 0, src.length, dst, 0);
}

/** The whole of `src` into `dst` (which must be at least as long). */
export function bfloat16ToFloat32(src: Uint16Array, dst: Float32Array): void {
  bfloat16ToFloat32Range(src, 0, src.length, dst, 0);
}

let bfloatTable: Int32Array | undefined;

/**
 * The float32 value of every 16-bit code of `dtype` (65536 entries, 256 KiB, built once and shared: do not
 * write to it). Lets a kernel decode inside its own loop, e.g. the coordinator's fused decode-and-average
 * (`meanCodesRangeInto` in @hwa/core), instead of decoding each input into a scratch vector first.
 */
export function decodeTable(dtype: 'float16' | 'bfloat16'): Float32Array {
  if (dtype === 'float16') return new Float32Array(table().buffer);
  if (bfloatTable === undefined) {
    bfloatTable = new Int32Array(65536);
    for (let h = 0; h < 65536; h++) bfloatTable[h] = h << 16;
  }
  return new Float32Array(bfloatTable.buffer);
}

// Scalar forms, for tests and one-off values; the loops above are what the hot path uses.
const scalarF32 = new Float32Array(1);
const scalarI32 = new Int32Array(scalarF32.buffer);

/** The float16 bit pattern nearest to `x` (after rounding `x` to float32). */
export function toFloat16Bits(x: number): number {
  scalarF32[0] = x;
  return floatBitsToHalf(scalarI32[0]);
}

/** The value of a float16 bit pattern. */
export function fromFloat16Bits(h: number): number {
  scalarI32[0] = table()[h & 0xffff];
  return scalarF32[0];
}

/** The bfloat16 bit pattern nearest to `x` (after rounding `x` to float32). */
export function toBfloat16Bits(x: number): number {
  scalarF32[0] = x;
  return floatBitsToBfloat(scalarI32[0]);
}

/** The value of a bfloat16 bit pattern. */
export function fromBfloat16Bits(h: number): number {
  scalarI32[0] = (h & 0xffff) << 16;
  return scalarF32[0];
}

/**
 * Encodes src[start, end) as `dtype` into `dst`'s bytes from byte 0 (float32: a byte copy). `dst` must be
 * aligned for the element size (byteOffset % 2 == 0 for halves, any for float32).
 */
export function encodeRange(src: Float32Array, start: number, end: number, dtype: WireDtype, dst: Uint8Array): void {
  const count = end - start;
  if (dtype === 'float32') {
    checkRange('encodeRange', src.length, start, end, dst.byteLength >>> 2, 0);
    dst.set(new Uint8Array(src.buffer, src.byteOffset + start * 4, count * 4));
    return;
  }
  const halves = new Uint16Array(dst.buffer, dst.byteOffset, dst.byteLength >>> 1);
  if (dtype === 'float16') float32ToFloat16Range(src, start, end, halves, 0);
  else float32ToBfloat16Range(src, start, end, halves, 0);
}

/**
 * Decodes `count` elements of `dtype` from `src`'s bytes into dst[dstOffset, dstOffset + count). `src` may have
 * any byteOffset: float32 is a byte copy; an unaligned half buffer is copied once to align it (zeromq frames
 * arrive at byteOffset 0, so that path is for hand-made buffers only).
 */
export function decodeRange(src: Uint8Array, count: number, dtype: WireDtype, dst: Float32Array, dstOffset: number): void {
  const bytes = count * bytesPerElement(dtype);
  if (bytes > src.byteLength) throw new RangeError(`decodeRange: ${count} ${dtype} need ${bytes} bytes, got ${src.byteLength}`);
  checkRange('decodeRange', count, 0, count, dst.length, dstOffset);
  if (dtype === 'float32') {
    new Uint8Array(dst.buffer, dst.byteOffset + dstOffset * 4, bytes).set(src.subarray(0, bytes));
    return;
  }
  // Uint8Array's slice copies (Buffer's would not).
  const aligned = src.byteOffset % 2 === 0 ? src : Uint8Array.prototype.slice.call(src, 0, bytes);
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  if (dtype === 'float16') float16ToFloat32Range(halves, 0, count, dst, dstOffset);
  else bfloat16ToFloat32Range(halves, 0, count, dst, dstOffset);
}
