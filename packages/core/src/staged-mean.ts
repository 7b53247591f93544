/**
 * The coordinator's averaging kernel in WebAssembly SIMD, bit-identical to {@link meanRangeInto}: the same
 * float64 sum of the float32 inputs in rank order, one float64 division by K, one rounding to float32
 * (see wasm/mean.wat for why each vector step keeps that arithmetic).
 *
 * A wasm function reads only its own memory, so the inputs have to be there: {@link StagedMean} keeps K
 * staging slots of `blockFloats` floats plus an output slot inside one `WebAssembly.Memory`. Received bytes
 * can be read straight into a slot ({@link StagedMean.slotBytes}) and averaged with
 * {@link StagedMean.meanOfSlots}; vectors already in JS memory go through {@link StagedMean.meanRangeInto},
 * which copies them in block by block. On a runtime without wasm SIMD the class falls back to meanRangeInto.
 *
 * bench/mean.ts (`npm run bench:mean`), 25M floats, K = 2 / 4, medians on the shared 2-core dev machine
 * (runs vary): JS meanRangeInto 36–60 / 61–120 ms; this class's meanRangeInto 21–30 / 37–48 ms; meanOfSlots
 * (inputs already in the slots) 12–17 / 20–26 ms, of which ~6 ms is copying the result out of wasm memory.
 */
import { Buffer } from 'node:buffer';
import { firstNonFinite, meanRangeInto } from './average.js';
import { ConfigError } from './errors.js';
import { MEAN_WASM_BASE64 } from './wasm/mean-wasm.js';

/** The exports of mean.wat; every kernel takes byte addresses and a float count: (out, src, stride, k, n). */
interface MeanKernels {
  /** Any K ≥ 1, dividing by K. Each kernel returns 1 when an output float is NaN or ±Inf, else 0. */
  mean(out: number, src: number, stride: number, k: number, n: number): number;
  /** K = 2 only (multiplies by 0.5, which is exact). */
  mean2(out: number, src: number, stride: number, k: number, n: number): number;
  /** K = 4 only (multiplies by 0.25, which is exact). */
  mean4(out: number, src: number, stride: number, k: number, n: number): number;
}

/** The part of the WebAssembly JS API used here; the project's libs (ES2022, @types/node 20) do not declare it. */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: { env: { memory: WasmMemory } }) => { exports: unknown };
  Memory: new (size: { initial: number; maximum: number }) => WasmMemory;
}
/** A compiled module (opaque here). */
type WasmModule = { readonly __wasmModule: unique symbol };
/** A linear memory, in 64 KiB pages. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
const MEAN_WASM = Buffer.from(MEAN_WASM_BASE64, 'base64');

/**
 * true when this runtime validates the SIMD module (Node 20 does); otherwise {@link StagedMean} falls back to
 * {@link meanRangeInto}.
 */
export const wasmSimdAvailable: boolean = wasm !== undefined && wasm.validate(MEAN_WASM);

let meanModule: WasmModule | undefined;

/** Compiles the module on first use, once per process (synchronously: it is a few hundred bytes). */
function compiledMean(api: WasmApi): WasmModule {
  return (meanModule ??= new api.Module(MEAN_WASM));
}

/** Slots start on 16-byte boundaries so every v128 access is aligned. */
const SLOT_ALIGN = 16;
const PAGE_BYTES = 65536;
/** 2 GiB: every byte address, the end of the output slot included, stays far from wrapping a wasm32 i32. */
const MAX_MEMORY_BYTES = 2 ** 31;

function isCount(v: number, min: number): boolean {
  return Number.isInteger(v) && v >= min;
}

/**
 * The coordinator's averaging kernel: K staging slots of `blockFloats` floats inside one WebAssembly memory
 * (allocated once, never grown, so the views stay valid), plus an output slot.
 */
export class StagedMean {
  /** The default `blockFloats` (see the constructor). */
  static readonly defaultBlockFloats = 65536;
  /**
   * true when the wasm kernel is in use (false: JS fallback). With K = 1 the slots are still wasm memory, but
   * averaging is a copy.
   */
  readonly simd: boolean;
  private readonly slots: Float32Array[];
  private readonly slotBuffers: Buffer[];
  private readonly outSlot: Float32Array;
  /** Bytes from one slot's start to the next one's. */
  private readonly stride: number;
  /** The mean.wat kernel for this K; undefined for K = 1 (a copy) and without SIMD. */
  private readonly kernel: MeanKernels['mean'] | undefined;
  /** An output float of a mean since the last {@link takeNonFinite} was NaN or ±Inf. */
  private nonFinite = false;

