/**
 * Gradients of Conv2D: Conv2DBackpropFilter (stock wasm has none) and Conv2DBackpropInput (stock wasm's is a
 * scalar loop), as XNNPACK convolutions, im2col products or, for 1×1 convolutions, matmuls.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  type Attrs,
  type Info,
  type Inputs,
  NS_PER_PACKED_FLOAT,
  type Pad4,
  conv2d,
  free,
  permute,
  reshape,
  run,
  slice,
} from './common.js';
import { matMul2d } from './matmul.js';

interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  sH: number;
  sW: number;
  top: number;
  left: number;
  bottom: number;
  right: number;
}

/** Shapes, strides and leading pads of the forward convolution whose gradient is being computed. */
export function geometry(
  kernel: string,
  xShape: number[],
  filterShape: number[],
  attrs: Attrs,
  nhwc: boolean,
  depthwise = false,
): ConvGeometry {
  const dilations = attrs.dilations as number | [number, number] | undefined;
  if (dilations != null && [dilations].flat().some((d) => d !== 1)) {
    throw new Error(`hwa wasm ${kernel}: dilations ${String(dilations)} not supported (only 1, as in tfjs's gradients)`);
  }
  let pad = attrs.pad as 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  // Explicit NCHW pads list H and W at positions 2 and 3; the geometry below is computed in NHWC.
  if (!nhwc && Array.isArray(pad)) pad = [pad[0], pad[2], pad[3], pad[1]];
  const info = tf.backend_util.computeConv2DInfo(
    (nhwc ? xShape : [xShape[0], xShape[2], xShape[3], xShape[1]]) as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    1,
    pad,
    attrs.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
    depthwise,
    'channelsLast',
  );
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    sH: info.strideHeight,
    sW: info.strideWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
    bottom: info.padInfo.bottom,
    right: info.padInfo.right,
  };
}

function isNHWC(attrs: Attrs): boolean {
  const format = (attrs.dataFormat as string | undefined) ?? 'NHWC';
  if (format !== 'NHWC' && format !== 'NCHW') throw new Error(`hwa wasm kernels: unknown dataFormat '${format}'`);
  return format === 'NHWC';
}

/** A 1×1, stride-1, unpadded convolution is a matmul over pixels, and so are both its gradients. */
function isPointwise(g: ConvGeometry): boolean {
  return g.kH === 1 && g.kW === 1 && g.sH === 1 && g.sW === 1 && g.top === 0 && g.left === 0;
}

/**
 * Conv2DBackpropFilter as ONE forward convolution with the batch and channel axes swapped:
 *   dW[a,b,ci,co] = Σ_{n,i,j} x[n, i·s+a−top, j·s+b−left, ci] · dy[n,i,j,co]
 * is conv2d(input = x as [Ci,H,W,N], filter = dy as [Ho,Wo,N,Co], stride 1, dilation s) → [Ci,kh,kw,Co].
 * XNNPACK then runs it as a GEMM with M = Ci·kh·kw, K = N·Ho·Wo, N = Co.
 */
export function conv2DBackpropFilter(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const attrs = args.attrs ?? {};
  const nhwc = isNHWC(attrs);
  let x = args.inputs.x as Info;
  let dy = args.inputs.dy as Info;
  const filterShape = attrs.filterShape as number[];
  const g = geometry('Conv2DBackpropFilter', x.shape, filterShape, attrs, nhwc);
  const { batch: n, inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, top, left } = g;
  const dyShape = nhwc ? [n, outH, outW, outC] : [n, outC, outH, outW];
  if (dy.shape.join() !== dyShape.join()) {
    throw new Error(`hwa wasm Conv2DBackpropFilter: dy is [${dy.shape}], expected [${dyShape}]`);
  }
  const owned: Info[] = [];
  try {
    if (!nhwc) {
      x = permute(backend, x, [0, 2, 3, 1]);
      dy = permute(backend, dy, [0, 2, 3, 1]);
      owned.push(x, dy);
    }
    if (isPointwise(g)) {
      const x2 = reshape(backend, x, [n * inH * inW, inC]);
      const dy2 = reshape(backend, dy, [n * outH * outW, outC]);
      owned.push(x2, dy2);
      const dw = matMul2d(backend, x2, dy2, true, false);
      owned.push(dw);
      return reshape(backend, dw, [1, 1, inC, outC]);
    }
    if (useIm2col(g)) {
      const dw = conv2DBackpropFilterIm2col(backend, x, dy, g);
      owned.push(dw);
      return reshape(backend, dw, [kH, kW, inC, outC]);
    }
    // Rows/columns of x the forward conv actually read; a 'valid' or strided conv may leave a tail unread,
    // which must be cropped (XNNPACK pads can't be negative) so that the output is exactly kh × kw.
    const usedH = (outH - 1) * sH + kH - top;
    const usedW = (outW - 1) * sW + kW - left;
    const cropH = Math.min(inH, usedH);
    const cropW = Math.min(inW, usedW);
    const xT = permute(backend, x, [3, 1, 2, 0]); // [Ci, H, W, N]
    owned.push(xT);
    let input = xT;
    if (cropH < inH || cropW < inW) {
      // Merge W and N so the slice copies runs of cropW·N floats, not N.
      const flat = reshape(backend, xT, [inC, inH, inW * n]);
      const cut = slice(backend, flat, [0, 0, 0], [inC, cropH, cropW * n]);
      input = reshape(backend, cut, [inC, cropH, cropW, n]);
      owned.push(flat, cut, input);
    }
    const dyT = permute(backend, dy, [1, 2, 0, 3]); // [Ho, Wo, N, Co]
    owned.push(dyT);
    const pads: Pad4 = [
      [0, 0],
      [top, usedH - cropH],
      [left, usedW - cropW],
      [0, 0],
    ];
    const out = conv2d(backend, input, dyT, pads, [sH, sW]); // [Ci, kh, kw, Co]
    owned.push(out);
    return permute(backend, out, [1, 2, 0, 3]);
  } finally {
    free(backend, ...owned);
  }
}

