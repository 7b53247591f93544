/**
 * The coordinator role's process side, for `hwa train`, `hwa coordinator` and node 0 of `hwa launch`: the
 * Coordinator on its socket, the workers it starts (all K, a node's, or none) and what their failures do,
 * periodic checkpoints, and the "waiting for ranks" line (docs/processes.md#the-coordinator).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  DivergenceError,
  evaluatesAfterRound,
  trainingPart,
  WorkerFailure,
  type AveragerState,
  type RunConfig,
  type RunPlan,
  type TrainingConfig,
  type WorkerFailurePolicy,
} from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import type { RunModel } from '@hwa/engine';
import { coordinatorCurve, mib, sharedRoom } from '@hwa/protocol';
import type { Logger } from 'pino';
import { launchWorker, launchWorkers, logWorkersStarted, stopWorkers, workerThreads, type LaunchedWorker, type LaunchOptions } from './launcher.js';
import { removeSocketFile } from './leftovers.js';
import { startNodeRun, type NodeRun } from './node-average.js';
import type { RunReporter } from './report.js';
import { resumeCommand, writeCheckpoint } from './run-folder.js';
import { withSignals } from './signals.js';

/** `hwa launch` on node 0: the ranks it starts beside the coordinator, and whether a node averager joins them. */
export interface LaunchNode {
  ranks: readonly number[];
  nodeAverage: boolean;
}

export interface CoordinatorRun {
  config: RunConfig;
  /** The hash of `config`'s training options, computed once when the run started. */
  configHash: string;
  dir: string;
  log: Logger;
  /** The run's model: θ0 and the vector sizes. */
  model: RunModel;
  plan: RunPlan;
  /** Evaluations score a validation split (the test set is scored at the end). */
  hasValidation: boolean;
  reporter: RunReporter;
  controller: AbortController;
  bind: string;
  /** Start K local worker processes once bound (`hwa train`), or wait for remote ones (`hwa coordinator`). */
  spawnWorkers: boolean;
  /**
   * `hwa launch` on node 0: start only its ranks here (the other nodes start theirs), behind a node averager
   * with `nodeAverage`; absent: all K (`hwa train`) or none (`hwa coordinator`).
   */
  node?: LaunchNode;
  /** Continue from this checkpoint state. */
  resume?: AveragerState;
}

/**
 * Whether tensors go through /dev/shm: `--transport shm`, or `auto` when the launcher starts the workers (so
 * all are on this machine) and the files fit — measured 64 ms rounds against about 400 ms over ipc frames at
 * 25M floats (docs/measurements.md#shared-memory-vs-sockets). A standalone coordinator's workers may be
 * anywhere: frames.
 */
function useSharedMemory(config: RunConfig, localWorkers: boolean, sizes: { workers: number; syncSize: number; modelSize: number }, log: Logger): boolean {
  if (config.transport !== 'auto') return config.transport === 'shm';
  if (!localWorkers) return false;
  const layout = { ...sizes, dtype: config.wireDtype };
  const { need, free } = sharedRoom(layout);
  const fits = free >= need * 2; // leave room for other users of /dev/shm
  log.info(
    { event: 'transport.chosen', transport: fits ? 'shm' : 'ipc', needBytes: need, freeBytes: free },
    fits
      ? `transport auto: shm (the run's tensors need ${mib(need)} MiB of shared memory)`
      : `transport auto: ipc (shared memory has ${mib(free)} MiB free, the run's tensors need ${mib(need)} MiB)`,
  );
  return fits;
}

/** A rank whose process fails this many times in a row without checking in again stops the run (a crash loop). */
const RESPAWNS_IN_A_ROW = 3;

/**
 * What a worker's failure does (docs/processes.md#elastic-workers): `--on-worker-failure`, else `respawn` for
 * `hwa train` (it starts the workers itself), `continue` for `hwa coordinator` and `abort` for `hwa launch`
 * (a cluster job ends with a node's failure and is restarted by the cluster).
 */
function failurePolicy(config: RunConfig, launcher: boolean, node: boolean): WorkerFailurePolicy {
  return config.onWorkerFailure ?? (launcher ? 'respawn' : node ? 'abort' : 'continue');
}

