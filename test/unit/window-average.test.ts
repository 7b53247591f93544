import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  CumulativeAverage,
  ExponentialAverage,
  SlidingWindowAverage,
  meanInto,
  mixSeed,
  mulberry32,
} from '@hwa/core';

function randomVector(n: number, random: () => number, scale = 1): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (random() * 2 - 1) * scale;
  return v;
}

/** The naive definition: mean of the last I vectors, summed in float64 from scratch. */
function naiveWindow(history: Float32Array[], capacity: number): Float32Array {
  const last = history.slice(-capacity);
  const out = new Float32Array(history[0].length);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (const v of last) s += v[i];
    out[i] = s / last.length;
  }
  return out;
}

describe('online mean', () => {
  it('equals the naive float64 mean for K = 1..7', () => {
    const random = mulberry32(1);
    for (let k = 1; k <= 7; k++) {
      const inputs = Array.from({ length: k }, () => randomVector(101, random, 5));
      const out = meanInto(new Float32Array(101), inputs);
      for (let i = 0; i < 101; i++) {
        let s = 0;
        for (const v of inputs) s += v[i];
        expect(out[i]).toBe(Math.fround(s / k));
      }
    }
  });

  it('names the input whose length differs', () => {
    expect(() => meanInto(new Float32Array(3), [new Float32Array(3), new Float32Array(2)])).toThrow(
      /input 1 has 2 elements, expected 3/,
    );
    expect(() => meanInto(new Float32Array(3), [])).toThrow(ConfigError);
  });
});

describe('sliding window average', () => {
  it('matches the naive window over random K, I, N and many more pushes than I', () => {
    for (let trial = 0; trial < 40; trial++) {
      const random = mulberry32(mixSeed(trial, 7));
      const capacity = 1 + Math.floor(random() * 9);
      const size = Math.floor(random() * 50);
      const pushes = capacity * (2 + Math.floor(random() * 8)) + Math.floor(random() * capacity);
      const window = new SlidingWindowAverage(size, capacity);
      const history: Float32Array[] = [];
      const out = new Float32Array(size);
      for (let p = 0; p < pushes; p++) {
        const v = randomVector(size, random, 10 ** Math.floor(random() * 4));
        history.push(v);
        window.push(v);
        expect(window.count).toBe(Math.min(p + 1, capacity));
        if (size > 0) {
          const want = naiveWindow(history, capacity);
          window.averageInto(out);
          // Exactly the naive float64 mean (oldest first), not just close to it.
          for (let i = 0; i < size; i++) if (!Object.is(out[i], want[i])) expect.fail(`push ${p}, element ${i}: ${out[i]} ≠ ${want[i]}`);
        }
      }
    }
  });

  it('does not drift over 10,000 pushes of large, cancelling values', () => {
    const window = new SlidingWindowAverage(4, 3);
    const random = mulberry32(3);
    const history: Float32Array[] = [];
    for (let p = 0; p < 10_000; p++) {
      const v = randomVector(4, random, 1e6);
      history.push(v);
      window.push(v);
    }
    const want = naiveWindow(history, 3);
    const got = window.averageInto(new Float32Array(4));
    for (let i = 0; i < 4; i++) expect(got[i]).toBe(want[i]);
  });

  it('copies pushed vectors, so the caller may reuse its buffer', () => {
    const window = new SlidingWindowAverage(2, 2);
    const buf = Float32Array.of(1, 2);
    window.push(buf);
    buf.set([3, 4]);
    window.push(buf);
    expect(Array.from(window.averageInto(new Float32Array(2)))).toEqual([2, 3]);
  });

  it('rejects bad arguments with the argument named', () => {
    expect(() => new SlidingWindowAverage(3, 0)).toThrow(/window length must be a whole number ≥ 1, got 0/);
    expect(() => new SlidingWindowAverage(-1, 2)).toThrow(/vector size/);
    expect(() => new SlidingWindowAverage(3, 2).averageInto(new Float32Array(3))).toThrow(/no vector pushed yet/);
    expect(() => new SlidingWindowAverage(3, 2).push(new Float32Array(4))).toThrow(/4 elements, expected 3/);
  });
});

describe('cumulative and exponential averages', () => {
  it('cumulative average is the mean of everything pushed', () => {
    const random = mulberry32(5);
    const avg = new CumulativeAverage(8);
    const history: Float32Array[] = [];
    for (let p = 0; p < 57; p++) {
      const v = randomVector(8, random);
      history.push(v);
      avg.push(v);
    }
    const want = naiveWindow(history, history.length);
    const got = avg.averageInto(new Float32Array(8));
    for (let i = 0; i < 8; i++) expect(got[i]).toBeCloseTo(want[i], 6);
  });

  it('EMA follows e = d·e + (1−d)·v from the first vector', () => {
    const ema = new ExponentialAverage(1, 0.5);
    ema.push(Float32Array.of(4));
    ema.push(Float32Array.of(0));
    ema.push(Float32Array.of(2));
    expect(ema.averageInto(new Float32Array(1))[0]).toBe(2); // ((4·.5)·.5 + 1)
    expect(() => new ExponentialAverage(1, 1)).toThrow(/EMA decay must lie in \[0, 1\), got 1/);
  });
});

describe('offline state export and import (checkpoints)', () => {
  const make = {
    window: () => new SlidingWindowAverage(5, 3),
    cumulative: () => new CumulativeAverage(5),
    ema: () => new ExponentialAverage(5, 0.7),
  };
  it.each(Object.keys(make) as (keyof typeof make)[])('%s: a restored averager continues exactly like the original', (kind) => {
    const random = mulberry32(17);
    const original = make[kind]();
    for (let p = 0; p < 4; p++) original.push(randomVector(5, random));
    const state = original.exportState();
    const restored = make[kind]();
    restored.importState(state);
    expect(restored.count).toBe(original.count);
    for (let p = 0; p < 5; p++) {
      const v = randomVector(5, random);
      original.push(v);
      restored.push(v);
      expect(Array.from(restored.averageInto(new Float32Array(5)))).toEqual(Array.from(original.averageInto(new Float32Array(5))));
    }
    // The exported state shares no memory with either averager: importing it again starts from the same point.
    const again = make[kind]();
    again.importState(state);
    const fresh = make[kind]();
    fresh.importState(original.exportState());
    expect(again.count).toBe(state.count);
    expect(Array.from(again.averageInto(new Float32Array(5)))).not.toEqual(Array.from(fresh.averageInto(new Float32Array(5))));
  });

  it('refuses a state of another kind or size, naming both', () => {
    expect(() => new SlidingWindowAverage(5, 3).importState(new CumulativeAverage(5).exportState())).toThrow(/offline state is a cumulative average, this run keeps a window average/);
    const small = new SlidingWindowAverage(4, 3);
    small.push(new Float32Array(4));
    expect(() => new SlidingWindowAverage(5, 3).importState(small.exportState())).toThrow(/vectors of 4 floats, this run's have 5/);
    const long = new SlidingWindowAverage(5, 4);
    for (let p = 0; p < 4; p++) long.push(new Float32Array(5));
    expect(() => new SlidingWindowAverage(5, 3).importState(long.exportState())).toThrow(/holds 4 vectors, the window is 3 long/);
  });
});
