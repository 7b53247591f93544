/** Matrix products kept on XNNPACK's fast path: BatchMatMul and _FusedMatMul with explicit transposes. */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  type Info,
  NS_PER_KERNEL_CALL,
  NS_PER_PACKED_FLOAT,
  NS_PER_TRANSPOSED_FLOAT,
  free,
  permute,
  reshape,
  run,
  size,
} from './common.js';

/**
 * a·b for 2-D a [M,K] (or [K,M] if transposeA) and b [K,N] (or [N,K]) on XNNPACK's fast path (wasm only takes
 * it untransposed and with batch 1). Two ways to get there: C = op(a)·op(b), or Cᵀ = op(b)ᵀ·op(a)ᵀ followed
 * by a transpose of the M×N result; an operand that is already stored the needed way needs no copy. The
 * cheaper by the cost model above is used. E.g. a dense layer 64×784·784×256 with fresh weights: C = A·B
 * packs 200k floats (0.95 ms); Cᵀ = Wᵀ·xᵀ transposes W and x and packs only xᵀ (50k floats), ~0.4 ms.
 * The choice depends on shapes only, never on what was computed before (e.g. whether XNNPACK still holds a
 * packed copy of b), so a step gives the same bits in every process.
 */
export function matMul2d(backend: BackendWasm, a: Info, b: Info, transposeA: boolean, transposeB: boolean): Info {
  const m = transposeA ? a.shape[1] : a.shape[0];
  const k = transposeA ? a.shape[0] : a.shape[1];
  const n = transposeB ? b.shape[0] : b.shape[1];
  const T = NS_PER_TRANSPOSED_FLOAT;
  const P = NS_PER_PACKED_FLOAT;
  const C = NS_PER_KERNEL_CALL;
  const direct = (transposeA ? T * m * k + C : 0) + (transposeB ? T * k * n + C : 0) + P * k * n;
  const swapped = (transposeB ? 0 : T * k * n + C) + (transposeA ? 0 : T * m * k + C) + P * k * m + T * m * n + C;
  const owned: Info[] = [];
  try {
    const mm = (left: Info, right: Info): Info =>
      run('BatchMatMul', backend, { a: left, b: right }, { transposeA: false, transposeB: false });
    const t = (x: Info): Info => {
      const y = permute(backend, x, [1, 0]);
      owned.push(y);
      return y;
    };
    if (direct <= swapped) return mm(transposeA ? t(a) : a, transposeB ? t(b) : b);
    const cT = mm(transposeB ? b : t(b), transposeA ? a : t(a));
    owned.push(cT);
    return permute(backend, cT, [1, 0]);
  } finally {
    free(backend, ...owned);
  }
}

function batchDims(shape: number[]): number {
  return size(shape.slice(0, -2));
}

/** Swaps the last two axes. */
function transposeInner(backend: BackendWasm, x: Info): Info {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return permute(backend, x, perm);
}

/**
 * Below this many multiply-adds per matrix, wasm's own loop beats the fixed cost of splitting a batched
 * product into XNNPACK calls (~50 µs of kernel calls and packing per matrix; the loop runs ~1 GMAC/s).
 */
const SPLIT_MIN_MACS = 50_000;

/**
 * BatchMatMul on XNNPACK (see matMul2d). Batched products, which wasm always runs on its scalar loop, are
 * split into one XNNPACK product per matrix when the matrices are big enough: 8 × 64×128·128×64 with
 * transposeB takes 4.1 ms stock. Batch dimensions broadcast only as "equal, or one side 1"; other shapes
 * go to the stock kernel.
 */
export function makeBatchMatMul(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs ?? {};
    const transposeA = attrs.transposeA === true;
    const transposeB = attrs.transposeB === true;
    const a = args.inputs.a as Info;
    const b = args.inputs.b as Info;
    if (stock == null) throw new Error('hwa wasm BatchMatMul: the wasm backend has no stock BatchMatMul');
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock.kernelFunc(args);
    const batchA = batchDims(a.shape);
    const batchB = batchDims(b.shape);
    const aOuter = a.shape.slice(0, -2);
    const bOuter = b.shape.slice(0, -2);
    const outer = batchA >= batchB ? aOuter : bOuter;
    const [aRows, aCols] = a.shape.slice(-2);
    const [bRows, bCols] = b.shape.slice(-2);
    const m = transposeA ? aCols : aRows;
    const k = transposeA ? aRows : aCols;
    const n = transposeB ? bRows : bCols;
    const owned: Info[] = [];
    try {
      if (batchA === 1 && batchB === 1) {
        const a2 = reshape(backend, a, [aRows, aCols]);
        const b2 = reshape(backend, b, [bRows, bCols]);
        owned.push(a2, b2);
        const c = matMul2d(backend, a2, b2, transposeA, transposeB);
        owned.push(c);
        return reshape(backend, c, [...outer, m, n]);
      }
      const simple = batchA === 1 || batchB === 1 || aOuter.join() === bOuter.join();
      if (!simple || m * k * n < SPLIT_MIN_MACS) return stock.kernelFunc(args);
      const batch = Math.max(batchA, batchB);
      const a3 = reshape(backend, a, [batchA, aRows, aCols]);
      const b3 = reshape(backend, b, [batchB, bRows, bCols]);
      owned.push(a3, b3);
      const out = backend.makeOutput([...outer, m, n], 'float32');
      // Matrix i of a batch, copied out of the heap (wasm's Slice would first read the whole tensor into JS).
      const matrix = (t3: Info, i: number, count: number, rows: number, cols: number): Info => {
        if (count === 1) return reshape(backend, t3, [rows, cols]);
        const one = backend.makeOutput([rows, cols], 'float32');
        const at = i * rows * cols;
        backend.typedArrayFromHeap(one).set(backend.typedArrayFromHeap(t3).subarray(at, at + rows * cols));
        return one;
      };
      for (let i = 0; i < batch; i++) {
        const ai = matrix(a3, i, batchA, aRows, aCols);
        const bi = matrix(b3, i, batchB, bRows, bCols);
        const ci = matMul2d(backend, ai, bi, transposeA, transposeB);
        // A fresh view each time: the allocations above may have grown (and detached) the heap.
        backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(ci), i * m * n);
        free(backend, ai, bi, ci);
      }
      return out;
    } finally {
      free(backend, ...owned);
    }
  };
}

/** _FusedMatMul (matmul + bias + activation) with transposes done explicitly, for the same reason. */
export function makeFusedMatMul(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs ?? {};
    const transposeA = attrs.transposeA === true;
    const transposeB = attrs.transposeB === true;
    if (stock == null) throw new Error('hwa wasm _FusedMatMul: the wasm backend has no stock _FusedMatMul');
    if (!transposeA && !transposeB) return stock.kernelFunc(args);
    const a = args.inputs.a as Info;
    const b = args.inputs.b as Info;
    const owned: Info[] = [];
    try {
      const aa = transposeA ? transposeInner(backend, a) : a;
      const bb = transposeB ? transposeInner(backend, b) : b;
      if (transposeA) owned.push(aa);
      if (transposeB) owned.push(bb);
      return stock.kernelFunc({
        ...args,
        inputs: { ...args.inputs, a: aa, b: bb },
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      free(backend, ...owned);
    }
  };
}
