/**
 * Training kernels for the tfjs `wasm` backend (tfjs-backend-wasm 4.22).
 *
 * Stock wasm cannot train a conv net (no `Conv2DBackpropFilter`) and is slow at the rest of a backward pass:
 * its `Conv2DBackpropInput` is a scalar loop (~3.7 GFLOP/s) and its `BatchMatMul` leaves XNNPACK for a
 * scalar blocked loop whenever `transposeA`/`transposeB` is set (~2.5 GFLOP/s against ~37). The kernels here
 * are compositions of the fast stock kernels (XNNPACK `Conv2D`, untransposed `BatchMatMul`, `Transpose`,
 * `PadV2`, `AvgPool`, ...), called directly as kernel functions the way tfjs-backend-wasm's own kernels call
 * each other: no engine round trip, so intermediates are raw TensorInfos that are freed here with
 * `backend.disposeData` and never show up in `tf.memory().numTensors`. A few are plain loops over the wasm
 * heap where no fast kernel fits (MaxPoolGrad, Tile, UnsortedSegmentSum).
 *
 * Measured with bench/step.ts (2 cores, batch 64, ms per kernel call unless noted):
 *   matMul 64×784·784×256, transposeB: stock 8.9, here 1.0 (explicit transposes, packing the smaller side)
 *   batched matMul 8 × 64×128·128×64, transposeB: stock 4.4, here 0.8 (one XNNPACK product per matrix)
 *   Conv2DBackpropInput 64×11×11×64 → 64×13×13×32: stock 96, here 11–13 (one XNNPACK convolution)
 *   Conv2DBackpropFilter: stock none; CNN conv2 13, conv1 4 (im2col)
 *   MaxPoolGrad 2×2 over 64×26×26×32: stock 15–28, here 2–7 (both depend on the data)
 *   Sum of 64×26×26×32 over all but channels: stock 2.8–3.4, here 0.15–0.35
 *   Identity (the engine's clone of every tensor saved for backprop): stock a copy, here a reference
 *   whole steps, stock → here: mlp 17.3 → 3.6 ms, cnn (stock cannot train it) 53 ms, resnet20 3.6 → 1.1 s
 * (docs/measurements.md#wasm-kernels)
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Info = tf.TensorInfo;
type Attrs = tf.NamedAttrMap;
type Inputs = tf.NamedTensorInfoMap;
type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

const BACKEND = 'wasm';

/**
 * Every config registered here carries the stock config it replaced under this key, so that a second
 * registration (selectBackend called twice, or two copies of this module in one process) still finds the
 * stock kernel instead of wrapping, and then recursing into, its own replacement.
 */
const STOCK = Symbol.for('hwa.wasm-training-kernels.stock');
type TaggedConfig = tf.KernelConfig & { [STOCK]?: tf.KernelConfig | null };

/** The stock wasm kernel of this name (looking through our replacement), or null if wasm has none. */
function stockConfig(name: string): tf.KernelConfig | null {
  const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
  if (current == null) return null;
  return STOCK in current ? (current[STOCK] ?? null) : current;
}

/** Runs the stock wasm kernel `name` directly (no engine bookkeeping); the caller owns the result. */
function run(name: string, backend: BackendWasm, inputs: Inputs, attrs: Attrs = {}): Info {
  const config = stockConfig(name);
  if (config == null) throw new Error(`hwa wasm kernels: the wasm backend has no '${name}' kernel`);
  const out = config.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`hwa wasm kernels: '${name}' returned ${out.length} outputs, expected 1`);
  return out;
}

