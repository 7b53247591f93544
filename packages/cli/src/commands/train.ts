/**
 * `hwa train` (launcher: coordinator here + K worker processes), `hwa train --in-process` (the reference
 * trainer), and `hwa coordinator` (the coordinator alone, for multi-node runs). All three report the same way
 * and export the final offline (HWA) model.
 */
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import {
  ConfigError,
  DivergenceError,
  evaluatesAfterRound,
  TRAINING_KEYS,
  configHash,
  makeRunConfig,
  tallyToMetrics,
  trainingPart,
  type AveragerState,
  type RunConfig,
  type TrainingConfig,
  type Transport,
  WorkerFailure,
  type WorkerFailurePolicy,
} from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { coordinatorCurve, mib, sharedRoom } from '@hwa/protocol';
import { LocalTrainer, saveLayersModel, trainInProcess, type Workload } from '@hwa/engine';
import type { Logger } from 'pino';
import { launchWorker, launchWorkers, logWorkersStarted, stopWorkers, workerThreads, type LaunchedWorker, type LaunchOptions } from '../launcher.js';
import { startNodeRun, type NodeRun } from '../node-average.js';
import { createLogger } from '../logging.js';
import { emitRunFailed, progressMode, RunReporter, type ReportOptions } from '../report.js';
import { crossCheck } from '../checks.js';
import { makeRunFolder, optionConflicts, readCheckpointState, resumeCommand, writeCheckpoint, writeRunConfig } from '../run-folder.js';
import { launcherSocket, removeSocketFile, removeStaleLeftovers } from '../leftovers.js';
import { prepare, type Prepared } from '../setup.js';
import { whileStoppable } from '../signals.js';
import { pinModules } from '../user-modules.js';

/** Turns SIGINT/SIGTERM (and a parent's exit) into an abort of `controller` for the duration of `body`. */
function withSignals<T>(controller: AbortController, log: Logger, body: () => Promise<T>): Promise<T> {
  // Started by `hwa compare` (it has its IPC channel): the channel closing means the parent is gone, and a run
  // nobody waits for stops with a checkpoint rather than go on alone. The channel must not keep this process up.
  process.channel?.unref();
  return whileStoppable(
    (reason, cause) => {
      if (cause === 'disconnect') log.warn({ event: 'run.interrupted', reason: 'parent exited' }, `${reason.message}: stopping the run`);
      else log.warn({ event: 'run.interrupted', signal: cause }, `${cause}: stopping the run`);
      controller.abort(reason);
    },
    body,
    { onDisconnect: process.send !== undefined },
  );
}

/** How this run reports (see report.ts), from its options. */
function reportOptions(config: RunConfig, resumedRound = 0): ReportOptions {
  return {
    progress: progressMode(config.progress),
    progressEverySec: config.progressEvery,
    json: config.json,
    tensorboard: config.tensorboard,
    resumedRound,
  };
}

/**
 * `--resume DIR`: the run's own training options (DIR/config.json) with this invocation's runtime options, in
 * the same folder. A training option given now that differs from the saved one is an error, not ignored.
 */
function resumedConfig<C extends RunConfig>(input: C): C {
  const file = join(input.resume, 'config.json');
  if (!existsSync(file)) throw new ConfigError(`--resume ${input.resume}: no config.json there (is it a run folder?)`);
  const saved = makeRunConfig(trainingPart(JSON.parse(readFileSync(file, 'utf8')) as RunConfig));
  const conflicts = optionConflicts(TRAINING_KEYS, input, saved, makeRunConfig({}));
  if (conflicts.length) throw new ConfigError(`--resume takes the training options from ${file}; these differ: ${conflicts.join('; ')}`);
  return { ...input, ...trainingPart(saved), outDir: input.resume };
}

/** The checkpoint to resume from, checked against the options this run hashes. */
function checkpointToResume(config: RunConfig, hash: string): AveragerState | undefined {
  if (!config.resume) return undefined;
  const { meta, state } = readCheckpointState(config.resume);
  if (meta.configHash !== hash)
    throw new ConfigError(`--resume ${config.resume}: the checkpoint was written with training options hash ${meta.configHash}, config.json now hashes to ${hash}`);
  return state;
}

/**
 * Logs where a resumed run continues. The checkpoint restores θ̄, the round and the offline average; each
 * worker's own momentum (--momentum-sync keep) is not in it: every resumed worker loads the
 * worker-<rank>.state files it wrote when it was stopped, and logs when it has none and restarts from zero
 * (docs/processes.md#checkpoints-and---resume).
 */
function logResume(log: Logger, resume: AveragerState, rounds: number): void {
  log.info({ event: 'run.resumed', round: resume.round }, `resuming after round ${resume.round} of ${rounds}`);
}

