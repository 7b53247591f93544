/**
 * The WebAssembly SIMD averaging kernel (StagedMean, packages/core/src/wasm/mean.wat) equals the JS kernel
 * meanRangeInto bit for bit — for every K it specialises and beyond, every length around the vector width and
 * the block size, any subrange, and the awkward values (signed zeros, subnormals, overflowing sums, ±Inf,
 * NaN) — and the committed module bytes are exactly what mean.wat assembles to.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, StagedMean, meanRangeInto, mulberry32, wasmSimdAvailable } from '@hwa/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
// @ts-expect-error -- a plain .mjs script without type declarations
import { assembleMean, meanWasmSource } from '../../scripts/build-wasm.mjs';

const BLOCK = 64;

/** Zeros of both signs, float32 subnormals, the largest finite floats, ±Inf, NaN, and their neighbours. */
const SPECIAL = [
  0, -0, 1e-45, -1.4e-45, 1e-40, -1e-40, 1.1754942e-38, -1.1754944e-38, 2e-38, -1.9e-38, 1, 1.0000001, 3.4e38,
  -3.4e38, 3.4028235e38, Infinity, -Infinity, NaN,
].map(Math.fround);

/**
 * Random float32s over the whole exponent range (subnormals and huge values included, so sums round in every
 * way), with a special value in about one element of four.
 */
function vector(n: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    v[i] =
      random() < 0.25
        ? SPECIAL[Math.floor(random() * SPECIAL.length)]
        : (random() * 2 - 1) * 2 ** Math.floor(random() * 280 - 150);
  }
  return v;
}

const vectors = (k: number, n: number, seed: number) => Array.from({ length: k }, (_, j) => vector(n, seed * 31 + j));

/** Every element of `actual` has the bits of `expected` (any NaN matches any NaN); lists the first few that differ. */
function expectSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const differ: string[] = [];
  for (let i = 0; i < actual.length && differ.length < 5; i++) {
    const bothNaN = Number.isNaN(actual[i]) && Number.isNaN(expected[i]);
    if (a[i] !== e[i] && !bothNaN) differ.push(`[${i}] ${actual[i]} (0x${a[i].toString(16)}) ≠ ${expected[i]}`);
  }
  expect(differ, what).toEqual([]);
}

/** What meanRangeInto leaves in a copy of `out`. */
function reference(out: Float32Array, inputs: Float32Array[], start?: number, end?: number): Float32Array {
  return meanRangeInto(out.slice(), inputs, start, end);
}

it('runs the wasm kernel on this runtime (so the tests below test it, not the fallback)', () => {
  expect(wasmSimdAvailable).toBe(true);
  expect(new StagedMean(2, BLOCK).simd).toBe(true);
});

describe.each([1, 2, 3, 4, 5, 6])('StagedMean.meanRangeInto with K=%i', (k) => {
  it.each([0, 1, 3, 4, 5, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5])(
    'equals meanRangeInto bit for bit over %i floats',
    (n) => {
      const inputs = vectors(k, n, n + 1);
      const out = new Float32Array(n).fill(7);
      new StagedMean(k, BLOCK).meanRangeInto(out, inputs);
      expectSameBits(out, reference(new Float32Array(n).fill(7), inputs), `K=${k} n=${n}`);
    },
  );

  it('equals it on random subranges and leaves the rest of out alone', () => {
    const n = 3 * BLOCK + 5;
    const inputs = vectors(k, n, 99);
    const staged = new StagedMean(k, BLOCK);
    const random = mulberry32(k);
    for (let trial = 0; trial < 25; trial++) {
      const a = Math.floor(random() * (n + 1));
      const b = Math.floor(random() * (n + 1));
      const [start, end] = a <= b ? [a, b] : [b, a];
      const out = vector(n, 1000 + trial);
      const expected = reference(out, inputs, start, end);
      staged.meanRangeInto(out, inputs, start, end);
      expectSameBits(out, expected, `K=${k} [${start}, ${end})`);
    }
  });

  it('equals it with the default block size over two blocks and a tail', () => {
    const staged = new StagedMean(k);
    expect(staged.blockFloats).toBe(65536);
    const n = 2 * staged.blockFloats + 3;
    const inputs = vectors(k, n, 7);
    const out = new Float32Array(n);
    staged.meanRangeInto(out, inputs);
    expectSameBits(out, reference(out, inputs), `K=${k} default block`);
  });

  it('may write into its first input (out aliases inputs[0])', () => {
    const n = 2 * BLOCK + 3;
    const inputs = vectors(k, n, 5);
    const expected = reference(new Float32Array(n), inputs);
    new StagedMean(k, BLOCK).meanRangeInto(inputs[0], inputs);
    expectSameBits(inputs[0], expected, `K=${k} aliased`);
  });
});

