/**
 * One optimizer step, PyTorch's conventions (what the paper's baselines use), written with plain tf ops rather
 * than tf.train optimizers so that the optimizer's state can be read, reset and averaged at a sync
 * (`--momentum-sync`):
 *
 *   sgd    g ← ∇loss + λ·w ;  v ← μ·v + g ;  w ← w − η·v                       state: v
 *   adam   g ← ∇loss + λ·w ;  m ← β1·m + (1−β1)·g ;  s ← β2·s + (1−β2)·g²
 *          w ← w − η·m̂ / (√ŝ + ε),  m̂ = m / (1−β1^t), ŝ = s / (1−β2^t)          state: m | s
 *   adamw  as adam without λ in g, and w ← w − η·λ·w first (decoupled decay)
 *
 * t, the step count of Adam's bias correction, is the caller's (a pure function of the step, so a resumed
 * run and every process agree).
 */
import * as tf from '@tensorflow/tfjs';
import type { OptimizerName } from '@hwa/core';
import type { LossFn } from './objective.js';

export interface OptimizerOptions {
  readonly optimizer: OptimizerName;
  /** μ, SGD momentum. */
  readonly momentum: number;
  /** λ, weight decay (L2 in the gradient for sgd and adam, decoupled for adamw). */
  readonly weightDecay: number;
  /** Adam's β1, β2 and ε. */
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
}

/** Options of the SGD-only {@link SgdStep}. */
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

const crossEntropyLoss: LossFn = (y, p) => crossEntropy(p, y);

/** State buffers an optimizer keeps per trainable weight: sgd's velocity v; adam's (and adamw's) m and s. */
const slotsOf = (optimizer: OptimizerName): number => (optimizer === 'sgd' ? 1 : 2);

/** Floats of `optimizer`'s state for `model`, without making it: one or two buffers the size of its trainable weights. */
export function optimizerStateSize(model: tf.LayersModel, optimizer: OptimizerName): number {
  return slotsOf(optimizer) * model.trainableWeights.reduce((a, w) => a + w.shape.reduce<number>((x, y) => x * (y ?? 1), 1), 0);
}

export class OptimizerStep {
  private readonly weights: tf.Variable[];
  /** The state, one buffer per trainable weight per slot: sgd [v], adam [m, s]. */
  private readonly slots: tf.Variable[][];
  /** Running sum of the losses since the last takeLossSum(), kept on the backend to avoid a sync per step. */
  private lossSum: tf.Variable<tf.Rank.R0>;
  /**
   * Constants as tensors made once: a JS number in an op becomes a new scalar tensor on every call, which costs
   * an allocation (and on native TensorFlow a trip through the C API) per weight per step.
   */
  private readonly constants: Record<'mu' | 'lambda' | 'beta1' | 'beta2' | 'oneMinusBeta1' | 'oneMinusBeta2' | 'epsilon', tf.Scalar>;

  constructor(
    private readonly model: tf.LayersModel,
    private readonly options: OptimizerOptions,
    private readonly loss: LossFn = crossEntropyLoss,
  ) {
    this.weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
    this.slots = Array.from({ length: slotsOf(options.optimizer) }, () => this.weights.map((w) => tf.variable(tf.zerosLike(w), false)));
    this.lossSum = tf.variable(tf.scalar(0), false);
    const { momentum, weightDecay, beta1, beta2, epsilon } = options;
    this.constants = tf.tidy(() => {
      const c = {
        mu: tf.scalar(momentum),
        lambda: tf.scalar(weightDecay),
        beta1: tf.scalar(beta1),
        beta2: tf.scalar(beta2),
        oneMinusBeta1: tf.scalar(1 - beta1),
        oneMinusBeta2: tf.scalar(1 - beta2),
        epsilon: tf.scalar(epsilon),
      };
      Object.values(c).forEach((t) => tf.keep(t));
      return c;
    });
  }

  /** True when the optimizer has state worth keeping (SGD without momentum has none). */
  get hasState(): boolean {
    return this.options.optimizer !== 'sgd' || this.options.momentum > 0;
  }

  /** Floats of the state: one (sgd) or two (adam) buffers the size of the trainable weights. */
  get stateSize(): number {
    return optimizerStateSize(this.model, this.options.optimizer);
  }

  /** Runs one step on (x, y) with learning rate `lr`, `t` = Adam's 1-based step count; disposes x and y. */
  run(x: tf.Tensor, y: tf.Tensor, lr: number, t = 1): void {
    const { optimizer, momentum, weightDecay } = this.options;
    const c = this.constants;
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => this.loss(y, this.model.apply(x, { training: true }) as tf.Tensor), this.weights);
      const eta = tf.scalar(lr);
      // Adam's bias corrections folded into the step size, η·√(1−β2^t)/(1−β1^t), and ε scaled to match.
      const correction1 = 1 - this.options.beta1 ** t;
      const correction2 = Math.sqrt(1 - this.options.beta2 ** t);
      const adamEta = optimizer === 'sgd' ? eta : tf.scalar((lr * correction2) / correction1);
      const adamEps = optimizer === 'sgd' ? eta : tf.scalar(this.options.epsilon * correction2);
      for (let i = 0; i < this.weights.length; i++) {
        const w = this.weights[i];
        let g = grads[w.name];
        if (optimizer === 'sgd') {
          if (weightDecay > 0) g = g.add(w.mul(c.lambda));
          const v = momentum > 0 ? this.slots[0][i].mul(c.mu).add(g) : g;
          if (momentum > 0) this.slots[0][i].assign(v);
          w.assign(w.sub(v.mul(eta)));
          continue;
        }
        if (optimizer === 'adam' && weightDecay > 0) g = g.add(w.mul(c.lambda));
        const m = this.slots[0][i].mul(c.beta1).add(g.mul(c.oneMinusBeta1));
        const s = this.slots[1][i].mul(c.beta2).add(g.square().mul(c.oneMinusBeta2));
        this.slots[0][i].assign(m);
        this.slots[1][i].assign(s);
        const decayed = optimizer === 'adamw' && weightDecay > 0 ? w.sub(w.mul(c.lambda).mul(eta)) : w;
        w.assign(decayed.sub(m.mul(adamEta).div(s.sqrt().add(adamEps))));
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

  /** Copies the state (slot after slot, each in trainable layout) into out[offset ..). */
  readState(out: Float32Array, offset: number): void {
    let at = offset;
    for (const v of this.slots.flat()) {
      const data = v.dataSync() as Float32Array;
      out.set(data, at);
      at += data.length;
    }
  }

  /** Sets the state from flat[offset ..). */
  writeState(flat: Float32Array, offset: number): void {
    let at = offset;
    tf.tidy(() => {
      for (const v of this.slots.flat()) {
        v.assign(tf.tensor(flat.subarray(at, at + v.size), v.shape));
        at += v.size;
      }
    });
  }

  resetState(): void {
    tf.tidy(() => {
      for (const v of this.slots.flat()) v.assign(tf.zerosLike(v));
    });
  }

  dispose(): void {
    for (const v of this.slots.flat()) v.dispose();
    this.lossSum.dispose();
    Object.values(this.constants).forEach((t) => t.dispose());
  }
}

/** One SGD step with momentum and weight decay on softmax cross-entropy (the step benchmark's). */
export class SgdStep extends OptimizerStep {
  constructor(model: tf.LayersModel, options: SgdOptions) {
    super(model, { optimizer: 'sgd', beta1: 0.9, beta2: 0.999, epsilon: 1e-8, ...options });
  }
}