  /**
   * @param workers K, the number of vectors averaged (one staging slot each); a positive integer.
   * @param blockFloats floats per slot, the largest `count` of {@link meanOfSlots} and the block size of
   *   {@link meanRangeInto}; a positive integer. The default (256 KiB a slot) was the fastest of 8Ki–128Ki
   *   floats in bench/mean.ts (32Ki was as fast), for K = 2 and 4.
   */
  constructor(
    /** K, the number of vectors averaged. */
    readonly workers: number,
    /** Floats per slot. */
    readonly blockFloats = StagedMean.defaultBlockFloats,
  ) {
    if (!isCount(workers, 1)) throw new ConfigError(`StagedMean: workers must be a positive integer, got ${workers}`);
    if (!isCount(blockFloats, 1))
      throw new ConfigError(`StagedMean: blockFloats must be a positive integer, got ${blockFloats}`);
    this.stride = Math.ceil((blockFloats * 4) / SLOT_ALIGN) * SLOT_ALIGN;
    const bytes = (workers + 1) * this.stride;
    if (bytes > MAX_MEMORY_BYTES)
      throw new ConfigError(
        `StagedMean: ${workers + 1} slots of blockFloats=${blockFloats} need ${bytes} bytes, more than the ` +
          `${MAX_MEMORY_BYTES} a staging memory may have; choose a smaller blockFloats`,
      );
    this.simd = wasmSimdAvailable;
    let buffer: ArrayBuffer;
    if (wasm !== undefined && this.simd) {
      const pages = Math.max(1, Math.ceil(bytes / PAGE_BYTES));
      // maximum = initial: the memory can never grow, so its ArrayBuffer (and every view on it) stays valid.
      const memory = new wasm.Memory({ initial: pages, maximum: pages });
      const kernels = new wasm.Instance(compiledMean(wasm), { env: { memory } }).exports as unknown as MeanKernels;
      this.kernel =
        workers === 1 ? undefined : workers === 2 ? kernels.mean2 : workers === 4 ? kernels.mean4 : kernels.mean;
      buffer = memory.buffer;
    } else {
      this.kernel = undefined;
      buffer = new ArrayBuffer(bytes);
    }
    const at = (j: number) => j * this.stride;
    this.slots = Array.from({ length: workers }, (_, j) => new Float32Array(buffer, at(j), blockFloats));
    this.slotBuffers = Array.from({ length: workers }, (_, j) => Buffer.from(buffer, at(j), blockFloats * 4));
    this.outSlot = new Float32Array(buffer, at(workers), blockFloats);
  }

  /** Staging slot j (0 ≤ j < workers) as float32 — write inputs here (e.g. fs.readSync into slotBytes(j)). */
  slot(j: number): Float32Array {
    return this.slots[this.slotIndex(j)];
  }

  /** The same slot as a Buffer (for fs.readSync / socket reads straight into it). */
  slotBytes(j: number): Buffer {
    return this.slotBuffers[this.slotIndex(j)];
  }

  /** out[outOffset, outOffset+count) = mean over j of slot(j)[0, count); count ≤ blockFloats. */
  meanOfSlots(out: Float32Array, outOffset: number, count: number): void {
    if (!isCount(count, 0) || count > this.blockFloats)
      throw new ConfigError(
        `StagedMean.meanOfSlots: count must be an integer in [0, ${this.blockFloats}] (blockFloats), got ${count}`,
      );
    if (!isCount(outOffset, 0) || outOffset + count > out.length)
      throw new ConfigError(
        `StagedMean.meanOfSlots: outOffset=${outOffset} with count=${count} does not fit an output of ` +
          `${out.length} floats`,
      );
    this.meanBlock(out, outOffset, count);
  }

  /**
   * Same result as meanRangeInto(out, inputs, start, end), bit for bit: copies block-sized pieces of each input
   * into the slots and runs the kernel. inputs.length must equal workers; inputs are indexed like out (same
   * [start,end)). out may alias an input.
   */
  meanRangeInto(
    out: Float32Array,
    inputs: readonly Float32Array[],
    start = 0,
    end: number = out.length,
  ): Float32Array {
    if (inputs.length !== this.workers)
      throw new ConfigError(
        `StagedMean.meanRangeInto: got inputs.length=${inputs.length} vectors, expected workers=${this.workers}`,
      );
    if (!isCount(start, 0) || !Number.isInteger(end) || start > end || end > out.length)
      throw new ConfigError(
        `StagedMean.meanRangeInto: range start=${start}, end=${end} is not within an output of ${out.length} floats`,
      );
    inputs.forEach((v, j) => {
      if (v.length < end)
        throw new ConfigError(`StagedMean.meanRangeInto: input ${j} has ${v.length} floats, shorter than end=${end}`);
    });
    if (this.kernel === undefined) {
      meanRangeInto(out, inputs, start, end);
      this.nonFinite ||= firstNonFinite(out, start, end) >= 0;
      return out;
    }
    const block = this.blockFloats;
    for (let s = start; s < end; s += block) {
      const e = Math.min(s + block, end);
      // Every input's piece is staged before any output is written, so out may alias an input.
      for (let j = 0; j < inputs.length; j++) this.slots[j].set(inputs[j].subarray(s, e));
      this.meanBlock(out, s, e - s);
    }
    return out;
  }

  /**
   * Whether an output float of the means since the last call was NaN or ±Inf, and resets that. The
   * SIMD kernels find out while they store the mean, so checking costs no pass of its own; the K = 1 copy and
   * the JS fallback check their output block while it is in cache.
   */
  takeNonFinite(): boolean {
    const seen = this.nonFinite;
    this.nonFinite = false;
    return seen;
  }

  /** meanOfSlots without the argument checks. */
  private meanBlock(out: Float32Array, outOffset: number, count: number): void {
    const whole = count === this.blockFloats;
    if (this.workers === 1) {
      out.set(whole ? this.slots[0] : this.slots[0].subarray(0, count), outOffset);
      this.nonFinite ||= firstNonFinite(this.slots[0], 0, count) >= 0;
    } else if (this.kernel !== undefined) {
      if (this.kernel(this.workers * this.stride, 0, this.stride, this.workers, count) !== 0) this.nonFinite = true;
      out.set(whole ? this.outSlot : this.outSlot.subarray(0, count), outOffset);
    } else {
      meanRangeInto(this.outSlot, this.slots, 0, count);
      this.nonFinite ||= firstNonFinite(this.outSlot, 0, count) >= 0;
      out.set(whole ? this.outSlot : this.outSlot.subarray(0, count), outOffset);
    }
  }

  private slotIndex(j: number): number {
    if (!Number.isInteger(j) || j < 0 || j >= this.workers)
      throw new ConfigError(`StagedMean: slot index j=${j} is not an integer in [0, ${this.workers - 1}]`);
    return j;
  }
}
