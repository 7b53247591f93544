/**
 * The programmatic API: a model factory and in-memory data handed to train(), which runs hwa's coordinator
 * and 2 worker processes, then returns θ_HWA, θ̄ and the metrics. The task is multi-label: which of three
 * bits of a noisy 6-number code are set (sigmoid cross-entropy, one logit per label).
 *
 *   npm run build && node examples/api/train.mjs [run-folder]
 *
 * In an installed project the import reads `from 'hwa'` too.
 */
import { train, tf } from 'hwa';

/** Examples of a noisy code: 6 inputs spreading 3 bits, 3 labels (the bits). Fixed seed, so every run agrees. */
function examples(count, seed) {
  let s = seed;
  const random = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const xs = [];
  const ys = [];
  for (let i = 0; i < count; i++) {
    const bits = [random() < 0.5 ? 1 : 0, random() < 0.5 ? 1 : 0, random() < 0.5 ? 1 : 0];
    const [a, b, c] = bits.map((v) => 2 * v - 1);
    xs.push([a + b, b - c, a * c, a, c - a, b].map((v) => v + (random() - 0.5) * 0.6));
    ys.push(bits);
  }
  return { xs, ys };
}

const outDir = process.argv[2];
const result = await train({
  model: (tfjs) =>
    tfjs.sequential({
      layers: [
        tfjs.layers.dense({ inputShape: [6], units: 16, activation: 'relu', kernelInitializer: tfjs.initializers.glorotUniform({ seed: 1 }) }),
        tfjs.layers.dense({ units: 3, kernelInitializer: tfjs.initializers.glorotUniform({ seed: 2 }) }),
      ],
    }),
  data: { train: examples(512, 1), test: examples(128, 2) },
  loss: 'sigmoid-cross-entropy',
  optimizer: { name: 'adam', lr: 0.02 },
  hwa: { workers: 2, syncPeriod: 4, window: 4 },
  batchSize: 32,
  epochs: 2,
  ...(outDir ? { outDir } : {}),
});

const last = result.evals.at(-1);
console.log(`run folder ${result.dir}`);
console.log(`θ_HWA: ${(last.offline.accuracy * 100).toFixed(1)}% of test examples with all 3 labels right (loss ${last.offline.loss.toFixed(4)})`);
const probe = tf.tensor2d([[2, 0, 1, 1, -1, 1]]);
console.log(`θ_HWA on [2, 0, 1, 1, -1, 1]: label probabilities ${Array.from(tf.sigmoid(result.offline.predict(probe)).dataSync(), (p) => p.toFixed(2)).join(', ')}`);
