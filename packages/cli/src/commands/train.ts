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
  TRAINING_KEYS,
  configHash,
  makeRunConfig,
  tallyToMetrics,
  trainingPart,
  type AveragerState,
  type RunConfig,
  type Transport,
} from '@hwa/core';
import { coordinatorCurve } from '@hwa/protocol';
import { hasBatchNorm, LocalTrainer, RunModel, saveLayersModel, trainInProcess, type Workload, type WorkloadOutline } from '@hwa/engine';
import type * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import { crossCheck } from '../checks.js';
import { runCoordinator, type LaunchNode } from '../coordinator-run.js';
import { launcherSocket, removeStaleLeftovers } from '../leftovers.js';
import { createLogger } from '../logging.js';
import { emitRunFailed, progressMode, RunReporter, type ReportOptions } from '../report.js';
import { makeRunFolder, optionConflicts, readCheckpointState, writeCheckpoint, writeRunConfig } from '../run-folder.js';
import { prepare, prepareOutline, type Prepared } from '../setup.js';
import { withSignals } from '../signals.js';
import { makeWorkload, pinModules } from '../user-modules.js';

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

/**
 * What every run that coordinates has once it has started: its folder, log, workload (loaded in-process, only
 * sized for a coordinator), fixed options and reporter.
 */
