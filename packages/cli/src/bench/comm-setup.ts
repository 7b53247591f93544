/**
 * What the communication benchmark's two sides must agree on: one case (vector size, K, dtype, chunking, round
 * count) and the training config and run plan both derive from it, so the coordinator in the bench process
 * and the worker processes hash the same options and run the same rounds.
 */
import { makeRunConfig, trainingPart, type RunPlan, type TrainingConfig, type WireDtype } from '@hwa/core';

/** One benchmark case, as the bench passes it to each worker process (JSON on its command line). */
export interface CommCase {
  /** N: floats of the exchanged vector. */
  floats: number;
  /** K: worker processes. */
  workers: number;
  dtype: WireDtype;
  /** Floats per chunk (0 = one frame per vector). */
  chunkFloats: number;
  /** hwa: online + offline (window) average, as training runs it; localsgd: online average only. */
  mode: 'hwa' | 'localsgd';
  /** I, the offline window (hwa). Each slot holds a copy of the vector. */
  window: number;
  /** Rounds run in all: warm-up + measured + the final one (which carries evaluation traffic, not measured). */
  rounds: number;
}

/** The arguments of one benchmark worker process. */
export interface CommWorkerArgs {
  case: CommCase;
  rank: number;
  /** The raw echo ROUTER's endpoint (first phase; empty: no echo, as in node-averaged cases). */
  echo: string;
  /** The coordinator's endpoint, or its node averager's (second phase). */
  connect: string;
}

/** The arguments of one node averager process (node-averaged cases). */
export interface CommNodeArgs {
  case: CommCase;
  /** The node's ranks. */
  ranks: number[];
  /** The coordinator's endpoint. */
  upstream: string;
  /** Where the node's workers connect. */
  bind: string;
}

/** The training options of a case: one local step per round, nothing else that a stub trainer would read. */
export function commConfig(c: CommCase): TrainingConfig {
  return trainingPart(
    makeRunConfig({
      mode: c.mode,
      workers: c.workers,
      syncPeriod: 1,
      window: c.window,
      wireDtype: c.dtype,
      chunkFloats: c.chunkFloats,
    }),
  );
}

/**
 * A plan of `rounds` one-step rounds forming a single epoch, so the only evaluation round is the last one
 * (the bench leaves it out of the statistics).
 */
export function commPlan(c: CommCase): RunPlan {
  return {
    workers: c.workers,
    syncPeriod: 1,
    stepsPerEpoch: c.rounds,
    totalSteps: c.rounds,
    rounds: c.rounds,
    offline: c.mode === 'hwa' ? 'window' : 'none',
    offlineStartRound: 1,
  };
}
