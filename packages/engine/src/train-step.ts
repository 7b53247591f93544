/**
 * One SGD step with momentum and weight decay, PyTorch's convention (what the paper's baselines use):
 *   g ← ∇loss + λ·w ;  v ← μ·v + g ;  w ← w − η·v
 * Written with plain tf ops rather than tf.train.momentum so that the momentum buffers can be read, reset
 * and averaged at a sync (`--momentum-sync`).
 */
import * as tf from '@tensorflow/tfjs';

export interface SgdOptions {
  /** μ, SGD momentum. */
  readonly momentum: number;
  /** λ, L2 weight decay added to the gradient. */
  readonly weightDecay: number;
}

/** Mean softmax cross-entropy of logits against one-hot labels. */
export function crossEntropy(logits: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.losses.softmaxCrossEntropy(oneHot, logits) as tf.Scalar;
}

export class SgdStep {
  private readonly weights: tf.Variable[];
  private readonly velocity: tf.Variable[];
  /** Running sum of the losses since the last takeLossSum(), kept on the backend to avoid a sync per step. */
  private lossSum: tf.Variable<tf.Rank.R0>;
  /**
   * μ and λ as tensors made once: a JS number in an op becomes a new scalar tensor on every call, which costs
   * an allocation (and on native TensorFlow a trip through the C API) per weight per step.
   */
  private readonly mu: tf.Scalar;
  private readonly lambda: tf.Scalar;

  constructor(
    private readonly model: tf.LayersModel,
    private readonly options: SgdOptions,
  ) {
    this.weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
    this.velocity = this.weights.map((w) => tf.variable(tf.zerosLike(w), false));
    this.lossSum = tf.variable(tf.scalar(0), false);
    this.mu = tf.keep(tf.scalar(options.momentum));
    this.lambda = tf.keep(tf.scalar(options.weightDecay));
  }

  /** Runs one step on (x, y) with learning rate `lr`; disposes x and y. */
  run(x: tf.Tensor, y: tf.Tensor, lr: number): void {
    const { momentum, weightDecay } = this.options;
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () => crossEntropy(this.model.apply(x, { training: true }) as tf.Tensor, y),
        this.weights,
      );
      const eta = tf.scalar(lr);
      for (let i = 0; i < this.weights.length; i++) {
        const w = this.weights[i];
        let g = grads[w.name];
        if (weightDecay > 0) g = g.add(w.mul(this.lambda));
        const v = momentum > 0 ? this.velocity[i].mul(this.mu).add(g) : g;
        if (momentum > 0) this.velocity[i].assign(v);
        w.assign(w.sub(v.mul(eta)));
      }
      this.lossSum.assign(this.lossSum.add(value));
    });
    x.dispose();
    y.dispose();
  }

  /** The summed loss since the last call (one device sync), reset to 0. */
  takeLossSum(): number {
    const sum = this.lossSum.dataSync()[0];
    tf.tidy(() => this.lossSum.assign(tf.scalar(0)));
    return sum;
  }

  /** Copies the momentum buffers (trainable layout) into out[offset ..). */
  readMomentum(out: Float32Array, offset: number): void {
    let at = offset;
    for (const v of this.velocity) {
      const data = v.dataSync() as Float32Array;
      out.set(data, at);
      at += data.length;
    }
  }

  /** Sets the momentum buffers from flat[offset ..). */
  writeMomentum(flat: Float32Array, offset: number): void {
    let at = offset;
    tf.tidy(() => {
      for (const v of this.velocity) {
        v.assign(tf.tensor(flat.subarray(at, at + v.size), v.shape));
        at += v.size;
      }
    });
  }

  resetMomentum(): void {
    tf.tidy(() => {
      for (const v of this.velocity) v.assign(tf.zerosLike(v));
    });
  }

  dispose(): void {
    for (const v of this.velocity) v.dispose();
    this.lossSum.dispose();
    this.mu.dispose();
    this.lambda.dispose();
  }
}