/** Runs the coordinator (and, for `hwa train`, its workers) to the end or to the first failure. */
export async function runCoordinator(o: CoordinatorRun): Promise<{ online: Float32Array; offline: Float32Array }> {
  const { config, dir, log, model, plan, reporter, controller } = o;
  const training: TrainingConfig = trainingPart(config);
  const hash = o.configHash;
  let workers: LaunchedWorker[] = [];
  let node: NodeRun | null = null;
  const local = o.node?.ranks ?? Array.from({ length: plan.workers }, (_, rank) => rank);
  const launcher = o.spawnWorkers && !o.node;
  const policy = failurePolicy(config, launcher, o.node !== undefined);
  /** Set once the rounds are over: a worker exiting then is not restarted. */
  let over = false;
  const failuresInARow = new Map<number, number>();
  let launchOptions: LaunchOptions | null = null;
  /** A worker started here exited before the run was over: stop the run, or drop it and maybe start it again. */
  const workerExited = (failure: WorkerFailure) => {
    if (over || controller.signal.aborted) return;
    if (policy === 'abort') return controller.abort(failure);
    coordinator.dropRank(failure.rank, failure.message);
    if (policy !== 'respawn' || !launchOptions) return;
    const times = (failuresInARow.get(failure.rank) ?? 0) + 1;
    failuresInARow.set(failure.rank, times);
    if (times > RESPAWNS_IN_A_ROW)
      return controller.abort(new WorkerFailure(`worker ${failure.rank} failed ${times} times in a row without checking in again; the last time: ${failure.message}`, failure.rank));
    const worker = launchWorker(launchOptions, failure.rank);
    workers = workers.map((w) => (w.rank === failure.rank ? worker : w));
    log.info({ event: 'worker.respawned', rank: worker.rank, pid: worker.pid }, `worker ${worker.rank} started again, pid ${worker.pid}; it rejoins at the next round`);
  };
  const waiting = waitForRanks(config, plan.workers, log, launcher ? 'debug' : 'info');
  const coordinator = new Coordinator({
    config: training,
    configHash: hash,
    plan: plan,
    modelSize: model.modelSize,
    syncSize: model.syncSize,
    initial: model.initialVector(),
    evalSet: o.hasValidation ? 'validation' : 'test',
    bind: o.bind,
    sharedMemory: useSharedMemory(config, launcher, { workers: plan.workers, syncSize: model.syncSize, modelSize: model.modelSize }, log),
    averageThreads: config.averageThreads,
    // hwa train's workers are all here: no byte crosses to another machine, nothing to count.
    localRanks: launcher ? undefined : o.spawnWorkers ? local : [],
    progressTimeoutMs: config.progressTimeout * 1000,
    heartbeatTimeoutMs: config.heartbeatTimeout * 1000,
    onWorkerFailure: policy,
    joinTimeoutMs: timerMs(config.joinTimeout),
    onJoin: (info) => {
      waiting.joined(info.rank);
      failuresInARow.delete(info.rank);
    },
    // A rank dropped for its silence may still run here (hung): end it, and its exit starts it again.
    onLeave: ({ rank }) => workers.find((w) => w.rank === rank && w.child.exitCode === null && w.child.signalCode === null)?.child.kill('SIGKILL'),
    curve: config.curveKeys ? coordinatorCurve(config.curveKeys) : undefined,
    resume: o.resume,
    log,
    signal: controller.signal,
    onBound: (endpoint) => {
      waiting.start();
      if (!o.spawnWorkers) return;
      // A tcp coordinator bound to every interface is reached on loopback from its own node.
      const connect = endpoint.replace('tcp://0.0.0.0:', 'tcp://127.0.0.1:');
      if (o.node?.nodeAverage) {
        node = startNodeRun({ config, nodeRank: 0, ranks: local, upstream: connect, dir, log });
        node.done.catch((failure: unknown) => controller.abort(failure));
        return;
      }
      launchOptions = {
        workers: plan.workers,
        ranks: local,
        gpus: config.gpus,
        threads: workerThreads(config.threads, local.length),
        connect,
        configFile: join(dir, 'config.json'),
        runDir: dir,
        onUnexpectedExit: workerExited,
      };
      workers = launchWorkers(launchOptions);
      logWorkersStarted(log, workers, config.gpus);
    },
    onRound: (r) => {
      reporter.round(r);
      // Periodic checkpoints: a coordinator killed outright loses at most --checkpoint-every rounds.
      const every = config.checkpointEvery;
      if (r.round < plan.rounds && (every > 0 ? r.round % every === 0 : evaluatesAfterRound(plan, r.round))) {
        try {
          const t0 = performance.now();
          const snap = coordinator.snapshot();
          const file = writeCheckpoint(dir, { state: snap.state, offline: snap.offline, configHash: hash });
          log.info({ event: 'checkpoint.written', file, round: snap.rounds, ms: Math.round(performance.now() - t0) }, `checkpoint of round ${snap.rounds} written`);
        } catch (error) {
          // A full or read-only disk stops the run, naming the file (the previous checkpoint is intact).
          controller.abort(error);
        }
      }
    },
    onEval: (e) => reporter.evaluation(e),
  });
  try {
    const result = await withSignals(controller, log, () => coordinator.run());
    over = true;
    writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: hash });
    // Workers (and a node averager) exit by themselves after 'done'; give them a moment, then make sure.
    const exited = [...workers.map((w) => w.exited), ...(node ? [(node as NodeRun).done.catch(() => {})] : [])];
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 10_000).unref())]);
    return result;
  } catch (error) {
    over = true;
    reporter.stopProgress();
    await stopNode(node, error);
    await stopWorkers(workers);
    const state = coordinator.snapshot();
    if (state.rounds > 0) {
      try {
        const file = writeCheckpoint(dir, { state: state.state, offline: state.offline, configHash: hash });
        log.warn({ event: 'checkpoint.written', file, round: state.rounds }, `checkpoint of round ${state.rounds} written to ${file}`);
      } catch (e) {
        // The run's own error is the one to report; the last checkpoint on disk is untouched.
        log.warn({ event: 'checkpoint.failed', round: state.rounds, reason: (e as Error).message }, `no checkpoint of round ${state.rounds}: ${(e as Error).message}`);
      }
    }
    if (existsSync(join(dir, 'checkpoint.json')) && !(error instanceof DivergenceError)) {
      const command = resumeCommand(launcher ? 'train' : 'coordinator', dir, { ...config, bind: launcher ? undefined : o.bind });
      log.warn({ event: 'run.resumable', command }, `continue this run with: ${command}${launcher ? '' : ' (and restart its workers)'}`);
    }
    throw error;
  } finally {
    waiting.stop();
    await stopNode(node, new Error('the coordinator stopped'));
    await stopWorkers(workers);
    removeSocketFile(o.bind);
  }
}

