/**
 * A custom convolutional network for 28×28×1 images (MNIST), with BatchNorm and Dropout:
 *
 *   hwa train --model examples/custom-cnn/net.js --dataset mnist --workers 2
 *
 * hwa calls the default export with its tfjs instance. The last layer outputs logits: the default loss,
 * softmax cross-entropy, applies the softmax itself. Seeded initializers and dropout make θ0 and every step
 * reproducible from run to run (θ0 itself always comes from the coordinator, so workers agree regardless).
 */
export default function model(tf) {
  let seed = 1;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  return tf.sequential({
    name: 'custom_cnn',
    layers: [
      tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() }),
      tf.layers.batchNormalization({ momentum: 0.9 }),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init() }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dropout({ rate: 0.25, seed: seed++ }),
      tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: seed++ }) }),
    ],
  });
}
