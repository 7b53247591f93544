/** UnsortedSegmentSum, MaxPoolGrad, and Sum/Mean over leading axes: loops or pooling kernels on the wasm heap. */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type Info, type Inputs, free, reshape, run, size } from './common.js';

/**
 * UnsortedSegmentSum (the gradient of Gather, e.g. of an embedding lookup) as a plain loop over the wasm
 * heap: out[id] += x[i] for every i, ids outside [0, numSegments) dropped like TensorFlow does. Sequential,
 * so deterministic.
 */
export function unsortedSegmentSum(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const x = args.inputs.x as Info;
  const ids = args.inputs.segmentIds as Info;
  const numSegments = (args.attrs ?? {}).numSegments as number;
  const rows = size(ids.shape);
  const inner = rows === 0 ? 0 : size(x.shape) / rows;
  const out = backend.makeOutput([numSegments, ...x.shape.slice(ids.shape.length)], x.dtype);
  const o = backend.typedArrayFromHeap(out);
  o.fill(0);
  const xs = backend.typedArrayFromHeap(x);
  const is = backend.typedArrayFromHeap(ids);
  for (let i = 0; i < rows; i++) {
    const id = is[i];
    if (id < 0 || id >= numSegments) continue;
    const src = i * inner;
    const dst = id * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j];
  }
  return out;
}

/**
 * MaxPoolGrad as one pass over the wasm heap: per window, the first strictly largest input (row-major scan,
 * the cpu backend's rule, so ties such as all-zero ReLU windows resolve identically) receives dy. Channels
 * are the innermost loop, so memory is read in order. The stock wasm kernel takes 15 ms for the 2×2 pool over
 * 64×26×26×32 in the CNN; this loop 2–7 ms, depending on the data (branch prediction).
 */