/** What every run that coordinates has once it has started: its folder, log, data, fixed options and reporter. */
interface StartedRun<C extends RunConfig> {
  dir: string;
  log: Logger;
  prepared: Prepared;
  /** The options with K fixed, as every process reads them from the run's config.json. */
  fixed: C;
  /** What run.json records beside the totals. */
  extra: { backend: Prepared['backend']; configHash: string };
  resume?: AveragerState;
  reporter: RunReporter;
  controller: AbortController;
}

/**
 * The start every coordinating run shares (`hwa train`, `hwa coordinator`, node 0 of `hwa launch`): the run
 * folder, the log and its config line, backend and data, the options with K fixed (hashed once), the
 * checkpoint to resume from and the reporter.
 */
async function startRun<C extends RunConfig>(input: C, role: 'trainer' | 'coordinator', workload?: Workload): Promise<StartedRun<C>> {
  // User files are pinned to their content first: the options every process hashes cover them.
  const config = await pinModules(input);
  const dir = makeRunFolder(config);
  const log = createLogger({ level: config.logLevel, bindings: { role }, file: join(dir, 'coordinator.log'), console: 'pretty' });
  log.info({ event: 'run.config', dir, config }, `run folder ${dir}`);
  try {
    const prepared = await prepare(config, log, workload);
    // Fix K in the config every process reads, so that all of them hash the same options.
    const fixed: C = { ...config, workers: prepared.plan.workers };
    writeRunConfig(dir, fixed);
    const extra = { backend: prepared.backend, configHash: configHash(fixed) };
    const resume = checkpointToResume(fixed, extra.configHash);
    if (resume) logResume(log, resume, prepared.plan.rounds);
    const reporter = new RunReporter(dir, prepared.plan, log, reportOptions(fixed, resume?.round));
    return { dir, log, prepared, fixed, extra, resume, reporter, controller: new AbortController() };
  } catch (error) {
    // Before the first round (no data, no backend, a bad checkpoint): no reporter yet, the event all the same.
    emitRunFailed(config.json, dir, error, 0);
    throw error;
  }
}

/** `hwa launch` on node 0: the ranks it starts beside the coordinator, and whether a node averager joins them. */
export interface LaunchNode {
  ranks: readonly number[];
  nodeAverage: boolean;
}

/**
 * The coordinator's side of a started run, to the exported model: rank 0's trainer (for θ0, the vector sizes and
 * the export), the rounds with workers started here (`spawnWorkers`: all K, or a launch node's) or joining from
 * elsewhere.
 */
async function coordinateToEnd(run: StartedRun<RunConfig>, bind: string, spawnWorkers: boolean, node?: LaunchNode): Promise<void> {
  const { dir, log, prepared, fixed, reporter, controller, resume } = run;
  const trainer = await LocalTrainer.create(trainingPart(fixed), prepared.plan, 0, prepared.workload);
  const result = await runCoordinator({ config: fixed, dir, log, trainer, reporter, controller, bind, spawnWorkers, node, resume });
  scoreTestSet(trainer, result.online, result.offline, reporter);
  await exportModel(trainer, result.offline, dir, log);
}

/**
 * With a validation set, evaluations during the run never look at the test set: it is scored here, once, for
 * θ̄ and θ_HWA of the last round.
 */
function scoreTestSet(trainer: LocalTrainer, online: Float32Array, offline: Float32Array, reporter: RunReporter): void {
  if (!trainer.hasValidation) return;
  const on = tallyToMetrics(trainer.evaluateTest(online.subarray(0, trainer.modelSize)));
  reporter.testSet({ online: on, offline: tallyToMetrics(trainer.evaluateTest(offline)) });
}

/**
 * `hwa train`. Returns the run folder.
 * @param workload - the programmatic API's in-memory workload, for --in-process runs only (workers build
 *   theirs from the options).
 */
export async function train(input: RunConfig, workload?: Workload): Promise<string> {
  // main.ts has checked these already (so that --dry-run fails alike); checked again for other callers.
  const config = crossCheck('train', input.resume ? resumedConfig(input) : input);
  if (workload && !config.inProcess) throw new ConfigError('an in-memory workload trains in-process only; worker processes build theirs from --model and --dataset');
  const run = await startRun(config, config.inProcess ? 'trainer' : 'coordinator', workload);
  const { dir, log, prepared, fixed, extra, reporter, controller } = run;
  try {
    if (fixed.inProcess) {
      const result = await withSignals(controller, log, () =>
        trainInProcess(trainingPart(fixed), prepared.workload, {
          onRound: (r) => reporter.round(r),
          onEval: (e) => reporter.evaluation(e),
          onRefused: (round, rank, reason) =>
            log.warn({ event: 'round.refused', round, rank, reason }, `refused rank ${rank}'s contribution to round ${round}: ${reason}; the round averages the other workers`),
          shouldStop: () => controller.signal.aborted,
        }),
      );
      reporter.stopProgress();
      if (result.diverged) {
        // θ̄ would have turned non-finite: keep the last finite round, export nothing.
        const file = writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: extra.configHash });
        log.warn({ event: 'checkpoint.written', file, round: result.state.round }, `checkpoint of round ${result.state.round}, the last finite one, written to ${file}`);
        throw result.diverged;
      }
      if (controller.signal.aborted) {
        const file = writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: extra.configHash });
        log.warn({ event: 'checkpoint.written', file }, `checkpoint of round ${result.rounds.length} written to ${file}`);
        throw controller.signal.reason;
      }
      writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: extra.configHash });
      scoreTestSet(result.trainer, result.online, result.offline, reporter);
      await exportModel(result.trainer, result.offline, dir, log);
    } else {
      await coordinateToEnd(run, localEndpoint(fixed.transport, log), true);
    }
  } catch (error) {
    reporter.fail(error);
    throw error;
  } finally {
    reporter.stopProgress();
  }
  reporter.finish(fixed, extra);
  log.info({ event: 'run.exported', dir: join(dir, 'model') }, `offline (HWA) model exported to ${join(dir, 'model')}`);
  return dir;
}