describe('special values', () => {
  /** K vectors that together hold every K-tuple of SPECIAL once. */
  function allTuples(k: number): Float32Array[] {
    const n = SPECIAL.length ** k;
    return Array.from({ length: k }, (_, j) =>
      Float32Array.from({ length: n }, (_, i) => SPECIAL[Math.floor(i / SPECIAL.length ** j) % SPECIAL.length]),
    );
  }

  it.each([2, 3, 4])('every %i-tuple of special values averages like meanRangeInto', (k) => {
    const inputs = allTuples(k);
    const out = new Float32Array(inputs[0].length);
    new StagedMean(k, BLOCK).meanRangeInto(out, inputs);
    expectSameBits(out, reference(out, inputs), `K=${k}`);
  });

  /**
   * n rows of K float32s whose float64 sum s sits a float64 ulp or two beside K times a float32 tie, chosen so
   * that fround(s / K) ≠ fround(s · (1/K)): a kernel multiplying by a reciprocal fails on every row, where random
   * data catches it about once in 2²⁵ elements. Row: [fround(Kt), Kt − fround(Kt), d·ulp(s), 0, …], t a tie.
   */
  function reciprocalTraps(k: number, n: number, seed: number): Float32Array[] {
    const random = mulberry32(seed);
    const inputs = Array.from({ length: k }, () => new Float32Array(n));
    let found = 0;
    for (let tries = 0; found < n && tries < 100 * n; tries++) {
      const e = Math.floor(random() * 120) - 60;
      const tie = Math.fround(1 + random()) * 2 ** e + 2 ** (e - 24); // halfway between two float32s
      const target = k * tie; // exact in float64
      const ulp = 2 ** (Math.floor(Math.log2(target)) - 52);
      const row = [Math.fround(target), target - Math.fround(target), (Math.floor(random() * 4) - 2 || 2) * ulp];
      while (row.length < k) row.push(0);
      if (row.some((x) => Math.fround(x) !== x)) continue;
      const sum = row.reduce((acc, x) => acc + x);
      if (Math.fround(sum / k) === Math.fround(sum * (1 / k))) continue;
      row.forEach((x, j) => (inputs[j][found] = x));
      found++;
    }
    expect(found, 'reciprocal traps found').toBe(n);
    return inputs;
  }

  it.each([3, 5, 6, 7])('divides by K=%i (rows where a product by 1/K rounds otherwise)', (k) => {
    const inputs = reciprocalTraps(k, 200, k);
    const out = new Float32Array(200);
    new StagedMean(k, BLOCK).meanRangeInto(out, inputs);
    expectSameBits(out, reference(out, inputs), `K=${k} reciprocal traps`);
  });

  it('keeps what float64 keeps: finite means of overflowing sums, subnormal means, −0, ties to even', () => {
    const a = Float32Array.of(3.4e38, -3.4e38, 1.1754942e-38, -0, 1, 1e-45, Infinity);
    const b = Float32Array.of(3.4e38, -3.4e38, -1.1754940e-38, -0, 1.0000001, 1e-45, -Infinity);
    const out = new Float32Array(a.length);
    new StagedMean(2, BLOCK).meanRangeInto(out, [a, b]);
    expect(out[0]).toBe(Math.fround(3.4e38));
    expect(out[1]).toBe(Math.fround(-3.4e38));
    expect(out[2]).toBeGreaterThan(0);
    expect(out[2]).toBeLessThan(1.1754944e-38); // subnormal
    expect(Object.is(out[3], -0)).toBe(true);
    expect(out[4]).toBe(1); // 1 + 2⁻²⁴ is a tie; even is 1
    expect(out[5]).toBe(Math.fround(1e-45));
    expect(out[6]).toBeNaN();
    expectSameBits(out, reference(out, [a, b]), 'named cases');
  });
});

