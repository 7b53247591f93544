import { mulberry32 } from '@hwa/core';
import {
  bfloat16ToFloat32,
  bfloat16ToFloat32Range,
  bytesPerElement,
  decodeRange,
  encodeRange,
  float16ToFloat32,
  float16ToFloat32Range,
  float32ToBfloat16,
  float32ToBfloat16Range,
  float32ToFloat16,
  float32ToFloat16Range,
  fromBfloat16Bits,
  fromFloat16Bits,
  toBfloat16Bits,
  toFloat16Bits,
} from '@hwa/protocol';
import { describe, expect, it } from 'vitest';

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
const bitsOf = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);
const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];
const isNaNHalf = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/**
 * An independent oracle: the float16 nearest to a float32 value, found by binary search over all finite
 * halves sorted by value (ties to the even bit pattern), with IEEE overflow: |x| ≥ 65520 → Inf.
 */
const positiveHalves = Array.from({ length: 0x7c00 }, (_, h) => h); // 0 … 65504, increasing with the pattern
function oracleHalf(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = positiveHalves.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fromFloat16Bits(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - fromFloat16Bits(lo);
  const dh = fromFloat16Bits(hi) - a;
  const pick = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | pick;
}

/** Oracle for bfloat16: the two candidates around x are its truncation and the next pattern; compare in float64. */
function oracleBf16(bits: number): number {
  const x = f32(bits);
  const down = bits >>> 16;
  const a = fromBfloat16Bits(down);
  const b = fromBfloat16Bits(down + 1); // next magnitude (sign bit shared); may be Inf
  const da = Math.abs(x - a);
  const db = Math.abs(b - x);
  if (!Number.isFinite(b)) {
    // IEEE: round to Inf when x ≥ max + half an ulp of max, i.e. the tie goes up (max's last bit is odd).
    const half = Math.abs(a - fromBfloat16Bits(down - 1)) / 2;
    return Math.abs(x - a) >= half ? down + 1 : down;
  }
  return da < db ? down : db < da ? down + 1 : down % 2 === 0 ? down : down + 1;
}

describe('float16', () => {
  it('decodes known patterns', () => {
    const cases: [number, number][] = [
      [0x0000, 0],
      [0x3c00, 1],
      [0xc000, -2],
      [0x7bff, 65504],
      [0x0400, 2 ** -14],
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x3555, 0.333251953125],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [h, v] of cases) expect(fromFloat16Bits(h)).toBe(v);
    expect(Object.is(fromFloat16Bits(0x8000), -0)).toBe(true);
    expect(fromFloat16Bits(0x7e00)).toBeNaN();
  });

  it('round-trips all 65536 patterns half → float32 → half bit-exactly (NaN payloads kept)', () => {
    const wide = new Float32Array(65536);
    const back = new Uint16Array(65536);
    float16ToFloat32(ALL16, wide);
    float32ToFloat16(wide, back);
    let nans = 0;
    for (let h = 0; h < 65536; h++) {
      if (isNaNHalf(h)) {
        nans++;
        expect(Number.isNaN(wide[h])).toBe(true);
        expect(isNaNHalf(back[h])).toBe(true);
      }
      if (back[h] !== h) expect.fail(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
      if (toFloat16Bits(fromFloat16Bits(h)) !== h && !isNaNHalf(h)) expect.fail(`scalar path differs at 0x${h.toString(16)}`);
    }
    expect(nans).toBe(2 * 1023);
  });

  it('rounds ties to even, in normal and subnormal range', () => {
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway 1 ↔ 1+2^-10: to even (1)
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway 1+2^-10 ↔ 1+2^-9: to even (…02)
    expect(toFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie: up
    expect(toFloat16Bits(-(1 + 2 ** -11))).toBe(0xbc00);
    expect(toFloat16Bits(2 ** -25)).toBe(0x0000); // halfway 0 ↔ 2^-24: to even (0)
    expect(toFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // halfway 1 ↔ 2 units: to 2
    expect(toFloat16Bits(5 * 2 ** -25)).toBe(0x0002); // halfway 2 ↔ 3 units: to 2
    expect(toFloat16Bits(2 ** -25 * 1.0000001)).toBe(0x0001);
    expect(toFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // largest subnormal + half unit → smallest normal
    expect(toFloat16Bits(2047)).toBe(0x67ff);
    expect(toFloat16Bits(2049)).toBe(0x6800); // 2049 is a tie between 2048 (even) and 2050
  });

  it('overflows to ±Inf at 65520 and above, keeps 65504 and everything below the tie', () => {
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(65519.99)).toBe(0x7bff);
    expect(toFloat16Bits(65520)).toBe(0x7c00);
    expect(toFloat16Bits(1e10)).toBe(0x7c00);
    expect(toFloat16Bits(-1e10)).toBe(0xfc00);
    expect(toFloat16Bits(3.4e38)).toBe(0x7c00);
    expect(toFloat16Bits(Infinity)).toBe(0x7c00);
    expect(toFloat16Bits(-Infinity)).toBe(0xfc00);
  });

  it('underflows to signed zero below 2^-25 and keeps NaN a NaN', () => {
    expect(toFloat16Bits(2 ** -26)).toBe(0x0000);
    expect(toFloat16Bits(-(2 ** -26))).toBe(0x8000);
    expect(toFloat16Bits(1e-30)).toBe(0x0000);
    expect(toFloat16Bits(-0)).toBe(0x8000);
    expect(toFloat16Bits(f32(0x00000001))).toBe(0x0000); // float32 subnormal
    for (const nanBits of [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0xff800001]) {
      const src = new Float32Array(new Uint32Array([nanBits]).buffer);
      const out = new Uint16Array(1);
      float32ToFloat16(src, out);
      expect(isNaNHalf(out[0])).toBe(true);
      expect(out[0] & 0x8000).toBe(nanBits >= 0x80000000 ? 0x8000 : 0);
    }
  });

  it('agrees with an independent nearest-value oracle on 200k random and edge float32 patterns', () => {
    const random = mulberry32(7);
    const n = 200_000;
    const src = new Float32Array(n);
    const bits = bitsOf(src);
    for (let i = 0; i < n; i++) {
      // Exponents concentrated where half has its interesting range (subnormal … overflow), both signs.
      const exp = 100 + Math.floor(random() * 50);
      bits[i] = ((random() < 0.5 ? 0x80000000 : 0) | (exp << 23) | Math.floor(random() * 0x800000)) >>> 0;
    }
    // Exact ties and neighbours of every half boundary in one binade of normals and the subnormals.
    for (let k = 0; k < 1000; k++) bits[k] = (0x38000000 + (k << 12)) >>> 0;
    for (let k = 0; k < 1000; k++) bits[1000 + k] = (0x33000000 + k * 0x1000) >>> 0;
    const out = new Uint16Array(n);
    float32ToFloat16(src, out);
    for (let i = 0; i < n; i++) {
      const want = oracleHalf(src[i]);
      if (out[i] !== want) expect.fail(`0x${bits[i].toString(16)} (${src[i]}): got 0x${out[i].toString(16)}, oracle 0x${want.toString(16)}`);
    }
  });

  it('keeps relative error ≤ 2^-11 for every value in the normal range', () => {
    const random = mulberry32(11);
    const n = 100_000;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) src[i] = (random() < 0.5 ? -1 : 1) * 2 ** (-14 + random() * 29.9); // [2^-14, 65504)
    const h = new Uint16Array(n);
    const back = new Float32Array(n);
    float32ToFloat16(src, h);
    float16ToFloat32(h, back);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(back[i] - src[i]) / Math.abs(src[i]));
    expect(worst).toBeLessThanOrEqual(2 ** -11);
    expect(worst).toBeGreaterThan(2 ** -12); // the bound is tight, not vacuous
  });
});

describe('bfloat16', () => {
  it('round-trips all 65536 patterns bfloat16 → float32 → bfloat16 bit-exactly (NaN payloads kept)', () => {
    const wide = new Float32Array(65536);
    const back = new Uint16Array(65536);
    bfloat16ToFloat32(ALL16, wide);
    float32ToBfloat16(wide, back);
    for (let h = 0; h < 65536; h++) {
      expect(bitsOf(wide.subarray(h, h + 1))[0]).toBe((h << 16) >>> 0);
      if (back[h] !== h) expect.fail(`0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
      if (isNaNBf16(h)) expect(Number.isNaN(fromBfloat16Bits(h))).toBe(true);
    }
  });

  it('rounds ties to even on the upper 16 bits', () => {
    expect(toBfloat16Bits(1)).toBe(0x3f80);
    expect(toBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // halfway 1 ↔ 1+2^-7: to even (1)
    expect(toBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // halfway …81 ↔ …82: to even
    expect(toBfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(toBfloat16Bits(-(1 + 3 * 2 ** -8))).toBe(0xbf82);
    expect(toBfloat16Bits(f32(0x3f80ffff))).toBe(0x3f81); // carries within the mantissa
    expect(toBfloat16Bits(f32(0x3fffffff))).toBe(0x4000); // carries into the exponent
  });

  it('overflows to Inf past the largest bfloat16 like IEEE, and keeps NaN a NaN', () => {
    expect(toBfloat16Bits(f32(0x7f7f7fff))).toBe(0x7f7f);
    expect(toBfloat16Bits(f32(0x7f7f8000))).toBe(0x7f80); // tie with an odd max: up to Inf
    expect(toBfloat16Bits(f32(0x7f7fffff))).toBe(0x7f80);
    expect(toBfloat16Bits(f32(0xff7fffff))).toBe(0xff80);
    expect(toBfloat16Bits(Infinity)).toBe(0x7f80);
    expect(toBfloat16Bits(-Infinity)).toBe(0xff80);
    for (const nanBits of [0x7fc00000, 0x7f800001, 0x7fffffff, 0xffffffff, 0xff800001]) {
      const h = toBfloat16Bits(f32(nanBits));
      expect(isNaNBf16(h)).toBe(true);
      expect(h & 0x8000).toBe(nanBits >= 0x80000000 ? 0x8000 : 0);
    }
    expect(toBfloat16Bits(f32(0x00000001))).toBe(0x0000); // subnormals round like any other value
    expect(toBfloat16Bits(f32(0x00008000))).toBe(0x0000); // tie, to even
    expect(toBfloat16Bits(f32(0x00018000))).toBe(0x0002);
    expect(toBfloat16Bits(-0)).toBe(0x8000);
  });

  it('agrees with a float64 nearest-value oracle on 200k random float32 patterns', () => {
    const random = mulberry32(13);
    const n = 200_000;
    const src = new Float32Array(n);
    const bits = bitsOf(src);
    for (let i = 0; i < n; i++) {
      let b = Math.floor(random() * 2 ** 32) >>> 0;
      if (i % 4 === 0) b = ((b & 0xffff0000) | 0x8000) >>> 0; // exact ties
      if ((b & 0x7f800000) === 0x7f800000) b &= 0xbfffffff; // NaN/Inf: covered above
      bits[i] = b;
    }
    const out = new Uint16Array(n);
    float32ToBfloat16(src, out);
    for (let i = 0; i < n; i++) {
      const want = oracleBf16(bits[i]);
      if (out[i] !== want) expect.fail(`0x${bits[i].toString(16)}: got 0x${out[i].toString(16)}, oracle 0x${want.toString(16)}`);
    }
  });

  it('keeps relative error ≤ 2^-8 for normal values', () => {
    const random = mulberry32(17);
    const n = 100_000;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) src[i] = (random() < 0.5 ? -1 : 1) * 2 ** (-120 + random() * 240);
    const h = new Uint16Array(n);
    const back = new Float32Array(n);
    float32ToBfloat16(src, h);
    bfloat16ToFloat32(h, back);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(back[i] - src[i]) / Math.abs(src[i]));
    expect(worst).toBeLessThanOrEqual(2 ** -8);
    expect(worst).toBeGreaterThan(2 ** -9);
  });
});

describe('range conversions', () => {
  const random = mulberry32(23);
  const src = Float32Array.from({ length: 1000 }, () => (random() * 2 - 1) * 100);

  it.each([
    ['float16', float32ToFloat16, float32ToFloat16Range, float16ToFloat32Range],
    ['bfloat16', float32ToBfloat16, float32ToBfloat16Range, bfloat16ToFloat32Range],
  ] as const)('%s: chunks converted separately equal the whole vector converted at once', (_, whole, range, back) => {
    const all = new Uint16Array(src.length);
    whole(src, all);
    const pieces = new Uint16Array(src.length);
    for (const [start, end] of [[0, 333], [333, 334], [334, 1000]] as const) {
      const chunk = new Uint16Array(end - start + 2);
      range(src, start, end, chunk, 1);
      pieces.set(chunk.subarray(1, 1 + end - start), start);
    }
    expect(pieces).toEqual(all);
    const out = new Float32Array(src.length + 10);
    back(all, 100, 300, out, 5);
    expect(out.subarray(0, 5)).toEqual(new Float32Array(5));
    const direct = new Float32Array(src.length);
    (back === float16ToFloat32Range ? float16ToFloat32 : bfloat16ToFloat32)(all, direct);
    expect(out.subarray(5, 205)).toEqual(direct.subarray(100, 300));
  });

  it('rejects ranges outside the source or destination', () => {
    const dst = new Uint16Array(10);
    expect(() => float32ToFloat16Range(src, 5, 3, dst)).toThrow(RangeError);
    expect(() => float32ToFloat16Range(src, 0, 1001, new Uint16Array(2000))).toThrow(RangeError);
    expect(() => float32ToFloat16Range(src, 0, 11, dst)).toThrow(RangeError);
    expect(() => float32ToBfloat16Range(src, 0, 10, dst, 1)).toThrow(RangeError);
    expect(() => float16ToFloat32Range(dst, 0, 10, new Float32Array(9))).toThrow(RangeError);
  });

  it.each(['float32', 'float16', 'bfloat16'] as const)('encodeRange/decodeRange round-trip %s, aligned or not', (dtype) => {
    const size = bytesPerElement(dtype);
    const bytes = new Uint8Array(200 * size + 1);
    const aligned = bytes.subarray(0, 200 * size);
    encodeRange(src, 100, 300, dtype, aligned);
    const a = new Float32Array(1000);
    decodeRange(aligned, 200, dtype, a, 100);
    const unaligned = bytes.subarray(1); // overlaps `aligned`: shift the encoded bytes by one
    unaligned.set(aligned.slice());
    const b = new Float32Array(1000);
    decodeRange(unaligned, 200, dtype, b, 100);
    expect(b).toEqual(a);
    const tol = dtype === 'float32' ? 0 : dtype === 'float16' ? 2 ** -11 : 2 ** -8;
    for (let i = 100; i < 300; i++) expect(Math.abs(a[i] - src[i])).toBeLessThanOrEqual(Math.abs(src[i]) * tol);
  });
});
