/**
 * hwa's wasm Conv2D and depthwise-convolution gradient kernels equal the cpu backend's (tolerance: see
 * test/helpers/wasm-vs-cpu.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { CONV_CASES, convShapes, kernelPad, label } from '../helpers/conv-cases.js';
import { type Pad, random, count, expectSame, useWasmAndCpu } from '../helpers/wasm-vs-cpu.js';

useWasmAndCpu();

describe('wasm Conv2D and depthwise convolution gradient kernels equal the cpu backend', () => {
  it.each(CONV_CASES.map((c) => [label(c), c] as const))('Conv2DBackpropFilter, %s', async (_, c) => {
    const s = convShapes(c);
    const x = random(count(s.x), 1);
    const dy = random(count(s.dy), 2);
    const attrs = { strides: c.s, pad: kernelPad(c), dataFormat: c.nchw ? 'NCHW' : 'NHWC', filterShape: s.filter };
    await expectSame(
      'Conv2DBackpropFilter',
      () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(x, s.x), dy: tf.tensor(dy, s.dy) }, attrs) as tf.Tensor,
    );
  });

  it.each(CONV_CASES.map((c) => [label(c), c] as const))('Conv2DBackpropInput, %s', async (_, c) => {
    const s = convShapes(c);
    const filter = random(count(s.filter), 3);
    const dy = random(count(s.dy), 4);
    const attrs = { strides: c.s, pad: kernelPad(c), dataFormat: c.nchw ? 'NCHW' : 'NHWC', inputShape: s.x };
    await expectSame(
      'Conv2DBackpropInput',
      () =>
        tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dy, s.dy), filter: tf.tensor(filter, s.filter) }, attrs) as tf.Tensor,
    );
  });

  it.each([
    ['multiplier 1, stride 1 same', [2, 7, 6, 3], [3, 3, 3, 1], 1, 'same'],
    ['multiplier 2, stride 2 valid', [3, 9, 8, 2], [3, 3, 2, 2], 2, 'valid'],
    ['multiplier 3, stride 2 same, 5×5', [2, 11, 10, 4], [5, 5, 4, 3], 2, 'same'],
    ['explicit pads', [1, 6, 7, 2], [2, 3, 2, 1], 1, [[0, 0], [1, 2], [0, 3], [0, 0]]],
  ] as const)('DepthwiseConv2dNative gradients, %s', async (_, xShape, filterShape, stride, pad) => {
    const info = tf.backend_util.computeConv2DInfo(
      [...xShape] as [number, number, number, number],
      [...filterShape] as [number, number, number, number],
      stride,
      1,
      pad as Pad,
      undefined,
      true,
    );
    const x = random(count(xShape), 16);
    const filter = random(count(filterShape), 17);
    const dy = random(count(info.outShape), 18);
    const attrs = { strides: stride, dilations: 1, pad };
    await expectSame('DepthwiseConv2dNativeBackpropFilter', () =>
      tf.engine().runKernel(
        'DepthwiseConv2dNativeBackpropFilter',
        { x: tf.tensor(x, [...xShape]), dy: tf.tensor(dy, info.outShape) },
        { ...attrs, filterShape: [...filterShape] },
      ) as tf.Tensor,
    );
    await expectSame('DepthwiseConv2dNativeBackpropInput', () =>
      tf.engine().runKernel(
        'DepthwiseConv2dNativeBackpropInput',
        { dy: tf.tensor(dy, info.outShape), filter: tf.tensor(filter, [...filterShape]) },
        { ...attrs, inputShape: [...xShape] },
      ) as tf.Tensor,
    );
  });
});