describe('StagedMean.meanOfSlots', () => {
  it.each([2, 3, 4, 5])('averages data written through slot(j) and slotBytes(j) with K=%i', (k) => {
    const staged = new StagedMean(k, BLOCK);
    const count = 37; // not a multiple of 4, smaller than the block
    const inputs = vectors(k, count, 3);
    inputs.forEach((v, j) => {
      if (j % 2 === 0) staged.slot(j).set(v);
      else Buffer.from(v.buffer, v.byteOffset, v.byteLength).copy(staged.slotBytes(j));
    });
    const out = vector(50, 4);
    const expected = out.slice();
    expected.set(meanRangeInto(new Float32Array(count), inputs), 5);
    staged.meanOfSlots(out, 5, count);
    expectSameBits(out, expected, `K=${k} count=${count} at 5`);
  });

  it('sees bytes written into slotBytes(j) through slot(j): the two are one memory', () => {
    const staged = new StagedMean(3, BLOCK);
    staged.slotBytes(1).writeFloatLE(2.5, 8);
    expect(staged.slot(1)[2]).toBe(2.5);
    expect(staged.slotBytes(2).byteLength).toBe(BLOCK * 4);
    expect(staged.slot(2).byteOffset % 16).toBe(0);
  });

  it('averages a whole block (count = blockFloats)', () => {
    const staged = new StagedMean(3, BLOCK);
    const inputs = vectors(3, BLOCK, 8);
    inputs.forEach((v, j) => staged.slot(j).set(v));
    const out = new Float32Array(BLOCK);
    staged.meanOfSlots(out, 0, BLOCK);
    expectSameBits(out, reference(out, inputs), 'whole block');
  });
});

describe('the JS fallback (no WebAssembly)', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.resetModules();
  });

  it('gives the same results through meanRangeInto', async () => {
    vi.stubGlobal('WebAssembly', undefined);
    vi.resetModules();
    const fallback = await import('../../packages/core/src/staged-mean.js');
    expect(fallback.wasmSimdAvailable).toBe(false);
    const staged = new fallback.StagedMean(3, BLOCK);
    expect(staged.simd).toBe(false);
    const inputs = vectors(3, 2 * BLOCK + 1, 11);
    const out = new Float32Array(inputs[0].length);
    staged.meanRangeInto(out, inputs);
    expectSameBits(out, reference(out, inputs), 'fallback meanRangeInto');
    inputs.forEach((v, j) => staged.slot(j).set(v.subarray(0, 9)));
    const some = new Float32Array(9);
    staged.meanOfSlots(some, 0, 9);
    expectSameBits(some, out.subarray(0, 9), 'fallback meanOfSlots');
  });
});

// After editing mean.wat, `npm run build:wasm` regenerates mean-wasm.ts.
it('mean-wasm.ts holds exactly what mean.wat assembles to', async () => {
  const committed = await readFile(new URL('../../packages/core/src/wasm/mean-wasm.ts', import.meta.url), 'utf8');
  expect(committed).toBe(meanWasmSource(await assembleMean()));
});

describe('bad arguments', () => {
  const two = () => new StagedMean(2, BLOCK);
  it.each([
    ['workers 0', () => new StagedMean(0), /workers.*got 0/],
    ['workers 2.5', () => new StagedMean(2.5), /workers.*got 2\.5/],
    ['blockFloats 0', () => new StagedMean(2, 0), /blockFloats.*got 0/],
    ['a memory over 2 GiB', () => new StagedMean(1000, 1 << 20), /blockFloats=1048576/],
    ['slot 2 of 2', () => two().slot(2), /j=2/],
    ['count > blockFloats', () => two().meanOfSlots(new Float32Array(100), 0, BLOCK + 1), /got 65/],
    ['count 1.5', () => two().meanOfSlots(new Float32Array(100), 0, 1.5), /got 1\.5/],
    ['output too short', () => two().meanOfSlots(new Float32Array(10), 5, 6), /outOffset=5.*count=6.*10 floats/],
    [
      '3 inputs for 2 workers',
      () => two().meanRangeInto(new Float32Array(4), vectors(3, 4, 1)),
      /inputs\.length=3.*workers=2/,
    ],
    [
      'an input shorter than end',
      () => two().meanRangeInto(new Float32Array(8), [new Float32Array(8), new Float32Array(6)], 0, 8),
      /input 1 has 6 floats.*end=8/,
    ],
    ['end past out', () => two().meanRangeInto(new Float32Array(4), vectors(2, 8, 1), 0, 5), /end=5/],
    ['start after end', () => two().meanRangeInto(new Float32Array(4), vectors(2, 4, 1), 3, 2), /start=3/],
  ])('%s is a ConfigError naming the value', (_what, call, message) => {
    expect(call).toThrow(ConfigError);
    expect(call).toThrow(message);
  });
});
