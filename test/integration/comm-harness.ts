/**
 * Drives the real Coordinator and K real worker loops (`runWorker` with a VectorTrainer) inside one process,
 * over real sockets, for the communication tests. Each rank's "training" is a deterministic change of its
 * vector, so runs can be compared bit for bit.
 */
import { configHash, makeRunConfig, trainingPart, type RoundRecord, type RunPlan, type TrainingConfig, type WireDtype } from '@hwa/core';
import { Coordinator, NodeAverager } from '@hwa/coordinator';
import { VectorTrainer, runWorker } from '@hwa/worker';
import pino, { type Logger } from 'pino';
import type { CoordinatorCurve, WorkerCurve } from '@hwa/protocol';
import { releaseAddress, uniqueAddress, type Transport } from '../helpers/addresses.js';

export interface CommRun {
  transport: Transport;
  /** Tensors through shared-memory files (`--transport shm`) instead of payload frames. */
  shared?: boolean;
  /** Folder for the shared-memory files (default /dev/shm). */
  sharedRoot?: string;
  /** The coordinator's `averageThreads`, and the shortest vector it splits (`averageThreadsMinFloats`). */
  averageThreads?: number;
  averageThreadsMinFloats?: number;
  /** Called once the coordinator is bound, with its endpoint, before the workers start. */
  onBound?: (endpoint: string) => unknown;
  /** Rank `rank`'s stand-in for training (default {@link fakeStep}), and its reported loss (default 0). */
  step?: (rank: number) => (vector: Float32Array, round: number) => void;
  loss?: (rank: number) => (round: number) => number;
  /** Training options rank `rank` runs with instead of the coordinator's (a mismatched worker). */
  workerConfig?: (rank: number) => Partial<TrainingConfig>;
  /** CURVE keys: the coordinator's, and each rank's (`undefined` for a rank = that worker without CURVE). */
  curve?: { coordinator: CoordinatorCurve; workers: (WorkerCurve | undefined)[] };
  /** Worker receive timeout (ms, default 20 s). */
  receiveTimeoutMs?: number;
  /** The coordinator's logger (default silent). */
  coordinatorLog?: Logger;
  /**
   * Two-level averaging: the sizes of consecutive groups of ranks, each group's workers behind a NodeAverager of
   * its own (over ipc, tensors in its shared memory), which joins the coordinator for them. Absent: flat.
   */
  nodes?: number[];
  /** Floats of the synced vector. */
  syncSize: number;
  /** Floats of its model prefix (the rest stands for extra synced buffers such as momentum). */
  modelSize: number;
  workers: number;
  dtype: WireDtype;
  chunkFloats: number;
  restart: 'online' | 'offline';
  rounds: number;
  /** Rounds per epoch: evaluation (and its θ_HWA broadcast) happens after each epoch and the last round. */
  roundsPerEpoch: number;
  window: number;
}

export interface CommResult {
  online: Float32Array;
  offline: Float32Array;
  /** Each rank's vector at the end (what it restarted from after the last round). */
  workers: Float32Array[];
  records: RoundRecord[];
  config: TrainingConfig;
  plan: RunPlan;
  initial: Float32Array;
}

export function commConfig(r: CommRun): TrainingConfig {
  return trainingPart(
    makeRunConfig({
      mode: 'hwa',
      workers: r.workers,
      syncPeriod: 1,
      window: r.window,
      restart: r.restart,
      wireDtype: r.dtype,
      chunkFloats: r.chunkFloats,
    }),
  );
}

export function commPlan(r: CommRun): RunPlan {
  return {
    workers: r.workers,
    syncPeriod: 1,
    stepsPerEpoch: r.roundsPerEpoch,
    totalSteps: r.rounds,
    rounds: r.rounds,
    offline: 'window',
    offlineStartRound: 1,
  };
}

/** θ0: weight-like values, deterministic. */
export function initialVector(n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + 1) * 0.05);
}

