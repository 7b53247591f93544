import { ConfigError } from './errors.js';

/** Learning-rate schedule, as a pure function of the global step (0-based, counted per worker). */
export interface ScheduleOptions {
  /** Peak learning rate, reached after warm-up. */
  lr: number;
  /** Shape after warm-up: constant, step decay at milestones, or cosine decay to `minLr`. */
  schedule: 'constant' | 'step' | 'cosine';
  /** Linear warm-up from lr/warmupSteps to lr over this many steps (0 = none). */
  warmupSteps: number;
  /** Step schedule: steps at which the rate is multiplied by `gamma`. */
  milestones: readonly number[];
  /** Step schedule: the factor applied at each milestone. */
  gamma: number;
  /** Cosine schedule: the floor the rate decays to at `totalSteps`. */
  minLr: number;
  /** Cosine schedule: the total number of steps of the run. */
  totalSteps: number;
}

export function validateSchedule(o: ScheduleOptions): void {
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new ConfigError(`lr must be a positive number, got ${o.lr}`);
  if (!Number.isInteger(o.warmupSteps) || o.warmupSteps < 0)
    throw new ConfigError(`warmup steps must be a whole number ≥ 0, got ${o.warmupSteps}`);
  if (o.schedule === 'cosine' && !(o.totalSteps > 0))
    throw new ConfigError(`cosine schedule needs a positive total step count, got ${o.totalSteps}`);
  if (o.minLr < 0 || o.minLr > o.lr) throw new ConfigError(`min-lr must lie in [0, lr=${o.lr}], got ${o.minLr}`);
}

/** The learning rate used at `step`. */
export function learningRateAt(step: number, o: ScheduleOptions): number {
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  switch (o.schedule) {
    case 'constant':
      return o.lr;
    case 'step': {
      let rate = o.lr;
      for (const m of o.milestones) if (step >= m) rate *= o.gamma;
      return rate;
    }
    case 'cosine': {
      const span = Math.max(1, o.totalSteps - o.warmupSteps);
      const t = Math.min(1, (step - o.warmupSteps) / span);
      return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
    }
  }
}
