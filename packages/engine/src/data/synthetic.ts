/**
 * A synthetic, seeded image-classification set for tests and smoke runs: each class has one fixed random
 * prototype image, and an example is its class's prototype plus Gaussian pixel noise. Prototypes are coarse
 * (constant over 4×4 pixel blocks) so that convolution and pooling keep the class signal; a small MLP or CNN
 * separates the classes within a few hundred steps.
 *
 * Every worker process regenerates the set from the same options, so generation must be a pure function of
 * them: one mulberry32 stream for the prototypes (seed only) and one per split for the examples.
 */
import { ConfigError, mixSeed, mulberry32 } from '@hwa/core';
import type { Dataset } from './dataset.js';

/** Options of {@link syntheticDataset}. */
export interface SyntheticOptions {
  /** Number of examples. */
  readonly count: number;
  /** Image shape [height, width, channels]. */
  readonly shape: readonly [number, number, number];
  /** Number of classes; labels cycle 0, 1, …, numClasses−1 so every prefix and every shard is balanced. */
  readonly numClasses: number;
  /** Seed of the prototypes and the noise; the same options always give the same bytes. */
  readonly seed: number;
  /** Dataset name, e.g. "synthetic/train". Default `synthetic/<split>`. */
  readonly name?: string;
  /**
   * Which split to draw: train and test share the class prototypes (same seed) but draw independent noise,
   * so test accuracy measures generalisation, not memorisation. Default 'train'.
   */
  readonly split?: 'train' | 'test';
  /** Standard deviation of the per-pixel Gaussian noise; prototypes are uniform in [0, 1). Default 0.5. */
  readonly noise?: number;
}

/** Side of the square pixel blocks a prototype is constant over. */
const BLOCK = 4;

function checkOptions(o: SyntheticOptions): void {
  const positiveInt = (v: number): boolean => Number.isInteger(v) && v > 0;
  if (!Number.isInteger(o.count) || o.count < 0) {
    throw new ConfigError(`syntheticDataset: count must be a non-negative integer, got ${o.count}`);
  }
  if (o.shape.length !== 3 || !o.shape.every(positiveInt)) {
    throw new ConfigError(
      `syntheticDataset: shape must be [height, width, channels] of positive integers, got [${o.shape.join(', ')}]`,
    );
  }
  if (!positiveInt(o.numClasses) || o.numClasses > 256) {
    throw new ConfigError(
      `syntheticDataset: numClasses must be an integer in 1..256 (labels are bytes), got ${o.numClasses}`,
    );
  }
  if (!Number.isInteger(o.seed)) {
    throw new ConfigError(`syntheticDataset: seed must be an integer, got ${o.seed}`);
  }
  if (o.noise !== undefined && !(o.noise >= 0 && Number.isFinite(o.noise))) {
    throw new ConfigError(`syntheticDataset: noise must be a finite number ≥ 0, got ${o.noise}`);
  }
}

/** Prototype images of every class, NHWC, constant over BLOCK×BLOCK pixel blocks. */
function prototypes(shape: readonly [number, number, number], numClasses: number, seed: number): Float32Array {
  const [h, w, c] = shape;
  const bh = Math.ceil(h / BLOCK);
  const bw = Math.ceil(w / BLOCK);
  const random = mulberry32(mixSeed(seed, 0x9707));
  const out = new Float32Array(numClasses * h * w * c);
  const coarse = new Float32Array(bh * bw * c);
  for (let k = 0; k < numClasses; k++) {
    for (let i = 0; i < coarse.length; i++) coarse[i] = random();
    const base = k * h * w * c;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const from = (Math.floor(y / BLOCK) * bw + Math.floor(x / BLOCK)) * c;
        const to = base + (y * w + x) * c;
        for (let ch = 0; ch < c; ch++) out[to + ch] = coarse[from + ch];
      }
    }
  }
  return out;
}

/**
 * Generates a synthetic dataset. Deterministic: the same options give the same bytes, and the first n
 * examples of a larger set equal a set of count n (each example draws a fixed amount of randomness).
 */
export function syntheticDataset(options: SyntheticOptions): Dataset {
  checkOptions(options);
  const { count, numClasses, seed } = options;
  const shape: [number, number, number] = [options.shape[0], options.shape[1], options.shape[2]];
  const split = options.split ?? 'train';
  const noise = options.noise ?? 0.5;
  const size = shape[0] * shape[1] * shape[2];
  const protos = prototypes(shape, numClasses, seed);
  const random = mulberry32(mixSeed(seed, split === 'train' ? 1 : 2, 0xda7a));
  const images = new Float32Array(count * size);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const label = n % numClasses;
    labels[n] = label;
    const proto = label * size;
    const dst = n * size;
    // Box–Muller, both outputs used; an odd last pixel wastes one draw, the same for every example.
    for (let i = 0; i < size; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - random())) * noise;
      const theta = 2 * Math.PI * random();
      images[dst + i] = protos[proto + i] + r * Math.cos(theta);
      if (i + 1 < size) images[dst + i + 1] = protos[proto + i + 1] + r * Math.sin(theta);
    }
  }
  return { name: options.name ?? `synthetic/${split}`, count, shape, numClasses, images, labels };
}