/** Stops node 0's averager (a no-op once it has finished) and waits until it and its workers are gone. */
async function stopNode(node: NodeRun | null, reason: unknown): Promise<void> {
  if (!node) return;
  node.abort(reason instanceof Error ? reason : new Error(String(reason)));
  await node.done.catch(() => {});
}

/** The longest a Node timer can wait (about 24.8 days); longer or 0 (= forever) is this. */
const FOREVER_MS = 2 ** 31 - 1;
const timerMs = (seconds: number): number => (seconds > 0 ? Math.min(seconds * 1000, FOREVER_MS) : FOREVER_MS);
/** How often a coordinator waiting for its workers names the missing ranks. */
const WAITING_EVERY_MS = 5000;

/**
 * "waiting for ranks 2, 3 (2 of 4 joined, 15 s of --join-timeout 600 s)" every few seconds until all K have
 * checked in: on a cluster a node that never started is otherwise silent until the join timeout.
 */
function waitForRanks(config: RunConfig, workers: number, log: Logger, level: 'info' | 'debug') {
  const joined = new Set<number>();
  let timer: NodeJS.Timeout | undefined;
  let since = 0;
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };
  return {
    start() {
      since = performance.now();
      timer = setInterval(() => {
        const missing = Array.from({ length: workers }, (_, r) => r).filter((r) => !joined.has(r));
        const waited = Math.round((performance.now() - since) / 1000);
        const limit = config.joinTimeout > 0 ? ` of --join-timeout ${config.joinTimeout} s` : '';
        log[level](
          { event: 'workers.waiting', missing, joined: joined.size, workers, waitedSec: waited },
          `waiting for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (${joined.size} of ${workers} joined, ${waited} s${limit})`,
        );
      }, WAITING_EVERY_MS).unref();
    },
    joined(rank: number) {
      joined.add(rank);
      if (joined.size >= workers) stop();
    },
    stop,
  };
}
