/**
 * Offline weight averaging: averages of one sequence of weight vectors over time. HWA's window (LAWA-like),
 * SWA's cumulative mean and the exponential moving average share one interface so the trainer is the same
 * for every mode. Every update is O(N); sums are taken in float64 so long runs do not drift.
 */
import { ConfigError } from './errors.js';
import { StagedMean } from './staged-mean.js';

export interface OfflineAverager {
  /** Number of elements of each vector. */
  readonly size: number;
  /** How many vectors currently contribute to the average. */
  readonly count: number;
  /** Adds the next vector of the sequence (copied; the caller may reuse its buffer). */
  push(v: Float32Array): void;
  /** Writes the current average into `out` (length `size`); throws if nothing was pushed yet. */
  averageInto(out: Float32Array): Float32Array;
  /** Everything needed to continue exactly where this averager is (for checkpoints); shares no memory. */
  exportState(): OfflineState;
  /** Continues from an exported state of the same kind and size. @throws ConfigError naming the mismatch. */
  importState(state: OfflineState): void;
}

/**
 * The state of an offline averager: the window's vectors oldest first, or SWA's float64 sum, or the EMA's
 * float64 value, with how many vectors went in.
 */
export type OfflineState =
  | { kind: 'window'; count: number; vectors: Float32Array[] }
  /** SWA's float64 sum, or the EMA's float64 value. */
  | { kind: 'cumulative' | 'ema'; count: number; values: Float64Array };

function checkState<K extends OfflineState['kind']>(state: OfflineState, kind: K, size: number): Extract<OfflineState, { kind: K }> {
  if (state.kind !== kind) throw new ConfigError(`offline state is a ${state.kind} average, this run keeps a ${kind} average`);
  const arrays = state.kind === 'window' ? state.vectors : [state.values];
  for (const a of arrays) if (a.length !== size) throw new ConfigError(`offline state holds vectors of ${a.length} floats, this run's have ${size}`);
  return state as Extract<OfflineState, { kind: K }>;
}

/** Imports a float64 state (SWA, EMA) into `into`; returns its count. */
function importFloat64(state: OfflineState, kind: 'cumulative' | 'ema', size: number, into: Float64Array): number {
  const s = checkState(state, kind, size);
  into.set(s.values);
  return s.count;
}

function checkVector(size: number, v: Float32Array, what: string): void {
  if (v.length !== size) throw new ConfigError(`${what}: vector has ${v.length} elements, expected ${size}`);
}

function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < 0) throw new ConfigError(`vector size must be a whole number ≥ 0, got ${size}`);
}

function emptyAverage(what: string): never {
  throw new ConfigError(`${what}: no vector pushed yet, there is no average to read`);
}

function sumToAverage(sum: Float64Array, count: number, out: Float32Array): Float32Array {
  for (let i = 0; i < sum.length; i++) out[i] = sum[i] / count;
  return out;
}

/**
 * The mean of the last `capacity` pushed vectors (HWA's offline window of I). A push only copies the vector
 * into its slot of a ring (one memcpy); the mean is formed when it is read, exactly: the float64 sum of the
 * window oldest first, one division, one rounding to float32 — the arithmetic of meanRangeInto, run by the
 * WebAssembly SIMD kernel (StagedMean). HWA reads θ_HWA only at evaluations (and every round with
 * --restart offline), so a round costs one copy instead of the O(N) float64 updates a running sum needs on
 * every push, and no float64 sum (2N floats) is kept.
 */
export class SlidingWindowAverage implements OfflineAverager {
  readonly size: number;
  private readonly slots: Float32Array[] = [];
  /** Index of the oldest slot once the ring is full. */
  private oldest = 0;
  /** One kernel per window fill level (1..capacity), made on first use. */
  private readonly kernels = new Map<number, StagedMean>();

  constructor(
    size: number,
    /** Window length I: how many of the latest vectors are averaged. */
    readonly capacity: number,
  ) {
    checkSize(size);
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new ConfigError(`window length must be a whole number ≥ 1, got ${capacity}`);
    this.size = size;
  }

