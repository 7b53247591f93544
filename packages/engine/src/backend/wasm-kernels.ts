/**
 * Training kernels for the tfjs `wasm` backend (tfjs-backend-wasm 4.22).
 *
 * Stock wasm cannot train a conv net (no `Conv2DBackpropFilter`) and is slow at the rest of a backward pass:
 * its `Conv2DBackpropInput` is a scalar loop (~3.7 GFLOP/s) and its `BatchMatMul` leaves XNNPACK for a
 * scalar blocked loop whenever `transposeA`/`transposeB` is set (~2.5 GFLOP/s against ~37). Every kernel here
 * is rewritten as a composition of the fast stock kernels (XNNPACK `Conv2D`, untransposed `BatchMatMul`,
 * `Transpose`, `PadV2`, `Reverse`), called directly as kernel functions the way tfjs-backend-wasm's own kernels
 * call each other: no engine round trip, so intermediates are raw TensorInfos that are freed here with
 * `backend.disposeData` and never show up in `tf.memory().numTensors`.
 *
 * Numbers behind the choices (DESIGN.md §6 and bench/step.ts, 2 cores, batch 64):
 *   matMul 64×784·784×256: XNNPACK 0.70 ms; transposeB 8.9 ms; transposeA 11.3 ms; Transpose 784×256 0.17 ms.
 *   conv 3×3 64×14×14×32→64: XNNPACK Conv2D 13 ms; stock Conv2DBackpropInput of the same size 126 ms.
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
}

/** Shapes, strides and leading pads of the forward convolution whose gradient is being computed. */
function geometry(
  kernel: string,
  xShape: number[],
  filterShape: number[],
  attrs: Attrs,
  nhwc: boolean,
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
    false,
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
  };
}

function isNHWC(attrs: Attrs): boolean {
  const format = (attrs.dataFormat as string | undefined) ?? 'NHWC';
  if (format !== 'NHWC' && format !== 'NCHW') throw new Error(`hwa wasm kernels: unknown dataFormat '${format}'`);
  return format === 'NHWC';
}

