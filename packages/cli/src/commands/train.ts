/**
 * `hwa train` (launcher: coordinator here + K worker processes), `hwa train --in-process` (the reference
 * trainer), and `hwa coordinator` (the coordinator alone, for multi-node runs). All three report the same way
 * and export the final offline (HWA) model.
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import {
  ConfigError,
  HwaError,
  TRAINING_KEYS,
  configHash,
  makeRunConfig,
  resolveWorkers,
  trainingPart,
  type AveragerState,
  type RunConfig,
  type TrainingConfig,
  type Transport,
} from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { coordinatorCurve, mib, sharedRoom } from '@hwa/protocol';
import { LocalTrainer, saveLayersModel, trainInProcess } from '@hwa/engine';
import type { Logger } from 'pino';
import { launchWorkers, stopWorkers, type LaunchedWorker } from '../launcher.js';
import { createLogger } from '../logging.js';
import { RunReporter } from '../report.js';
import { makeRunFolder, readCheckpointState, writeCheckpoint, writeRunConfig } from '../run-folder.js';
import { prepare } from '../setup.js';

/** Thrown when SIGINT/SIGTERM stopped the run; the CLI exits 130. */
export class Interrupted extends HwaError {
  override readonly exitCode = 130;
}

/** Turns SIGINT/SIGTERM into an abort of `controller` for the duration of `body`. */
async function withSignals<T>(controller: AbortController, log: Logger, body: () => Promise<T>): Promise<T> {
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn({ event: 'run.interrupted', signal }, `${signal}: stopping the run`);
    controller.abort(new Interrupted(`stopped by ${signal}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function resolvedWorkers(config: RunConfig): RunConfig {
  if (config.gpus.length > 0) {
    if (config.workers !== undefined && config.workers !== config.gpus.length)
      throw new ConfigError(`--workers ${config.workers} and --gpus ${config.gpus.join(',')} disagree: one worker runs per listed GPU`);
    return { ...config, workers: config.gpus.length };
  }
  return config;
}

function showProgress(config: RunConfig): boolean {
  return config.progress === 'on' || (config.progress === 'auto' && Boolean(process.stderr.isTTY));
}

/**
 * `--resume DIR`: the run's own training options (DIR/config.json) with this invocation's runtime options, in
 * the same folder. A training option given now that differs from the saved one is an error, not ignored.
 */
function resumedConfig<C extends RunConfig>(input: C): C {
  const file = join(input.resume, 'config.json');
  if (!existsSync(file)) throw new ConfigError(`--resume ${input.resume}: no config.json there (is it a run folder?)`);
  const saved = makeRunConfig(trainingPart(JSON.parse(readFileSync(file, 'utf8')) as RunConfig));
  const defaults = makeRunConfig({});
  const conflicts = TRAINING_KEYS.filter((k) => {
    const given = JSON.stringify(input[k]);
    return given !== JSON.stringify(defaults[k]) && given !== JSON.stringify(saved[k]);
  }).map((k) => `${k}: ${JSON.stringify(input[k])} ≠ saved ${JSON.stringify(saved[k])}`);
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

function logResume(log: Logger, config: RunConfig, resume: AveragerState, rounds: number): void {
  log.info({ event: 'run.resumed', round: resume.round }, `resuming after round ${resume.round} of ${rounds}`);
  // Each worker's own momentum (--momentum-sync keep) comes from the worker-<rank>.state files it wrote when it
  // was stopped; a worker that was killed outright left none, and says so when it restarts from zero.
}

export async function train(input: RunConfig): Promise<void> {
  if (input.resume && input.inProcess) throw new ConfigError('--resume continues a multi-process run; --in-process (the reference trainer) always starts at round 1');
  const config = resolvedWorkers(input.resume ? resumedConfig(input) : input);
  resolveWorkers(config); // a bad --mode/--workers pair fails here, before any folder is made
  const dir = makeRunFolder(config);
  const log = createLogger({ level: config.logLevel, bindings: { role: config.inProcess ? 'trainer' : 'coordinator' }, file: join(dir, 'coordinator.log'), console: 'pretty' });
  log.info({ event: 'run.config', dir, config }, `run folder ${dir}`);
  const prepared = await prepare(config, log);
  // Fix K in the config every process reads, so that all of them hash the same options.
  const fixed: RunConfig = { ...config, workers: prepared.plan.workers };
  writeRunConfig(dir, fixed);
  const extra = { backend: prepared.backend, configHash: configHash(fixed) };
  const resume = checkpointToResume(fixed, extra.configHash);
  if (resume) logResume(log, fixed, resume, prepared.plan.rounds);
  const reporter = new RunReporter(dir, prepared.plan, log, showProgress(fixed), resume?.round);
  const controller = new AbortController();
  try {
    if (fixed.inProcess) {
      const result = await withSignals(controller, log, () =>
        trainInProcess(trainingPart(fixed), prepared.data, {
          onRound: (r) => reporter.round(r),
          onEval: (e) => reporter.evaluation(e),
          shouldStop: () => controller.signal.aborted,
        }),
      );
      reporter.stopProgress();
      if (controller.signal.aborted) {
        const file = writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: extra.configHash });
        log.warn({ event: 'checkpoint.written', file }, `checkpoint of round ${result.rounds.length} written to ${file}`);
        throw controller.signal.reason;
      }
      writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: extra.configHash });
      await exportModel(result.trainer, result.offline, dir, log);
    } else {
      const trainer = new LocalTrainer(trainingPart(fixed), prepared.plan, 0, prepared.data);
      const result = await runCoordinator({
        config: fixed,
        dir,
        log,
        trainer,
        reporter,
        controller,
        bind: localEndpoint(fixed.transport),
        spawnWorkers: true,
        resume,
      });
      await exportModel(trainer, result.offline, dir, log);
    }
  } finally {
    reporter.stopProgress();
  }
  reporter.finish(fixed, extra);
  log.info({ event: 'run.exported', dir: join(dir, 'model') }, `offline (HWA) model exported to ${join(dir, 'model')}`);
}

/** Where a launcher's coordinator binds: shm (and auto) run their messages over ipc. */
function localEndpoint(transport: Transport | 'auto'): string {
  return transport !== 'tcp'
    ? `ipc://${join(tmpdir(), `hwa-${process.pid}-${randomBytes(4).toString('hex')}.sock`)}`
    : 'tcp://127.0.0.1:*';
}

async function exportModel(trainer: LocalTrainer, offline: Float32Array, dir: string, log: Logger): Promise<void> {
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
  /** Continue from this checkpoint state. */
  resume?: AveragerState;
}

/**
 * Whether tensors go through /dev/shm: `--transport shm`, or `auto` when the launcher starts the workers
 * (so all are on this machine) and the files fit — measured 70–95 ms rounds against 300–470 ms over ipc frames
 * at 25M floats (README, Benchmarks). A standalone coordinator's workers may be anywhere: frames.
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

/** Runs the coordinator (and, for `hwa train`, its workers) to the end or to the first failure. */
async function runCoordinator(o: CoordinatorRun): Promise<{ online: Float32Array; offline: Float32Array }> {
  const { config, dir, log, trainer, reporter, controller } = o;
  const training: TrainingConfig = trainingPart(config);
  const hash = configHash(config);
  let workers: LaunchedWorker[] = [];
  const coordinator = new Coordinator({
    config: training,
    configHash: hash,
    plan: trainer.plan,
    modelSize: trainer.layout.modelSize,
    syncSize: trainer.syncSize,
    initial: trainer.initialVector(),
    bind: o.bind,
    sharedMemory: useSharedMemory(config, o.spawnWorkers, trainer, log),
    progressTimeoutMs: config.progressTimeout * 1000,
    curve: config.curveKeys ? coordinatorCurve(config.curveKeys) : undefined,
    resume: o.resume,
    log,
    signal: controller.signal,
    onBound: (endpoint) => {
      if (!o.spawnWorkers) return;
      workers = launchWorkers({
        workers: trainer.plan.workers,
        gpus: config.gpus,
        connect: endpoint,
        configFile: join(dir, 'config.json'),
        runDir: dir,
        onUnexpectedExit: (failure) => controller.abort(failure),
      });
      for (const w of workers)
        log.info(
          { event: 'worker.started', rank: w.rank, pid: w.pid, cudaVisibleDevices: config.gpus[w.rank] ?? process.env.CUDA_VISIBLE_DEVICES ?? null },
          `worker ${w.rank} started, pid ${w.pid}${config.gpus.length ? `, CUDA_VISIBLE_DEVICES=${config.gpus[w.rank]}` : ''}`,
        );
    },
    onRound: (r) => reporter.round(r),
    onEval: (e) => reporter.evaluation(e),
  });
  try {
    const result = await withSignals(controller, log, () => coordinator.run());
    writeCheckpoint(dir, { state: result.state, offline: result.offline, configHash: hash });
    // Workers exit by themselves after 'done'; give them a moment, then make sure.
    await Promise.race([Promise.all(workers.map((w) => w.exited)), new Promise((r) => setTimeout(r, 10_000).unref())]);
    return result;
  } catch (error) {
    reporter.stopProgress();
    await stopWorkers(workers);
    const state = coordinator.snapshot();
    if (state.rounds > 0) {
      const file = writeCheckpoint(dir, { state: state.state, offline: state.offline, configHash: hash });
      log.warn({ event: 'checkpoint.written', file, round: state.rounds }, `checkpoint of round ${state.rounds} written to ${file}`);
    }
    throw error;
  } finally {
    await stopWorkers(workers);
  }
}

/** `hwa coordinator --bind ADDR`: the coordinator alone; K workers join from other hosts. */
export async function coordinate(input: RunConfig & { bind: string }): Promise<void> {
  const config = input.resume ? resumedConfig(input) : input;
  const dir = makeRunFolder(config);
  const log = createLogger({ level: config.logLevel, bindings: { role: 'coordinator' }, file: join(dir, 'coordinator.log'), console: 'pretty' });
  const prepared = await prepare(config, log);
  const fixed: RunConfig = { ...config, workers: prepared.plan.workers };
  writeRunConfig(dir, fixed);
  const trainer = new LocalTrainer(trainingPart(fixed), prepared.plan, 0, prepared.data);
  const resume = checkpointToResume(fixed, configHash(fixed));
  if (resume) logResume(log, fixed, resume, prepared.plan.rounds);
  const reporter = new RunReporter(dir, prepared.plan, log, showProgress(fixed), resume?.round);
  const controller = new AbortController();
  const result = await runCoordinator({ config: fixed, dir, log, trainer, reporter, controller, bind: config.bind, spawnWorkers: false, resume });
  await exportModel(trainer, result.offline, dir, log);
  reporter.finish(fixed, { backend: prepared.backend, configHash: configHash(fixed) });
}
