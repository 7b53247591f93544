/**
 * `hwa launch --node-average`: a node's launcher runs its node averager (@hwa/coordinator node-averager.ts) on
 * a fresh ipc endpoint and starts the node's G workers against it instead of against the coordinator; the
 * averager joins the coordinator for their ranks (docs/processes.md#two-level-averaging). Node 0 does the same
 * beside its coordinator, reaching it over loopback.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configHash, runConfigSchema, trainingPart, type RunConfig } from '@hwa/core';
import { NodeAverager } from '@hwa/coordinator';
import { workerCurve } from '@hwa/protocol';
import type { Logger } from 'pino';
import { launchWorkers, logWorkersStarted, stopWorkers, workerThreads, type LaunchedWorker } from './launcher.js';
import { launcherSocket, removeSocketFile } from './leftovers.js';
import { ioError } from './run-folder.js';

/** Whether a launch node averages its workers first: `--node-average`, by default when it runs more than one. */
export function nodeAveraging(config: { nodeAverage?: boolean; nprocPerNode?: number }): boolean {
  return config.nodeAverage ?? (config.nprocPerNode ?? 1) > 1;
}

/**
 * Writes `node-<R>.config.json` in `dir`: the options `hwa train` takes, as its config.json holds them, which
 * the node's workers read. Behind a node averager they talk to it over a local socket, never to the
 * coordinator, so they get no CURVE keys (the averager uses its first rank's toward the coordinator).
 */
export function writeNodeConfig(dir: string, nodeRank: number, config: RunConfig, behindAverager: boolean): string {
  const file = join(dir, `node-${nodeRank}.config.json`);
  const run = Object.fromEntries(Object.keys(runConfigSchema.shape).map((k) => [k, config[k as keyof RunConfig]]));
  if (behindAverager) run.curveKeys = '';
  try {
    writeFileSync(file, JSON.stringify(run, null, 2) + '\n');
  } catch (e) {
    throw ioError(`cannot write ${file}`, e);
  }
  return file;
}

export interface NodeRun {
  /** Resolves once the run is done and the node's workers have exited; rejects with the node's failure. */
  done: Promise<void>;
  /** Stops the node: its workers and the coordinator are told why. */
  abort(reason: Error): void;
}

export interface NodeRunOptions {
  /** The run's options, K fixed. */
  config: RunConfig;
  nodeRank: number;
  /** This node's ranks. */
  ranks: readonly number[];
  /** The coordinator's endpoint. */
  upstream: string;
  /** Where the node's worker logs and config go. */
  dir: string;
  log: Logger;
}

/** Starts the node averager and, once it is bound, the node's workers connected to it. */
export function startNodeRun(o: NodeRunOptions): NodeRun {
  const { config, ranks, log } = o;
  const controller = new AbortController();
  const configFile = writeNodeConfig(o.dir, o.nodeRank, config, true);
  const bind = launcherSocket();
  let workers: LaunchedWorker[] = [];
  const averager = new NodeAverager({
    config: trainingPart(config),
    configHash: configHash(config),
    workers: config.workers ?? ranks.length,
    ranks,
    upstream: o.upstream,
    bind,
    log,
    signal: controller.signal,
    curve: config.curveKeys ? workerCurve(config.curveKeys, ranks[0]) : undefined,
    heartbeatTimeoutMs: config.heartbeatTimeout * 1000,
    onBound: (endpoint) => {
      workers = launchWorkers({
        workers: config.workers ?? ranks.length,
        ranks,
        gpus: config.gpus,
        threads: workerThreads(config.threads, ranks.length),
        connect: endpoint,
        configFile,
        runDir: o.dir,
        onUnexpectedExit: (failure) => controller.abort(failure),
      });
      logWorkersStarted(log, workers, config.gpus, `node ${o.nodeRank}: `, ` (through the node averager at ${endpoint})`);
    },
  });
  const done = (async () => {
    try {
      await averager.run();
      // After `done` the workers exit by themselves; give them a moment, then make sure.
      await Promise.race([Promise.all(workers.map((w) => w.exited)), new Promise((r) => setTimeout(r, 10_000).unref())]);
    } finally {
      await stopWorkers(workers);
      removeSocketFile(bind);
    }
  })();
  return { done, abort: (reason) => controller.abort(reason) };
}