function free(backend: BackendWasm, ...infos: Info[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Same data, new shape: shares the buffer (a reference, like wasm's own Reshape). */
function reshape(backend: BackendWasm, x: Info, shape: number[]): Info {
  if (size(shape) !== size(x.shape)) throw new Error(`hwa wasm kernels: cannot reshape [${x.shape}] to [${shape}]`);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/**
 * Transpose, or a reshape when the permutation only moves axes of size 1 (then the memory order is
 * unchanged and a copy would be wasted; e.g. x [N,H,W,1] → [1,H,W,N] in the first conv layer).
 */
function permute(backend: BackendWasm, x: Info, perm: number[]): Info {
  const outShape = perm.map((p) => x.shape[p]);
  const kept = perm.filter((p) => x.shape[p] !== 1);
  if (kept.every((p, i) => i === 0 || kept[i - 1] < p)) return reshape(backend, x, outShape);
  return run('Transpose', backend, { x }, { perm });
}

/** Copies x[begin : begin+sizes] (wasm's Slice is a JS loop over the innermost runs, so keep them long). */
function slice(backend: BackendWasm, x: Info, begin: number[], sizes: number[]): Info {
  if (sizes.every((s, i) => s === x.shape[i])) return reshape(backend, x, [...x.shape]);
  return run('Slice', backend, { x }, { begin, size: sizes });
}

function conv2d(backend: BackendWasm, x: Info, filter: Info, pads: Pad4, dilations: [number, number]): Info {
  return run(
    'Conv2D',
    backend,
    { x, filter },
    { strides: [1, 1], pad: pads, dataFormat: 'NHWC', dilations, dimRoundingMode: 'floor' },
  );
}

/**
 * Cost model of XNNPACK work, in nanoseconds on this class of machine (bench/step.ts, 2 cores):
 * XNNPACK's fully-connected operator packs its right operand b [K,N] into its own layout on creation, which
 * costs ~4.7 ns per float, ten times a Transpose (~0.5 ns per float). Training creates fresh weights every
 * step, so packing dominates the small products. An extra kernel call costs ~10 µs of JS, but the
 * measured MLP shapes only pick the faster variant when it is charged 30 µs (the GEMM itself is less
 * efficient on some of the swapped shapes, which this model does not see).
 */
const NS_PER_TRANSPOSED_FLOAT = 0.5;
const NS_PER_PACKED_FLOAT = 4.7;
const NS_PER_KERNEL_CALL = 30_000;

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
function geometry(
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
function conv2DBackpropFilter(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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
function dilate(backend: BackendWasm, dy: Info, sH: number, sW: number): Info {
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
function backpropInputPads(g: ConvGeometry, dyD: Info): { pads: Pad4; crop: number[] | null } {
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
function conv2DBackpropInput(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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

/** Runs the kernel registered now (hwa's, if registered), not the stock one. */
function runCurrent(name: string, backend: BackendWasm, inputs: Inputs, attrs: Attrs): Info {
  return tf.getKernel(name, BACKEND).kernelFunc({ inputs, backend, attrs }) as Info;
}

/**
 * DepthwiseConv2dNativeBackpropInput as a depthwise convolution of dilated dy with the flipped filter, one
 * channel per (channel, multiplier) pair: filter [kh,kw,C,M] → [kh,kw,C·M,1], then the M outputs of each
 * channel are summed. Stock wasm has no such kernel.
 */
function depthwiseBackpropInput(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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
function depthwiseBackpropFilter(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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

/**
 * a·b for 2-D a [M,K] (or [K,M] if transposeA) and b [K,N] (or [N,K]) on XNNPACK's fast path (wasm only takes
 * it untransposed and with batch 1). Two ways to get there: C = op(a)·op(b), or Cᵀ = op(b)ᵀ·op(a)ᵀ followed
 * by a transpose of the M×N result; an operand that is already stored the needed way needs no copy. The
 * cheaper by the cost model above is used. E.g. a dense layer 64×784·784×256 with fresh weights: C = A·B
 * packs 200k floats (0.95 ms); Cᵀ = Wᵀ·xᵀ transposes W and x and packs only xᵀ (50k floats), ~0.4 ms.
 * The choice depends on shapes only, never on what was computed before (e.g. whether XNNPACK still holds a
 * packed copy of b), so a step gives the same bits in every process.
 */
function matMul2d(backend: BackendWasm, a: Info, b: Info, transposeA: boolean, transposeB: boolean): Info {
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
function makeBatchMatMul(stock: tf.KernelConfig | null): tf.KernelFunc {
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
function makeFusedMatMul(stock: tf.KernelConfig | null): tf.KernelFunc {
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

/**
 * UnsortedSegmentSum (the gradient of Gather, e.g. of an embedding lookup) as a plain loop over the wasm
 * heap: out[id] += x[i] for every i, ids outside [0, numSegments) dropped like TensorFlow does. Sequential,
 * so deterministic.
 */
function unsortedSegmentSum(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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
function maxPoolGrad(args: { inputs: Inputs; backend: unknown; attrs?: Attrs }): Info {
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
function makeLeadingReduce(stock: tf.KernelConfig | null, op: 'Sum' | 'Mean'): tf.KernelFunc {
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

/**
 * Tile as block copies on the wasm heap (memcpy via copyWithin, doubling), for every dtype but string. Stock
 * wasm loops element by element: BatchNorm's gradient tiles its per-channel statistics to the activation
 * shape, which made Tile the largest kernel of a ResNet-20 step (21 calls, 950 ms of 2.4 s).
 */
function makeTile(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const x = args.inputs.x as Info;
    const reps = (args.attrs ?? {}).reps as number[];
    if (x.dtype === 'string' || size(x.shape) === 0 || reps.length !== x.shape.length) {
      if (stock == null) throw new Error('hwa wasm Tile: the wasm backend has no stock Tile');
      return stock.kernelFunc(args);
    }
    const rank = x.shape.length;
    const outShape = x.shape.map((d, i) => d * reps[i]);
    const out = backend.makeOutput(outShape, x.dtype);
    const o = backend.typedArrayFromHeap(out);
    const xs = backend.typedArrayFromHeap(x);
    const xStrides = new Array<number>(rank);
    const oStrides = new Array<number>(rank);
    for (let i = rank - 1, xs1 = 1, os1 = 1; i >= 0; i--) {
      xStrides[i] = xs1;
      oStrides[i] = os1;
      xs1 *= x.shape[i];
      os1 *= outShape[i];
    }
    // From this axis inward nothing is repeated, so x's sub-block is one contiguous copy.
    const untiled = reps.map((_, i) => reps.slice(i).every((r) => r === 1));
    // Writes x's sub-block at `level` into o at `at`, then repeats it reps[level] times along that axis.
    const fill = (level: number, from: number, at: number): void => {
      const d = x.shape[level];
      if (untiled[level]) {
        o.set(xs.subarray(from, from + d * xStrides[level]), at);
        return;
      }
      if (level === rank - 1) {
        o.set(xs.subarray(from, from + d), at);
      } else {
        for (let i = 0; i < d; i++) fill(level + 1, from + i * xStrides[level], at + i * oStrides[level]);
      }
      const block = d * oStrides[level];
      for (let done = 1; done < reps[level]; ) {
        const n = Math.min(done, reps[level] - done);
        o.copyWithin(at + done * block, at, at + n * block);
        done += n;
      }
    };
    if (rank === 0) o.set(xs);
    else fill(0, 0, 0);
    return out;
  };
}

/**
 * Identity (tf.clone) sharing the buffer by reference count, as the cpu backend's Identity does, instead of
 * wasm's copy. tfjs never writes a buffer in place, and the engine clones every tensor it saves for the
 * backward pass (Engine.saveTensorsForBackwardMode): 31 full copies per CNN step, 1.2 ms.
 */
function makeIdentity(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    if (x.dtype === 'string' && stock != null) return stock.kernelFunc(args);
    return reshape(args.backend as BackendWasm, x, [...x.shape]);
  };
}

/** Cast to the dtype a tensor already has is an Identity too (ReLU's gradient casts its float32 mask). */
function makeCast(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    const dtype = (args.attrs ?? {}).dtype as tf.DataType;
    if (dtype === x.dtype && dtype !== 'string') return reshape(args.backend as BackendWasm, x, [...x.shape]);
    if (stock == null) throw new Error('hwa wasm Cast: the wasm backend has no stock Cast');
    return stock.kernelFunc(args);
  };
}

/**
 * Gradients of Sum and Mean that broadcast dy with Tile. tfjs-core's multiply dy by `ones(x.shape)`, an array
 * that it fills in JS and uploads on every call: 20% of a ResNet-20 step on wasm (BatchNorm's moments are
 * Means over the whole activation). Multiplying by one is exact, so the values are the same. Gradients are
 * not per backend: while registered, these serve every backend in the process.
 */
function broadcastBack(dy: tf.Tensor, x: tf.Tensor, axis: number | number[]): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const kept = x.shape.slice();
  for (const a of axes) kept[a] = 1;
  return tf.broadcastTo(tf.reshape(dy, kept), x.shape);
}

const GRADIENTS: readonly tf.GradConfig[] = [
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({ x: () => broadcastBack(dy as tf.Tensor, saved[0], attrs.axis as number[]) }),
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam(attrs.axis as number[], x.shape);
      const reduceSize = axes.reduce((n, a) => n * x.shape[a], 1);
      return { x: () => tf.div(broadcastBack(dy as tf.Tensor, x, axes), reduceSize) };
    },
  },
];

type TaggedGradient = tf.GradConfig & { [STOCK]?: tf.GradConfig | null };

interface Replacement {
  readonly name: string;
  /** Builds the kernel function, given the stock config it replaces (null if wasm has none). */
  readonly make: (stock: tf.KernelConfig | null) => tf.KernelFunc;
}

const REPLACEMENTS: readonly Replacement[] = [
  { name: 'Conv2DBackpropFilter', make: () => conv2DBackpropFilter },
  { name: 'Conv2DBackpropInput', make: () => conv2DBackpropInput },
  { name: 'DepthwiseConv2dNativeBackpropFilter', make: () => depthwiseBackpropFilter },
  { name: 'DepthwiseConv2dNativeBackpropInput', make: () => depthwiseBackpropInput },
  { name: 'BatchMatMul', make: makeBatchMatMul },
  { name: '_FusedMatMul', make: makeFusedMatMul },
  { name: 'UnsortedSegmentSum', make: () => unsortedSegmentSum },
  { name: 'MaxPoolGrad', make: () => maxPoolGrad },
  { name: 'Sum', make: (stock) => makeLeadingReduce(stock, 'Sum') },
  { name: 'Mean', make: (stock) => makeLeadingReduce(stock, 'Mean') },
  { name: 'Tile', make: makeTile },
  { name: 'Identity', make: makeIdentity },
  { name: 'Cast', make: makeCast },
];

/** Kernel names registerWasmTrainingKernels() installs for the `wasm` backend. */
export const WASM_TRAINING_KERNELS: readonly string[] = REPLACEMENTS.map((r) => r.name);

/**
 * Registers hwa's training kernels for the `wasm` backend, replacing stock ones of the same name (their
 * `setupFunc` is kept, so the backend still initializes them), and the Sum/Mean gradients above (for all
 * backends; same values). Idempotent: calling it again re-registers the same kernels around the same stock
 * ones. Works before or after `tf.setBackend('wasm')`; the module
 * `@tensorflow/tfjs-backend-wasm` must have been imported first (it registers the stock kernels).
 */
export function registerWasmTrainingKernels(): void {
  for (const { name, make } of REPLACEMENTS) {
    const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
    const stock = current == null ? null : STOCK in current ? (current[STOCK] ?? null) : current;
    if (current != null) tf.unregisterKernel(name, BACKEND);
    const config: TaggedConfig = {
      kernelName: name,
      backendName: BACKEND,
      kernelFunc: make(stock),
      [STOCK]: stock,
    };
    // setBackend('wasm') runs every setupFunc; the stock ones already ran if wasm was set before this call.
    if (stock?.setupFunc != null) config.setupFunc = stock.setupFunc;
    if (stock?.disposeFunc != null) config.disposeFunc = stock.disposeFunc;
    tf.registerKernel(config);
  }
  for (const gradient of GRADIENTS) {
    const current = tf.getGradient(gradient.kernelName) as TaggedGradient | undefined;
    const stock = current == null ? null : STOCK in current ? (current[STOCK] ?? null) : current;
    tf.registerGradient({ ...gradient, [STOCK]: stock } as TaggedGradient);
  }
}

/**
 * Puts the stock wasm kernels back (and removes the ones stock wasm lacks), undoing
 * registerWasmTrainingKernels(). For benchmarks and tests that compare against stock tfjs-backend-wasm.
 */
export function unregisterWasmTrainingKernels(): void {
  for (const { name } of REPLACEMENTS) {
    const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
    if (current == null || !(STOCK in current)) continue;
    tf.unregisterKernel(name, BACKEND);
    const stock = current[STOCK];
    if (stock != null) tf.registerKernel(stock);
  }
  for (const { kernelName } of GRADIENTS) {
    const current = tf.getGradient(kernelName) as TaggedGradient | undefined;
    if (current == null || !(STOCK in current)) continue;
    tf.unregisterGradient(kernelName);
    const stock = current[STOCK];
    if (stock != null) tf.registerGradient(stock);
  }
}
