/** Convolution shapes the wasm kernel tests run on both backends. */
import * as tf from '@tensorflow/tfjs';
import type { Pad } from './wasm-vs-cpu.js';

export interface ConvCase {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  k: [number, number];
  s: number | [number, number];
  pad: Pad;
  nchw?: boolean;
}

// Strides 1 and 2, 'same'/'valid'/explicit pads (incl. pads wider than the kernel), odd sizes, batch 1 and >1,
// channels 1 and >1, 1×1 (matmul) cases, im2col cases, and NCHW.
export const CONV_CASES: ConvCase[] = [
  { n: 1, h: 5, w: 7, ci: 1, co: 1, k: [3, 3], s: 1, pad: 'same' },
  { n: 3, h: 9, w: 8, ci: 2, co: 4, k: [3, 2], s: 2, pad: 'valid' },
  { n: 2, h: 8, w: 8, ci: 3, co: 5, k: [3, 3], s: 2, pad: 'same' },
  { n: 2, h: 7, w: 6, ci: 4, co: 3, k: [5, 5], s: 1, pad: 'valid' },
  { n: 2, h: 6, w: 6, ci: 3, co: 2, k: [1, 1], s: 1, pad: 'valid' },
  { n: 2, h: 5, w: 5, ci: 2, co: 3, k: [1, 1], s: 2, pad: 'valid' },
  { n: 2, h: 9, w: 7, ci: 2, co: 3, k: [3, 3], s: 2, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { n: 2, h: 6, w: 6, ci: 2, co: 3, k: [2, 2], s: 1, pad: [[0, 0], [3, 0], [0, 2], [0, 0]] },
  { n: 4, h: 11, w: 13, ci: 3, co: 6, k: [3, 3], s: [2, 1], pad: 'same' },
  { n: 5, h: 28, w: 28, ci: 1, co: 8, k: [3, 3], s: 1, pad: 'valid' },
  // few input channels, many output channels: the weight gradient goes through im2col
  { n: 3, h: 12, w: 10, ci: 1, co: 32, k: [3, 3], s: 2, pad: 'same' },
  { n: 2, h: 9, w: 9, ci: 2, co: 24, k: [2, 2], s: 1, pad: 'valid' },
  { n: 2, h: 8, w: 7, ci: 1, co: 16, k: [3, 3], s: 1, pad: [[0, 0], [2, 0], [1, 1], [0, 0]] },
  { n: 2, h: 7, w: 9, ci: 3, co: 4, k: [3, 3], s: 2, pad: 'same', nchw: true },
  { n: 2, h: 7, w: 9, ci: 3, co: 4, k: [3, 3], s: 1, pad: [[0, 0], [1, 0], [2, 1], [0, 0]], nchw: true },
];

export function convShapes(c: ConvCase) {
  const x = c.nchw ? [c.n, c.ci, c.h, c.w] : [c.n, c.h, c.w, c.ci];
  const filter = [c.k[0], c.k[1], c.ci, c.co];
  const info = tf.backend_util.computeConv2DInfo(
    [c.n, c.h, c.w, c.ci],
    filter as [number, number, number, number],
    c.s,
    1,
    c.pad,
  );
  const dy = c.nchw ? [c.n, c.co, info.outHeight, info.outWidth] : [c.n, info.outHeight, info.outWidth, c.co];
  return { x, filter, dy };
}

/** Explicit pads are given in the tensor's layout: NCHW lists H and W third and fourth. */
export function kernelPad(c: ConvCase): Pad {
  if (!c.nchw || !Array.isArray(c.pad)) return c.pad;
  const [n, h, w, ch] = c.pad;
  return [n, ch, h, w];
}

export const label = (c: ConvCase) =>
  `x ${c.nchw ? 'NCHW' : 'NHWC'} [${c.n},${c.h},${c.w},${c.ci}] k ${c.k} co ${c.co} s ${c.s} pad ${JSON.stringify(c.pad)}`;