  get count(): number {
    return this.slots.length;
  }

  push(v: Float32Array): void {
    checkVector(this.size, v, 'window push');
    if (this.slots.length < this.capacity) {
      this.slots.push(Float32Array.from(v));
    } else {
      this.slots[this.oldest].set(v);
      this.oldest = (this.oldest + 1) % this.capacity;
    }
  }

  exportState(): OfflineState {
    return { kind: 'window', count: this.slots.length, vectors: this.chronological().map((v) => Float32Array.from(v)) };
  }

  importState(state: OfflineState): void {
    const { vectors } = checkState(state, 'window', this.size);
    if (vectors.length > this.capacity) throw new ConfigError(`offline state holds ${vectors.length} vectors, the window is ${this.capacity} long`);
    this.slots.length = 0;
    this.oldest = 0;
    for (const v of vectors) this.push(v);
  }

  /** The window's vectors, oldest first. */
  private chronological(): Float32Array[] {
    const n = this.slots.length;
    return Array.from({ length: n }, (_, j) => this.slots[(this.oldest + j) % n]);
  }

  averageInto(out: Float32Array): Float32Array {
    const n = this.slots.length;
    if (n === 0) emptyAverage('window average');
    checkVector(this.size, out, 'window average');
    const chronological = this.chronological();
    let kernel = this.kernels.get(n);
    if (!kernel) this.kernels.set(n, (kernel = new StagedMean(n)));
    return kernel.meanRangeInto(out, chronological, 0, this.size);
  }
}

/** SWA's running mean of every vector pushed so far. */
export class CumulativeAverage implements OfflineAverager {
  readonly size: number;
  private readonly sum: Float64Array;
  private pushed = 0;

  constructor(size: number) {
    checkSize(size);
    this.size = size;
    this.sum = new Float64Array(size);
  }

  get count(): number {
    return this.pushed;
  }

  push(v: Float32Array): void {
    checkVector(this.size, v, 'cumulative push');
    for (let i = 0; i < this.sum.length; i++) this.sum[i] += v[i];
    this.pushed++;
  }

  exportState(): OfflineState {
    return { kind: 'cumulative', count: this.pushed, values: Float64Array.from(this.sum) };
  }

  importState(state: OfflineState): void {
    this.pushed = importFloat64(state, 'cumulative', this.size, this.sum);
  }

  averageInto(out: Float32Array): Float32Array {
    if (this.pushed === 0) emptyAverage('cumulative average');
    checkVector(this.size, out, 'cumulative average');
    return sumToAverage(this.sum, this.pushed, out);
  }
}

/** Exponential moving average: e ← decay·e + (1−decay)·v, starting from the first vector. */
export class ExponentialAverage implements OfflineAverager {
  readonly size: number;
  private readonly state: Float64Array;
  private pushed = 0;

  constructor(
    size: number,
    /** Weight of the past, in [0, 1). */
    readonly decay: number,
  ) {
    checkSize(size);
    if (!(decay >= 0 && decay < 1)) throw new ConfigError(`EMA decay must lie in [0, 1), got ${decay}`);
    this.size = size;
    this.state = new Float64Array(size);
  }

  get count(): number {
    return this.pushed;
  }

  push(v: Float32Array): void {
    checkVector(this.size, v, 'EMA push');
    const s = this.state;
    if (this.pushed === 0) for (let i = 0; i < s.length; i++) s[i] = v[i];
    else for (let i = 0; i < s.length; i++) s[i] = this.decay * s[i] + (1 - this.decay) * v[i];
    this.pushed++;
  }

  exportState(): OfflineState {
    return { kind: 'ema', count: this.pushed, values: Float64Array.from(this.state) };
  }

  importState(state: OfflineState): void {
    this.pushed = importFloat64(state, 'ema', this.size, this.state);
  }

  averageInto(out: Float32Array): Float32Array {
    if (this.pushed === 0) emptyAverage('EMA');
    checkVector(this.size, out, 'EMA');
    for (let i = 0; i < out.length; i++) out[i] = this.state[i];
    return out;
  }
}