/**
 * Identity filters [kh, kw, Ci, kh·kw·Ci], one per shape and backend instance, kept for the process: a
 * convolution with one is im2col, and XNNPACK keeps its packed copy (the operator is cached on the filter).
 */
const identityFilters = new WeakMap<BackendWasm, Map<string, Info>>();

function identityFilter(backend: BackendWasm, kH: number, kW: number, inC: number): Info {
  let byShape = identityFilters.get(backend);
  if (byShape == null) identityFilters.set(backend, (byShape = new Map()));
  const key = `${kH}x${kW}x${inC}`;
  let filter = byShape.get(key);
  if (filter == null) {
    const k = kH * kW * inC;
    filter = backend.makeOutput([kH, kW, inC, k], 'float32');
    const values = backend.typedArrayFromHeap(filter);
    values.fill(0);
    for (let i = 0; i < k; i++) values[i * k + i] = 1;
    byShape.set(key, filter);
  }
  return filter;
}

/**
 * Whether the weight gradient is cheaper through im2col (first layers: few input channels). The direct
 * route makes XNNPACK pack dy (N·Ho·Wo·Co floats, ~4.7 ns each); im2col packs N·Ho·Wo·K floats (K = kh·kw·Ci)
 * but first computes them with an identity convolution, 2·K² flops per row. CNN conv1 (K = 9, Co = 32):
 * 6.4 → 4 ms.
 */
function useIm2col(g: ConvGeometry): boolean {
  const k = g.kH * g.kW * g.inC;
  return k * (NS_PER_PACKED_FLOAT + (2 * k) / 30) < g.outC * NS_PER_PACKED_FLOAT;
}

/** dWᵀ [Co, K] = dyᵀ [Co, N·Ho·Wo] · im2col(x) [N·Ho·Wo, K], returned as dW [K, Co]. */
function conv2DBackpropFilterIm2col(backend: BackendWasm, x: Info, dy: Info, g: ConvGeometry): Info {
  const rows = g.batch * g.outH * g.outW;
  const k = g.kH * g.kW * g.inC;
  const owned: Info[] = [];
  try {
    const cols = run(
      'Conv2D',
      backend,
      { x, filter: identityFilter(backend, g.kH, g.kW, g.inC) },
      {
        strides: [g.sH, g.sW],
        pad: [
          [0, 0],
          [g.top, g.bottom],
          [g.left, g.right],
          [0, 0],
        ],
        dataFormat: 'NHWC',
        dilations: [1, 1],
        dimRoundingMode: 'floor',
      },
    );
    owned.push(cols);
    const cols2 = reshape(backend, cols, [rows, k]);
    const dy2 = reshape(backend, dy, [rows, g.outC]);
    owned.push(cols2, dy2);
    const dyT = permute(backend, dy2, [1, 0]);
    owned.push(dyT);
    const dwT = run('BatchMatMul', backend, { a: dyT, b: cols2 }, { transposeA: false, transposeB: false });
    owned.push(dwT);
    return permute(backend, dwT, [1, 0]);
  } finally {
    free(backend, ...owned);
  }
}

/**
 * dy with sH−1 zero rows after every row and sW−1 zero columns after every column (the input of a transposed
 * convolution), by one PadV2: [N,Ho,1,Wo,1,C] padded to [N,Ho,sH,Wo,sW,C]. The zeros this leaves after the
 * last row and column act as extra bottom/right padding (backpropInputPads accounts for them). A new
 * reference to dy when the stride is 1.
 */
