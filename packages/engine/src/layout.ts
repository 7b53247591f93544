/**
 * A model's weights as one flat Float32Array, in a fixed, documented order:
 *
 *   [ trainable weights, in model.trainableWeights order (layer order; within a layer kernel, bias /
 *     gamma, beta) | non-trainable weights (BatchNorm moving mean, moving variance, in layer order) ]
 *
 * The trainable part comes first so that the optimizer's momentum (one buffer per trainable weight) has the
 * same layout as the prefix. This is the vector that travels on the wire and that the averagers see.
 */
import * as tf from '@tensorflow/tfjs';

export interface LayoutEntry {
  /** tfjs variable name, e.g. "dense_Dense1/kernel". */
  readonly name: string;
  readonly shape: readonly number[];
  /** First float of this weight in the flat vector. */
  readonly offset: number;
  /** Number of floats. */
  readonly size: number;
  readonly trainable: boolean;
}

export class WeightLayout {
  readonly entries: readonly LayoutEntry[];
  /** Floats of the trainable part (also the size of the momentum vector). */
  readonly trainableSize: number;
  /** Floats of the whole model (trainable + BatchNorm statistics). */
  readonly modelSize: number;
  private readonly variables: readonly tf.LayerVariable[];

  constructor(model: tf.LayersModel) {
    this.variables = [...model.trainableWeights, ...model.nonTrainableWeights];
    let offset = 0;
    this.entries = this.variables.map((v) => {
      const size = v.shape.reduce<number>((a, b) => a * (b ?? 1), 1);
      const entry = { name: v.name, shape: v.shape.map((d) => d ?? 1), offset, size, trainable: v.trainable };
      offset += size;
      return entry;
    });
    this.trainableSize = this.entries.filter((e) => e.trainable).reduce((a, e) => a + e.size, 0);
    this.modelSize = offset;
  }

  /** Copies the model's current weights into `out[0 .. modelSize)`. */
  read(out: Float32Array): Float32Array {
    this.variables.forEach((v, i) => out.set(v.read().dataSync() as Float32Array, this.entries[i].offset));
    return out;
  }

  /** Sets the model's weights from `flat[0 .. modelSize)`. */
  write(flat: Float32Array): void {
    this.variables.forEach((v, i) => {
      const e = this.entries[i];
      // tf.tensor copies the data (the caller may reuse `flat`); assign() shares the new tensor's storage and
      // holds its own reference, so tidy() may dispose the temporary.
      tf.tidy(() => {
        v.write(tf.tensor(flat.subarray(e.offset, e.offset + e.size), e.shape as number[]));
      });
    });
  }

  /** The flat vector of the model's current weights (a new array). */
  snapshot(): Float32Array {
    return this.read(new Float32Array(this.modelSize));
  }
}
