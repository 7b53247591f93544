/** Gradients of depthwise convolutions (stock wasm has neither), built on the Conv2D gradient helpers. */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Attrs, type Info, type Inputs, free, reshape, run, runCurrent, slice } from './common.js';
import { backpropInputPads, dilate, geometry } from './conv.js';

/**
 * DepthwiseConv2dNativeBackpropInput as a depthwise convolution of dilated dy with the flipped filter, one
 * channel per (channel, multiplier) pair: filter [kh,kw,C,M] → [kh,kw,C·M,1], then the M outputs of each
 * channel are summed. Stock wasm has no such kernel.
 */
export function depthwiseBackpropInput(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const attrs = args.attrs ?? {};
  const dy = args.inputs.dy as Info;
  const filter = args.inputs.filter as Info;
  const inputShape = attrs.inputShape as number[];
  const g = geometry('DepthwiseConv2dNativeBackpropInput', inputShape, filter.shape, attrs, true, true);
  const [kH, kW, ch, mult] = filter.shape;
  const { batch: n, inH, inW, outH, outW, sH, sW } = g;
  if (dy.shape.join() !== [n, outH, outW, ch * mult].join()) {
    throw new Error(`hwa wasm DepthwiseConv2dNativeBackpropInput: dy is [${dy.shape}], expected [${[n, outH, outW, ch * mult]}]`);
  }
  const owned: Info[] = [];
  try {
    const dyD = dilate(backend, dy, sH, sW);
    owned.push(dyD);
    const flipped = run('Reverse', backend, { x: filter }, { dims: [0, 1] });
    owned.push(flipped);
    const perChannel = reshape(backend, flipped, [kH, kW, ch * mult, 1]);
    owned.push(perChannel);
    const { pads, crop } = backpropInputPads(g, dyD);
    let dx = run(
      'DepthwiseConv2dNative',
      backend,
      { x: dyD, filter: perChannel },
      { strides: [1, 1], dilations: [1, 1], pad: pads, dimRoundingMode: 'floor' },
    );
    if (crop != null) {
      owned.push(dx);
      dx = slice(backend, dx, crop, [n, inH, inW, ch * mult]);
    }
    if (mult === 1) return dx;
    owned.push(dx);
    const split = reshape(backend, dx, [n, inH, inW, ch, mult]);
    owned.push(split);
    return run('Sum', backend, { x: split }, { axis: [4], keepDims: false });
  } finally {
    free(backend, ...owned);
  }
}

/**
 * DepthwiseConv2dNativeBackpropFilter tap by tap: for each of the kh·kw filter positions, the strided view
 * of (padded) x it meets times dy, summed over batch and pixels (XNNPACK StridedSlice, Multiply, and the
 * pooled Sum above): 3 kernel calls per tap, each O(N·Ho·Wo·C·M). Stock wasm has no such kernel.
 */
export function depthwiseBackpropFilter(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const attrs = args.attrs ?? {};
  const x = args.inputs.x as Info;
  const dy = args.inputs.dy as Info;
  const filterShape = attrs.filterShape as number[];
  const g = geometry('DepthwiseConv2dNativeBackpropFilter', x.shape, filterShape, attrs, true, true);
  const [kH, kW, ch, mult] = filterShape;
  const { batch: n, inH, inW, outH, outW, sH, sW, top, left } = g;
  if (dy.shape.join() !== [n, outH, outW, ch * mult].join()) {
    throw new Error(`hwa wasm DepthwiseConv2dNativeBackpropFilter: dy is [${dy.shape}], expected [${[n, outH, outW, ch * mult]}]`);
  }
  const owned: Info[] = [];
  try {
    // Pad x so that every window lies inside it; rows past the last window are never read.
    const bottom = Math.max(0, (outH - 1) * sH + kH - top - inH);
    const right = Math.max(0, (outW - 1) * sW + kW - left - inW);
    let xp = x;
    if (top + bottom + left + right > 0) {
      const paddings = [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ];
      xp = run('PadV2', backend, { x }, { paddings, constantValue: 0 });
      owned.push(xp);
    }
    const dy5 = reshape(backend, dy, [n, outH, outW, ch, mult]);
    owned.push(dy5);
    const out = backend.makeOutput([kH, kW, ch, mult], 'float32');
    for (let a = 0; a < kH; a++) {
      for (let b = 0; b < kW; b++) {
        const tap: Info[] = [];
        try {
          const view = run(
            'StridedSlice',
            backend,
            { x: xp },
            {
              begin: [0, a, b, 0],
              end: [n, a + (outH - 1) * sH + 1, b + (outW - 1) * sW + 1, ch],
              strides: [1, sH, sW, 1],
              beginMask: 0,
              endMask: 0,
              ellipsisMask: 0,
              newAxisMask: 0,
              shrinkAxisMask: 0,
            },
          );
          tap.push(view);
          const view5 = reshape(backend, view, [n, outH, outW, ch, 1]);
          tap.push(view5);
          const prod = run('Multiply', backend, { a: view5, b: dy5 });
          tap.push(prod);
          const sum = runCurrent('Sum', backend, { x: prod }, { axis: [0, 1, 2], keepDims: false });
          tap.push(sum);
          // A fresh view each time: allocations above may have grown (and detached) the heap.
          backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(sum), (a * kW + b) * ch * mult);
        } finally {
          free(backend, ...tap);
        }
      }
    }
    return out;
  } finally {
    free(backend, ...owned);
  }
}