export function dilate(backend: BackendWasm, dy: Info, sH: number, sW: number): Info {
  const [n, outH, outW, ch] = dy.shape;
  if (sH === 1 && sW === 1) return reshape(backend, dy, [...dy.shape]);
  const six = reshape(backend, dy, [n, outH, 1, outW, 1, ch]);
  try {
    const paddings = [
      [0, 0],
      [0, 0],
      [0, sH - 1],
      [0, 0],
      [0, sW - 1],
      [0, 0],
    ];
    const padded = run('PadV2', backend, { x: six }, { paddings, constantValue: 0 });
    const out = reshape(backend, padded, [n, outH * sH, outW * sW, ch]);
    free(backend, padded);
    return out;
  } finally {
    free(backend, six);
  }
}

/**
 * Pads of the stride-1 convolution over dilated dy that yields dx: kh−1−top rows above, the rest below so
 * that the output has the input's height (likewise for columns). A negative pad (explicit pads wider than
 * the kernel, or the dilation tail) is applied as a crop of the output instead: `crop` is where dx starts.
 */
export function backpropInputPads(g: ConvGeometry, dyD: Info): { pads: Pad4; crop: number[] | null } {
  const padTop = g.kH - 1 - g.top;
  const padLeft = g.kW - 1 - g.left;
  const padBottom = g.inH + g.kH - 1 - dyD.shape[1] - padTop;
  const padRight = g.inW + g.kW - 1 - dyD.shape[2] - padLeft;
  const pads: Pad4 = [
    [0, 0],
    [Math.max(0, padTop), Math.max(0, padBottom)],
    [Math.max(0, padLeft), Math.max(0, padRight)],
    [0, 0],
  ];
  const crop = Math.min(padTop, padBottom, padLeft, padRight) < 0 ? [0, Math.max(0, -padTop), Math.max(0, -padLeft), 0] : null;
  return { pads, crop };
}

/**
 * Conv2DBackpropInput as a forward convolution of dy (dilated by the stride: s−1 zeros between rows and
 * columns) with the spatially flipped filter whose in/out channels are swapped:
 *   dx[n,h,w,ci] = Σ_{a,b,co} dyDilated[n, h+a−(kh−1−top), w+b−(kw−1−left), co] · W[kh−1−a, kw−1−b, ci, co]
 */
export function conv2DBackpropInput(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
  const backend = args.backend as BackendWasm;
  const attrs = args.attrs ?? {};
  const nhwc = isNHWC(attrs);
  let dy = args.inputs.dy as Info;
  const filter = args.inputs.filter as Info;
  const inputShape = attrs.inputShape as number[];
  const g = geometry('Conv2DBackpropInput', inputShape, filter.shape, attrs, nhwc);
  const { batch: n, inH, inW, inC, outH, outW, outC, sH, sW } = g;
  const dyShape = nhwc ? [n, outH, outW, outC] : [n, outC, outH, outW];
  if (dy.shape.join() !== dyShape.join()) {
    throw new Error(`hwa wasm Conv2DBackpropInput: dy is [${dy.shape}], expected [${dyShape}]`);
  }
  const owned: Info[] = [];
  try {
    if (!nhwc) {
      dy = permute(backend, dy, [0, 2, 3, 1]);
      owned.push(dy);
    }
    let dx: Info;
    if (isPointwise(g)) {
      const dy2 = reshape(backend, dy, [n * outH * outW, outC]);
      const w2 = reshape(backend, filter, [inC, outC]);
      owned.push(dy2, w2);
      const prod = matMul2d(backend, dy2, w2, false, true);
      owned.push(prod);
      dx = reshape(backend, prod, [n, inH, inW, inC]);
    } else {
      const dyD = dilate(backend, dy, sH, sW);
      owned.push(dyD);
      const flipped = run('Reverse', backend, { x: filter }, { dims: [0, 1] });
      owned.push(flipped);
      const wT = permute(backend, flipped, [0, 1, 3, 2]); // [kh, kw, Co, Ci]
      owned.push(wT);
      const { pads, crop } = backpropInputPads(g, dyD);
      const out = conv2d(backend, dyD, wT, pads, [1, 1]);
      if (crop != null) {
        owned.push(out);
        dx = slice(backend, out, crop, [n, inH, inW, inC]);
      } else {
        dx = out;
      }
    }
    if (!nhwc) {
      owned.push(dx);
      dx = permute(backend, dx, [0, 3, 1, 2]);
    }
    return dx;
  } finally {
    free(backend, ...owned);
  }
}
