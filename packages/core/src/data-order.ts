/**
 * Which training images a worker uses at each local step: a pure function of (seed, rank, epoch, step), so
 * a worker process and the in-process reference draw identical batches and a resumed run continues exactly.
 */
import type { TrainingConfig } from './config.js';
import { mixSeed, mulberry32, permutation } from './rng.js';

export class DataOrder {
  private epoch = -1;
  private order: Uint32Array = new Uint32Array(0);
  private readonly shardStart: number;
  private readonly shardSize: number;

  constructor(
    private readonly config: Pick<TrainingConfig, 'seed' | 'batchSize' | 'dataSplit'>,
    /** Images in the training set. */
    readonly count: number,
    readonly workers: number,
    readonly rank: number,
    /** Steps in one epoch (from the run plan). */
    readonly stepsPerEpoch: number,
  ) {
    const shard = config.dataSplit === 'shard';
    this.shardSize = shard ? Math.floor(count / workers) : count;
    this.shardStart = shard ? rank * this.shardSize : 0;
  }

  /** Indices of the batch of local step `step` (a view valid until the next call with another epoch). */
  batch(step: number): Uint32Array {
    const epoch = Math.floor(step / this.stepsPerEpoch);
    if (epoch !== this.epoch) {
      const perm = permutation(this.shardSize, mulberry32(mixSeed(this.config.seed, this.rank, epoch, 0x5eed)));
      if (this.shardStart !== 0) for (let i = 0; i < perm.length; i++) perm[i] += this.shardStart;
      this.order = perm;
      this.epoch = epoch;
    }
    const start = (step % this.stepsPerEpoch) * this.config.batchSize;
    return this.order.subarray(start, start + this.config.batchSize);
  }
}