interface StartedRun<C extends RunConfig, W extends Workload | WorkloadOutline = WorkloadOutline> {
  dir: string;
  log: Logger;
  prepared: Prepared<W>;
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
async function startRun<C extends RunConfig>(input: C, role: 'coordinator'): Promise<StartedRun<C>>;
async function startRun<C extends RunConfig>(input: C, role: 'trainer', workload?: Workload): Promise<StartedRun<C, Workload>>;
async function startRun<C extends RunConfig>(input: C, role: 'trainer' | 'coordinator', workload?: Workload): Promise<StartedRun<C, Workload | WorkloadOutline>> {
  // User files are pinned to their content first: the options every process hashes cover them.
  const config = await pinModules(input);
  const dir = makeRunFolder(config);
  const log = createLogger({ level: config.logLevel, bindings: { role }, file: join(dir, 'coordinator.log'), console: 'pretty' });
  log.info({ event: 'run.config', dir, config }, `run folder ${dir}`);
  try {
    const prepared: Prepared<Workload | WorkloadOutline> = role === 'trainer' ? await prepare(config, log, workload) : await prepareOutline(config, log);
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

/**
 * The coordinator's side of a started run, to the exported model: the run's model (θ0, the vector sizes and the
 * export; no data), the rounds with workers started here (`spawnWorkers`: all K, or a launch node's) or joining
 * from elsewhere.
 */
async function coordinateToEnd(run: StartedRun<RunConfig>, bind: string, spawnWorkers: boolean, node?: LaunchNode): Promise<void> {
  const { dir, log, prepared, fixed, reporter, controller, resume } = run;
  const model = await RunModel.create(fixed, prepared.workload.createModel);
  const result = await runCoordinator({ config: fixed, configHash: run.extra.configHash, dir, log, model, plan: prepared.plan, hasValidation: prepared.workload.hasValidation, reporter, controller, bind, spawnWorkers, node, resume });
  await finishOnCoordinator(run, model, result);
}

/**
 * Exports θ_HWA and, with a validation split, scores the test set. Only these need examples — the test set, and
 * training batches when `--bn recompute` re-estimates a BatchNorm model's statistics — so only then does the
 * coordinator load the data, after the rounds, when the workers no longer need the memory.
 */
async function finishOnCoordinator(run: StartedRun<RunConfig>, model: RunModel, result: { online: Float32Array; offline: Float32Array }): Promise<void> {
  const { dir, log, prepared, fixed, reporter } = run;
  const needs = [
    ...(prepared.workload.hasValidation ? ['the test set is scored'] : []),
    ...(fixed.bn === 'recompute' && hasBatchNorm(model.model) ? ['BatchNorm statistics are re-estimated for the export (--bn recompute)'] : []),
  ];
  if (needs.length === 0) return exportModel(model.model, (v) => model.write(v), result.offline, dir, log);
  log.info({ event: 'data.loading', reasons: needs }, `loading the data now that the rounds are over: ${needs.join(', and ')}`);
  const trainer = new LocalTrainer(trainingPart(fixed), prepared.plan, 0, await makeWorkload(fixed), model.model);
  scoreTestSet(trainer, result.online, result.offline, reporter);
  await exportModel(trainer.model, (v) => trainer.prepareForEval(v), result.offline, dir, log);
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
  if (config.inProcess) {
    const run = await startRun(config, 'trainer', workload);
    return runToEnd(run, () => trainHere(run));
  }
  const run = await startRun(config, 'coordinator');
  return runToEnd(run, () => coordinateToEnd(run, localEndpoint(run.fixed.transport, run.log), true));
}

/** Runs a started run's `body` to its exported model, reporting the end (finished or failed). Returns the run folder. */
async function runToEnd<W extends Workload | WorkloadOutline>(run: StartedRun<RunConfig, W>, body: () => Promise<void>): Promise<string> {
  const { dir, log, fixed, extra, reporter } = run;
  try {
    await body();
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

/** `hwa train --in-process`: the reference trainer, all K copies in this process, to the exported model. */
async function trainHere(run: StartedRun<RunConfig, Workload>): Promise<void> {
  const { dir, log, prepared, fixed, extra, reporter, controller } = run;
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
  const checkpoint = { state: result.state, offline: result.offline, configHash: extra.configHash };
  if (result.diverged) {
    // θ̄ would have turned non-finite: keep the last finite round, export nothing.
    const file = writeCheckpoint(dir, checkpoint);
    log.warn({ event: 'checkpoint.written', file, round: result.state.round }, `checkpoint of round ${result.state.round}, the last finite one, written to ${file}`);
    throw result.diverged;
  }
  if (controller.signal.aborted) {
    const file = writeCheckpoint(dir, checkpoint);
    log.warn({ event: 'checkpoint.written', file }, `checkpoint of round ${result.rounds.length} written to ${file}`);
    throw controller.signal.reason;
  }
  writeCheckpoint(dir, checkpoint);
  scoreTestSet(result.trainer, result.online, result.offline, reporter);
  await exportModel(result.trainer.model, (v) => result.trainer.prepareForEval(v), result.offline, dir, log);
}

/** Where a launcher's coordinator binds: shm (and auto) run their messages over ipc. */
function localEndpoint(transport: Transport | 'auto', log: Logger): string {
  // What runs killed outright left behind (socket files, /dev/shm folders) goes first.
  const removed = removeStaleLeftovers();
  if (removed.length) log.info({ event: 'leftovers.removed', paths: removed }, `removed ${removed.length} socket file(s) or shared-memory folder(s) of runs that no longer run`);
  return transport !== 'tcp' ? launcherSocket() : 'tcp://127.0.0.1:*';
}

/** Saves θ_HWA as a LayersModel; `load` puts a model vector into `model` (and readies it for evaluation). */
async function exportModel(model: tf.LayersModel, load: (modelVector: Float32Array) => void, offline: Float32Array, dir: string, log: Logger): Promise<void> {
  // Never reached with a non-finite θ_HWA (rounds refuse non-finite contributions); checked all the same.
  const bad = offline.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new DivergenceError(`θ_HWA holds ${offline[bad]} at element ${bad}: no model is exported to ${join(dir, 'model')}`, -1);
  load(offline);
  await saveLayersModel(model, join(dir, 'model'));
  log.debug({ event: 'model.saved', dir: join(dir, 'model') });
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
  await runToEnd(run, () => coordinateToEnd(run, config.bind, node !== undefined, node));
}