/** Where a launcher's coordinator binds: shm (and auto) run their messages over ipc. */
function localEndpoint(transport: Transport | 'auto', log: Logger): string {
  // What runs killed outright left behind (socket files, /dev/shm folders) goes first.
  const removed = removeStaleLeftovers();
  if (removed.length) log.info({ event: 'leftovers.removed', paths: removed }, `removed ${removed.length} socket file(s) or shared-memory folder(s) of runs that no longer run`);
  return transport !== 'tcp' ? launcherSocket() : 'tcp://127.0.0.1:*';
}

async function exportModel(trainer: LocalTrainer, offline: Float32Array, dir: string, log: Logger): Promise<void> {
  // Never reached with a non-finite θ_HWA (rounds refuse non-finite contributions); checked all the same.
  const bad = offline.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new DivergenceError(`θ_HWA holds ${offline[bad]} at element ${bad}: no model is exported to ${join(dir, 'model')}`, -1);
  trainer.prepareForEval(offline);
  await saveLayersModel(trainer.model, join(dir, 'model'));
  log.debug({ event: 'model.saved', dir: join(dir, 'model') });
}

interface CoordinatorRun {
  config: RunConfig;
  dir: string;
  log: Logger;
  trainer: LocalTrainer;
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
 * all are on this machine) and the files fit — measured 70–95 ms rounds against 300–470 ms over ipc frames at
 * 25M floats (docs/measurements.md#shared-memory-vs-sockets). A standalone coordinator's workers may be
 * anywhere: frames.
 */
function useSharedMemory(config: RunConfig, localWorkers: boolean, trainer: LocalTrainer, log: Logger): boolean {
  if (config.transport !== 'auto') return config.transport === 'shm';
  if (!localWorkers) return false;
  const layout = { workers: trainer.plan.workers, syncSize: trainer.syncSize, modelSize: trainer.layout.modelSize, dtype: config.wireDtype };
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
async function runCoordinator(o: CoordinatorRun): Promise<{ online: Float32Array; offline: Float32Array }> {
  const { config, dir, log, trainer, reporter, controller } = o;
  const training: TrainingConfig = trainingPart(config);
  const hash = configHash(config);
  let workers: LaunchedWorker[] = [];
  let node: NodeRun | null = null;
  const local = o.node?.ranks ?? Array.from({ length: trainer.plan.workers }, (_, rank) => rank);
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
  const waiting = waitForRanks(config, trainer.plan.workers, log, launcher ? 'debug' : 'info');
  const coordinator = new Coordinator({
    config: training,
    configHash: hash,
    plan: trainer.plan,
    modelSize: trainer.layout.modelSize,
    syncSize: trainer.syncSize,
    initial: trainer.initialVector(),
    evalSet: trainer.hasValidation ? 'validation' : 'test',
    bind: o.bind,
    sharedMemory: useSharedMemory(config, launcher, trainer, log),
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
        workers: trainer.plan.workers,
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
      if (r.round < trainer.plan.rounds && (every > 0 ? r.round % every === 0 : evaluatesAfterRound(trainer.plan, r.round))) {
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

/**
 * `hwa coordinator --bind ADDR`: the coordinator alone; K workers join from other hosts. `hwa launch` on node 0
 * passes its `node`: the ranks it starts beside the coordinator, and whether behind a node averager.
 */
export async function coordinate(input: RunConfig & { bind: string }, node?: LaunchNode): Promise<void> {
  const config = input.resume ? resumedConfig(input) : input;
  // Bad or missing keys fail here, before a run folder is made for a run that cannot start.
  if (config.curveKeys) coordinatorCurve(config.curveKeys);
  const run = await startRun(config, 'coordinator');
  try {
    await coordinateToEnd(run, config.bind, node !== undefined, node);
  } catch (error) {
    run.reporter.fail(error);
    throw error;
  }
  run.reporter.finish(run.fixed, run.extra);
}