export function maxPoolGrad(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const attrs = args.attrs ?? {};
  const x = args.inputs.input as Info;
  const dy = args.inputs.dy as Info;
  const info = tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterSize as number | [number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as 'same' | 'valid' | number | tf.backend_util.ExplicitPadding,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
  );
  const { batchSize, inHeight, inWidth, inChannels: ch, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { effectiveFilterHeight, effectiveFilterWidth } = info;
  const { top, left } = info.padInfo;
  const out = backend.makeOutput([...x.shape], 'float32');
  // Views only after makeOutput: an allocation may grow the heap and detach older views.
  const dx = backend.typedArrayFromHeap(out);
  const xs = backend.typedArrayFromHeap(x);
  const dys = backend.typedArrayFromHeap(dy);
  dx.fill(0);
  const taps = new Int32Array(Math.max(1, effectiveFilterHeight * effectiveFilterWidth));
  for (let b = 0; b < batchSize; b++) {
    for (let yr = 0; yr < outHeight; yr++) {
      const r0 = yr * strideHeight - top;
      let rMin = r0;
      while (rMin < 0) rMin += dilationHeight;
      const rMax = Math.min(inHeight, r0 + effectiveFilterHeight);
      for (let yc = 0; yc < outWidth; yc++) {
        const c0 = yc * strideWidth - left;
        let cMin = c0;
        while (cMin < 0) cMin += dilationWidth;
        const cMax = Math.min(inWidth, c0 + effectiveFilterWidth);
        let nt = 0;
        for (let r = rMin; r < rMax; r += dilationHeight) {
          for (let c = cMin; c < cMax; c += dilationWidth) taps[nt++] = ((b * inHeight + r) * inWidth + c) * ch;
        }
        const dyBase = ((b * outHeight + yr) * outWidth + yc) * ch;
        if (nt === 4) {
          // The 2×2 window, unrolled, with the index updated arithmetically rather than by a branch: after
          // ReLU, windows are full of ties and zeros, so branches mispredict (64×26×26×32, half zeros:
          // 4.9 ms against 6.0 with branches).
          const t0 = taps[0];
          const t1 = taps[1];
          const t2 = taps[2];
          const t3 = taps[3];
          for (let d = 0; d < ch; d++) {
            let at = t0 + d;
            let best = xs[at];
            if (!(best > -Infinity)) {
              best = -Infinity;
              at = -1;
            }
            let i = t1 + d;
            let v = xs[i];
            let g = +(v > best);
            at += (i - at) * g;
            best = g ? v : best;
            i = t2 + d;
            v = xs[i];
            g = +(v > best);
            at += (i - at) * g;
            best = g ? v : best;
            i = t3 + d;
            v = xs[i];
            g = +(v > best);
            at += (i - at) * g;
            if (at >= 0) dx[at] += dys[dyBase + d];
          }
          continue;
        }
        for (let d = 0; d < ch; d++) {
          let best = -Infinity;
          let at = -1;
          for (let t = 0; t < nt; t++) {
            const i = taps[t] + d;
            const v = xs[i];
            if (v > best) {
              best = v;
              at = i;
            }
          }
          if (at >= 0) dx[at] += dys[dyBase + d];
        }
      }
    }
  }
  return out;
}

/** Below this many floats a JS loop beats the two AvgPool kernel calls. */
const REDUCE_POOL_MIN_SIZE = 1 << 16;

/**
 * Sum or Mean over leading axes (bias gradients: dy [N,H,W,C] → [C]; BatchNorm's moments). Stock wasm first
 * transposes the reduced axes to the end (a full copy, then a scalar loop): 2.8 ms for a 64×26×26×32 sum in
 * the CNN, where XNNPACK's average pooling with one window over all rows takes 0.15 ms. Two levels of
 * pooling (blocks of ~√rows, then their means) keep float32 rounding to about that of a pairwise sum; Sum
 * scales the mean back by the row count. Small inputs use a float64 JS loop; other axis patterns and dtypes
 * go to the stock kernel.
 */
export function makeLeadingReduce(stock: tf.KernelConfig | null, op: 'Sum' | 'Mean'): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs ?? {};
    const x = args.inputs.x as Info;
    if (stock == null) throw new Error(`hwa wasm ${op}: the wasm backend has no stock ${op}`);
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((p, q) => p - q);
    const leading = axes.length > 0 && axes.length < rank && axes.every((ax, i) => ax === i);
    if (x.dtype !== 'float32' || !leading || size(x.shape) === 0) return stock.kernelFunc(args);
    const rows = size(x.shape.slice(0, axes.length));
    const cols = size(x.shape.slice(axes.length));
    const kept = x.shape.slice(axes.length);
    const shape = attrs.keepDims === true ? [...axes.map(() => 1), ...kept] : kept;
    const scale = op === 'Sum' ? rows : 1;
    if (rows * cols < REDUCE_POOL_MIN_SIZE) {
      const out = backend.makeOutput(shape, 'float32');
      const o = backend.typedArrayFromHeap(out);
      const xs = backend.typedArrayFromHeap(x);
      const acc = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        const base = r * cols;
        for (let c = 0; c < cols; c++) acc[c] += xs[base + c];
      }
      for (let c = 0; c < cols; c++) o[c] = op === 'Sum' ? acc[c] : acc[c] / rows;
      return out;
    }
    let outer = Math.floor(Math.sqrt(rows));
    while (rows % outer !== 0) outer--;
    const inner = rows / outer;
    const owned: Info[] = [];
    try {
      const pool = (t: Info, window: number): Info =>
        run('AvgPool', backend, { x: t }, { filterSize: [window, 1], strides: [window, 1], pad: 'valid' });
      const x4 = reshape(backend, x, [outer, inner, 1, cols]);
      owned.push(x4);
      let mean = pool(x4, inner); // [outer, 1, 1, cols]
      owned.push(mean);
      if (outer > 1) {
        const m4 = reshape(backend, mean, [1, outer, 1, cols]);
        owned.push(m4);
        mean = pool(m4, outer);
        owned.push(mean);
      }
      if (scale === 1) return reshape(backend, mean, shape);
      const out = backend.makeOutput(shape, 'float32');
      const o = backend.typedArrayFromHeap(out);
      const m = backend.typedArrayFromHeap(mean);
      for (let c = 0; c < cols; c++) o[c] = m[c] * scale;
      return out;
    } finally {
      free(backend, ...owned);
    }
  };
}
