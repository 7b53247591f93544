/**
 * The networks hwa trains, built with tfjs-layers so they export as standard LayersModels. Initializers are
 * seeded per layer, so every process that builds a model from the same seed gets the same θ0.
 *
 *   mlp      784-256-128-10, ReLU                          (MNIST-sized inputs, any shape is flattened)
 *   cnn      conv3×3·32 → maxpool → conv3×3·64 → maxpool → dense 128 → 10 ('valid' padding, like Keras' mnist_cnn)
 *   resnet20 He et al. 2016 CIFAR ResNet-20: 3 stages × 3 basic blocks (16/32/64 channels), BatchNorm,
 *            1×1-conv projection shortcuts where the shape changes, global average pooling
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelName } from '@hwa/core';

export interface ModelSpec {
  readonly name: ModelName;
  /** Shape of one input: [height, width, channels] of an image (cnn, resnet20); any shape for mlp. */
  readonly inputShape: readonly number[];
  readonly numClasses: number;
  /** Seed of the weight initializers. */
  readonly seed: number;
}

export function buildModel(spec: ModelSpec): tf.LayersModel {
  let layerSeed = spec.seed * 1000;
  // tfjs reads a seed of 0 as "no seed" and draws from Math.random (`seed ? seed : Math.random()`): -1 stands in.
  const nextSeed = () => {
    const s = layerSeed++;
    return s === 0 ? -1 : s;
  };
  const kernel = () => tf.initializers.heNormal({ seed: nextSeed() });
  const glorot = () => tf.initializers.glorotUniform({ seed: nextSeed() });
  const input = tf.input({ shape: [...spec.inputShape], name: 'image' });
  let x: tf.SymbolicTensor;
  switch (spec.name) {
    case 'mlp': {
      x = spec.inputShape.length > 1 ? (tf.layers.flatten().apply(input) as tf.SymbolicTensor) : input;
      for (const units of [256, 128])
        x = tf.layers.dense({ units, activation: 'relu', kernelInitializer: glorot() }).apply(x) as tf.SymbolicTensor;
      break;
    }
    case 'cnn': {
      x = input;
      for (const filters of [32, 64]) {
        x = tf.layers
          .conv2d({ filters, kernelSize: 3, activation: 'relu', kernelInitializer: kernel() })
          .apply(x) as tf.SymbolicTensor;
        x = tf.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tf.SymbolicTensor;
      }
      x = tf.layers.flatten().apply(x) as tf.SymbolicTensor;
      x = tf.layers.dense({ units: 128, activation: 'relu', kernelInitializer: glorot() }).apply(x) as tf.SymbolicTensor;
      break;
    }
    case 'resnet20': {
      const conv = (t: tf.SymbolicTensor, filters: number, strides: number, size = 3) =>
        tf.layers
          .conv2d({ filters, kernelSize: size, strides, padding: 'same', useBias: false, kernelInitializer: kernel() })
          .apply(t) as tf.SymbolicTensor;
      const bn = (t: tf.SymbolicTensor) =>
        tf.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-5 }).apply(t) as tf.SymbolicTensor;
      const relu = (t: tf.SymbolicTensor) => tf.layers.activation({ activation: 'relu' }).apply(t) as tf.SymbolicTensor;
      x = relu(bn(conv(input, 16, 1)));
      let channels = 16;
      for (const [stage, filters] of [16, 32, 64].entries()) {
        for (let block = 0; block < 3; block++) {
          const strides = stage > 0 && block === 0 ? 2 : 1;
          let shortcut = x;
          if (strides !== 1 || channels !== filters) shortcut = bn(conv(x, filters, strides, 1));
          let y = relu(bn(conv(x, filters, strides)));
          y = bn(conv(y, filters, 1));
          x = relu(tf.layers.add().apply([y, shortcut]) as tf.SymbolicTensor);
          channels = filters;
        }
      }
      x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
      break;
    }
  }
  // Logits: the loss applies log-softmax itself (numerically stable); the exported model outputs logits too.
  const logits = tf.layers.dense({ units: spec.numClasses, kernelInitializer: glorot(), name: 'logits' }).apply(x);
  return tf.model({ inputs: input, outputs: logits as tf.SymbolicTensor, name: spec.name });
}