/** Rank `rank`'s stand-in for training in round `round`: a small deterministic change of every float. */
export function fakeStep(rank: number): (vector: Float32Array, round: number) => void {
  return (v, round) => {
    for (let i = 0; i < v.length; i++) v[i] = v[i] * 0.99 + (((i * 31 + rank * 17 + round * 13) % 101) - 50) * 1e-4;
  };
}

const silent = pino({ level: 'silent' });

/** Runs the configuration to the end; rejects if any side fails. */
export async function runDistributed(r: CommRun): Promise<CommResult> {
  const address = await uniqueAddress(r.transport);
  const config = commConfig(r);
  const plan = commPlan(r);
  const initial = initialVector(r.syncSize);
  const records: RoundRecord[] = [];
  const controller = new AbortController();
  const nodeAddresses: string[] = [];
  const trainers = Array.from(
    { length: r.workers },
    (_, rank) => new VectorTrainer({ plan, syncSize: r.syncSize, modelSize: r.modelSize, step: (r.step ?? fakeStep)(rank), loss: r.loss?.(rank) }),
  );
  try {
    let bound!: (endpoint: string) => void;
    const endpoint = new Promise<string>((resolve) => (bound = resolve));
    const coordinator = new Coordinator({
      config,
      configHash: configHash(config),
      plan,
      modelSize: r.modelSize,
      syncSize: r.syncSize,
      initial,
      bind: address,
      sharedMemory: r.shared,
      sharedRoot: r.sharedRoot,
      averageThreads: r.averageThreads,
      averageThreadsMinFloats: r.averageThreadsMinFloats,
      curve: r.curve?.coordinator,
      log: r.coordinatorLog ?? silent,
      signal: controller.signal,
      joinTimeoutMs: 20_000,
      onBound: bound,
      onRound: (rec) => records.push(rec),
    });
    const coordinated = coordinator.run();
    const at = await Promise.race([endpoint, coordinated.then(() => address)]);
    await r.onBound?.(at);
    // Each rank's endpoint: the coordinator's, or its node averager's.
    const connectTo = trainers.map(() => at);
    const nodes: Promise<void>[] = [];
    let first = 0;
    for (const size of r.nodes ?? []) {
      const ranks = Array.from({ length: size }, (_, i) => first + i);
      const bind = await uniqueAddress('ipc');
      nodeAddresses.push(bind);
      for (const rank of ranks) connectTo[rank] = bind;
      const node = new NodeAverager({
        config,
        configHash: configHash(config),
        workers: r.workers,
        ranks,
        upstream: at,
        bind,
        sharedRoot: r.sharedRoot,
        log: silent,
        signal: controller.signal,
        // Toward the coordinator a node presents its first rank's keys; its workers talk to it without CURVE.
        curve: r.curve?.workers[first],
      }).run();
      // Handled at once: a node may fail while the next one's address is still being found.
      node.catch((e: unknown) => controller.abort(e));
      nodes.push(node);
      first += size;
    }
    const workers = trainers.map((trainer, rank) =>
      runWorker({
        config: { ...config, ...r.workerConfig?.(rank) },
        rank,
        connect: connectTo[rank],
        trainer,
        backend: 'none',
        log: silent,
        signal: controller.signal,
        receiveTimeoutMs: r.receiveTimeoutMs ?? 20_000,
        curve: r.nodes ? undefined : r.curve?.workers[rank],
      }),
    );
    // The first failure anywhere stops the others, so a test fails fast instead of timing out.
    const all = [coordinated, ...nodes, ...workers];
    for (const p of all) p.catch((e: unknown) => controller.abort(e));
    const [result] = await Promise.all([coordinated, ...nodes, ...workers]);
    return { online: result.online, offline: result.offline, workers: trainers.map((t) => t.vector), records, config, plan, initial };
  } finally {
    controller.abort(new Error('test over'));
    releaseAddress(address);
    nodeAddresses.forEach(releaseAddress);
  }
}

/** The bit patterns of a float vector (so −0 ≠ 0 and NaN payloads count). */
export function bitsOf(v: Float32Array): Uint32Array {
  return new Uint32Array(v.buffer, v.byteOffset, v.length);
}
