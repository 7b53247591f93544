/**
 * `hwa launch`: the same command on every node of a cluster job, as torchrun is run (deploy/slurm, deploy/k8s):
 *
 *     hwa launch --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr node0 --master-port 29500 [train options]
 *     hwa launch --nnodes 2 --node-rank 1 --nproc-per-node 4 --master-addr node0 --master-port 29500 [train options]
 *
 * Node 0 runs the coordinator, bound to tcp://0.0.0.0:<master port>, and its own G workers; node R starts G
 * workers with ranks R·G … R·G+G−1 that connect to tcp://<master addr>:<master port>. K = nnodes × G, one GPU
 * per worker when --gpus lists G ids (launcher.ts). Node 0 writes the run folder (config.json, logs, metrics,
 * checkpoints, model/); node R keeps its workers' logs in its own folder, or in the same one when --out-dir is a
 * shared file system (a Kubernetes volume, a cluster home).
 *
 * With G > 1 workers a node averages them first (`--node-average`, the default then; node-average.ts): the
 * node's launcher runs a node averager that its workers connect to, and one vector per node crosses the
 * network each way per round.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { launchShape, ROLE_RUNTIME_KEYS, runtimeShape, trainingShape, WorkerFailure, type RunConfig } from '@hwa/core';
import { launchWorkers, logWorkersStarted, stopWorkers, workerThreads } from '../launcher.js';
import { nodeAveraging, startNodeRun, writeNodeConfig } from '../node-average.js';
import { createLogger } from '../logging.js';
import { ioError } from '../run-folder.js';
import { whileStoppable } from '../signals.js';
import { coordinate } from './train.js';

/** Every option of `hwa coordinator` (no --bind: the master port decides it) and the node's place in the job. */
export const launchSchema = z
  .object({
    ...trainingShape,
    ...Object.fromEntries(ROLE_RUNTIME_KEYS.coordinator.filter((k) => k !== 'transport').map((k) => [k, runtimeShape[k]])),
    gpus: runtimeShape.gpus.describe('GPU ids of this node, one worker per id (sets CUDA_VISIBLE_DEVICES per worker); nproc-per-node defaults to their number'),
    ...launchShape,
  })
  .strict();

export type LaunchConfig = RunConfig & z.output<z.ZodObject<typeof launchShape>>;

/** The global ranks node `nodeRank` starts: R·G … R·G+G−1. */
export function nodeRanks(nodeRank: number, perNode: number): number[] {
  return Array.from({ length: perNode }, (_, i) => nodeRank * perNode + i);
}

export async function launch(config: LaunchConfig): Promise<void> {
  // main.ts's crossCheck has fixed nprocPerNode and K (= workers).
  const perNode = config.nprocPerNode ?? 1;
  const ranks = nodeRanks(config.nodeRank, perNode);
  const host = config.masterAddr.includes(':') ? `[${config.masterAddr}]` : config.masterAddr;
  const nodeAverage = nodeAveraging(config);
  if (config.nodeRank === 0) {
    // Frames over tcp: the other nodes' workers cannot reach this node's /dev/shm.
    await coordinate({ ...config, transport: 'tcp', bind: `tcp://0.0.0.0:${config.masterPort}` }, { ranks, nodeAverage });
    return;
  }
  await workerNode(config, ranks, `tcp://${host}:${config.masterPort}`, nodeAverage);
}

/**
 * Node R > 0: its G workers, until all have exited; the first that fails stops the others and the node. With
 * node averaging the workers connect to this node's averager, which joins the coordinator for them.
 */
async function workerNode(config: LaunchConfig, ranks: readonly number[], connect: string, nodeAverage: boolean): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = resolve(config.outDir || join('runs', `${stamp}-${config.mode}-${config.model}-node${config.nodeRank}`));
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw ioError(`cannot create ${dir}`, e);
  }
  const log = createLogger({ level: config.logLevel, bindings: { role: 'launch' }, console: 'pretty' });
  let failure: Error | undefined;
  let stop: () => void;
  let finished: Promise<void>;
  if (nodeAverage) {
    const node = startNodeRun({ config, nodeRank: config.nodeRank, ranks, upstream: connect, dir, log });
    stop = () => node.abort(failure ?? new Error('stopped'));
    finished = node.done.catch((e: Error) => {
      failure ??= e;
    });
  } else {
    // Beside node 0's config.json when the folder is shared: every node writes only files of its own.
    const configFile = writeNodeConfig(dir, config.nodeRank, config, false);
    const workers = launchWorkers({
      workers: config.workers ?? ranks.length,
      ranks,
      gpus: config.gpus,
      threads: workerThreads(config.threads, ranks.length),
      connect,
      configFile,
      runDir: dir,
      onUnexpectedExit: (f: WorkerFailure) => {
        failure ??= f;
        void stopWorkers(workers);
      },
    });
    logWorkersStarted(log, workers, config.gpus, `node ${config.nodeRank}: `, `, connecting to ${connect}`);
    stop = () => void stopWorkers(workers);
    finished = Promise.all(workers.map((w) => w.exited)).then(() => {});
  }
  await whileStoppable(
    (reason) => {
      failure ??= reason;
      stop();
    },
    () => finished,
  );
  if (failure) throw failure;
  log.info({ event: 'node.done', node: config.nodeRank, ranks, dir }, `node ${config.nodeRank}: workers ${ranks.join(', ')} finished (logs in ${dir})`);
}