/** dW = x^T·dy when the convolution is a 1×1, stride-1, unpadded one (a plain matmul, e.g. ResNet shortcuts). */
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
  const owned: Info[] = [];
  if (!nhwc) {
    x = permute(backend, x, [0, 2, 3, 1]);
    dy = permute(backend, dy, [0, 2, 3, 1]);
    owned.push(x, dy);
  }
  const { batch: n, inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, top, left } = g;
  if (dy.shape.join() !== [n, outH, outW, outC].join()) {
    throw new Error(`hwa wasm Conv2DBackpropFilter: dy is [${dy.shape}], expected [${[n, outH, outW, outC]}]`);
  }
  try {
    if (isPointwise(g)) {
      const x2 = reshape(backend, x, [n * inH * inW, inC]);
      const dy2 = reshape(backend, dy, [n * outH * outW, outC]);
      owned.push(x2, dy2);
      const dw = matMul2d(backend, x2, dy2, true, false);
      owned.push(dw);
      return reshape(backend, dw, [1, 1, inC, outC]);
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
  const owned: Info[] = [];
  if (!nhwc) {
    dy = permute(backend, dy, [0, 2, 3, 1]);
    owned.push(dy);
  }
  const { batch: n, inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, top, left } = g;
  if (dy.shape.join() !== [n, outH, outW, outC].join()) {
    throw new Error(`hwa wasm Conv2DBackpropInput: dy is [${dy.shape}], expected [${[n, outH, outW, outC]}]`);
  }
  try {
    let dx: Info;
    if (isPointwise(g)) {
      const dy2 = reshape(backend, dy, [n * outH * outW, outC]);
      const w2 = reshape(backend, filter, [inC, outC]);
      owned.push(dy2, w2);
      const prod = matMul2d(backend, dy2, w2, false, true);
      owned.push(prod);
      dx = reshape(backend, prod, [n, inH, inW, inC]);
    } else {
      let dyD = dy;
      if (sH > 1 || sW > 1) {
        // Dilate with one PadV2: [N,Ho,1,Wo,1,Co] padded to [N,Ho,sH,Wo,sW,Co]. The s−1 zero rows this leaves
        // after the last row act as extra bottom padding (subtracted below).
        const six = reshape(backend, dy, [n, outH, 1, outW, 1, outC]);
        const paddings = [
          [0, 0],
          [0, 0],
          [0, sH - 1],
          [0, 0],
          [0, sW - 1],
          [0, 0],
        ];
        const padded = run('PadV2', backend, { x: six }, { paddings, constantValue: 0 });
        dyD = reshape(backend, padded, [n, outH * sH, outW * sW, outC]);
        owned.push(six, padded, dyD);
      }
      const flipped = run('Reverse', backend, { x: filter }, { dims: [0, 1] });
      owned.push(flipped);
      const wT = permute(backend, flipped, [0, 1, 3, 2]); // [kh, kw, Co, Ci]
      owned.push(wT);
      const padTop = kH - 1 - top;
      const padLeft = kW - 1 - left;
      const padBottom = inH + kH - 1 - dyD.shape[1] - padTop;
      const padRight = inW + kW - 1 - dyD.shape[2] - padLeft;
      // Negative pads (explicit pads larger than the kernel, or the dilation tail) become a crop of the output.
      const pads: Pad4 = [
        [0, 0],
        [Math.max(0, padTop), Math.max(0, padBottom)],
        [Math.max(0, padLeft), Math.max(0, padRight)],
        [0, 0],
      ];
      const out = conv2d(backend, dyD, wT, pads, [1, 1]);
      if (padTop < 0 || padBottom < 0 || padLeft < 0 || padRight < 0) {
        owned.push(out);
        dx = slice(backend, out, [0, Math.max(0, -padTop), Math.max(0, -padLeft), 0], [n, inH, inW, inC]);
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

/**
 * Cost model of one 2-D product on XNNPACK, in nanoseconds on this class of machine (bench/step.ts, 2 cores):
 * XNNPACK's fully-connected operator packs its right operand b [K,N] into its own layout on creation, which
 * costs ~4.7 ns per float, ten times a Transpose (~0.5 ns per float); the operator is cached per b tensor, so
 * a b that was packed before (weights during evaluation) costs nothing more. An extra kernel call costs ~10 µs
 * of JS, but the measured MLP shapes only pick the faster variant when it is charged 30 µs (the GEMM itself
 * is less efficient on some of the swapped shapes, which this model does not see). Training creates fresh weights every step, so packing dominates the small products.
 */
const NS_PER_TRANSPOSED_FLOAT = 0.5;
const NS_PER_PACKED_FLOAT = 4.7;
const NS_PER_KERNEL_CALL = 30_000;

/** dataIds that were the right operand of an XNNPACK matmul (the operator, with b packed, is cached on it). */
const packed = new WeakSet<object>();

/**
 * a·b for 2-D a [M,K] (or [K,M] if transposeA) and b [K,N] (or [N,K]) on XNNPACK's fast path (wasm only takes
 * it untransposed and with batch 1). Two ways to get there: C = op(a)·op(b), or Cᵀ = op(b)ᵀ·op(a)ᵀ followed
 * by a transpose of the M×N result; an operand that is already stored the needed way needs no copy. The
 * cheaper by the cost model above is used. E.g. a dense layer 64×784·784×256 with fresh weights: C = A·B
 * packs 200k floats (0.95 ms); Cᵀ = Wᵀ·xᵀ transposes W and x and packs only xᵀ (50k floats), ~0.4 ms.
 */
function matMul2d(backend: BackendWasm, a: Info, b: Info, transposeA: boolean, transposeB: boolean): Info {
  const m = transposeA ? a.shape[1] : a.shape[0];
  const k = transposeA ? a.shape[0] : a.shape[1];
  const n = transposeB ? b.shape[0] : b.shape[1];
  const T = NS_PER_TRANSPOSED_FLOAT;
  const P = NS_PER_PACKED_FLOAT;
  const C = NS_PER_KERNEL_CALL;
  const direct =
    (transposeA ? T * m * k + C : 0) +
    (transposeB ? T * k * n + C : 0) +
    (!transposeB && packed.has(b.dataId) ? 0 : P * k * n);
  const swapped =
    (transposeB ? 0 : T * k * n + C) +
    (transposeA ? 0 : T * m * k + C) +
    (transposeA && packed.has(a.dataId) ? 0 : P * k * m) +
    T * m * n +
    C;
  const owned: Info[] = [];
  try {
    const mm = (left: Info, right: Info): Info => {
      packed.add(right.dataId);
      return run('BatchMatMul', backend, { a: left, b: right }, { transposeA: false, transposeB: false });
    };
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

/** BatchMatMul with transposes moved out of wasm's scalar loop (see matMul2d). */
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
    const owned: Info[] = [];
    try {
      if (batchDims(a.shape) === 1 && batchDims(b.shape) === 1) {
        const a2 = reshape(backend, a, a.shape.slice(-2));
        const b2 = reshape(backend, b, b.shape.slice(-2));
        owned.push(a2, b2);
        const c = matMul2d(backend, a2, b2, transposeA, transposeB);
        owned.push(c);
        const outer = a.shape.length >= b.shape.length ? a.shape.slice(0, -2) : b.shape.slice(0, -2);
        return reshape(backend, c, [...outer, ...c.shape]);
      }
      if (!transposeA && !transposeB) return stock.kernelFunc(args);
      // Batched products stay on wasm's loop either way (XNNPACK is used only for batch 1); contiguous
      // operands still make that loop several times faster.
      const aa = transposeA ? transposeInner(backend, a) : a;
      const bb = transposeB ? transposeInner(backend, b) : b;
      if (transposeA) owned.push(aa);
      if (transposeB) owned.push(bb);
      return stock.kernelFunc({ ...args, inputs: { a: aa, b: bb }, attrs: { ...attrs, transposeA: false, transposeB: false } });
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
 * 64×26×26×32 in the CNN; this loop about a tenth of that.
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
          // The 2×2 window, unrolled: twice as fast as the loop over taps in V8.
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
            let v = xs[t1 + d];
            if (v > best) {
              best = v;
              at = t1 + d;
            }
            v = xs[t2 + d];
            if (v > best) {
              best = v;
              at = t2 + d;
            }
            v = xs[t3 + d];
            if (v > best) {
              best = v;
              at = t3 + d;
            }
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
const SUM_POOL_MIN_SIZE = 1 << 16;

/**
 * Sum over leading axes (a bias gradient: dy [N,H,W,C] → [C]). Stock wasm first transposes the reduced axes
 * to the end (a full copy, then a scalar loop): 2.8 ms for 64×26×26×32 in the CNN, where XNNPACK's average
 * pooling with one window over all rows takes 0.15 ms. Two levels of pooling (blocks of ~√rows, then their
 * means), times the row count, keep float32 rounding to about that of a pairwise sum. Small inputs use a
 * float64 JS loop; other axis patterns go to the stock kernel.
 */
function makeSum(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const attrs = args.attrs ?? {};
    const x = args.inputs.x as Info;
    if (stock == null) throw new Error('hwa wasm Sum: the wasm backend has no stock Sum');
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((p, q) => p - q);
    const leading = axes.length > 0 && axes.length < rank && axes.every((ax, i) => ax === i);
    if (x.dtype !== 'float32' || !leading || size(x.shape) === 0) return stock.kernelFunc(args);
    const rows = size(x.shape.slice(0, axes.length));
    const cols = size(x.shape.slice(axes.length));
    const kept = x.shape.slice(axes.length);
    const shape = attrs.keepDims === true ? [...axes.map(() => 1), ...kept] : kept;
    if (rows * cols < SUM_POOL_MIN_SIZE) {
      const out = backend.makeOutput(shape, 'float32');
      const o = backend.typedArrayFromHeap(out);
      const xs = backend.typedArrayFromHeap(x);
      const acc = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        const base = r * cols;
        for (let c = 0; c < cols; c++) acc[c] += xs[base + c];
      }
      o.set(acc);
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
      const out = backend.makeOutput(shape, 'float32');
      const o = backend.typedArrayFromHeap(out);
      const m = backend.typedArrayFromHeap(mean);
      for (let c = 0; c < cols; c++) o[c] = m[c] * rows;
      return out;
    } finally {
      free(backend, ...owned);
    }
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

interface Replacement {
  readonly name: string;
  /** Builds the kernel function, given the stock config it replaces (null if wasm has none). */
  readonly make: (stock: tf.KernelConfig | null) => tf.KernelFunc;
}

const REPLACEMENTS: readonly Replacement[] = [
  { name: 'Conv2DBackpropFilter', make: () => conv2DBackpropFilter },
  { name: 'Conv2DBackpropInput', make: () => conv2DBackpropInput },
  { name: 'BatchMatMul', make: makeBatchMatMul },
  { name: '_FusedMatMul', make: makeFusedMatMul },
  { name: 'UnsortedSegmentSum', make: () => unsortedSegmentSum },
  { name: 'MaxPoolGrad', make: () => maxPoolGrad },
  { name: 'Sum', make: makeSum },
  { name: 'Identity', make: makeIdentity },
  { name: 'Cast', make: makeCast },
];

/** Kernel names registerWasmTrainingKernels() installs for the `wasm` backend. */
export const WASM_TRAINING_KERNELS: readonly string[] = REPLACEMENTS.map((r) => r.name);

/**
 * Registers hwa's training kernels for the `wasm` backend, replacing stock ones of the same name (their
 * `setupFunc` is kept, so the backend still initializes them). Idempotent: calling it again re-registers
 * the same kernels around the same stock ones. Works before or after `tf.setBackend('wasm')`; the module
 * `@tensorflow/tfjs-backend-wasm` must have been imported first (it registers the stock kernels).
 */
export function registerWasmTrainingKernels(): void {
  const wasm = tf.findBackend(BACKEND) as BackendWasm | null;
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
    if (stock?.setupFunc != null) {
      config.setupFunc = stock.setupFunc;
      // setBackend runs setupFuncs; a backend that is already up would never see a newly registered one.
      if (wasm != null) stock.setupFunc(wasm);
    }
    if (stock?.disposeFunc != null) config.disposeFunc = stock.disposeFunc;
    tf.registerKernel(config);
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
}
