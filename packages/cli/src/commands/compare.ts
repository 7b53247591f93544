/**
 * `hwa compare --modes sgd,localsgd,swa,lawa,ema,hwa --seeds 3 [train options]`: every mode trained with the
 * same options, one `hwa train` process after another (the real launcher, each run in its own folder under
 * the comparison's), then one report of all of them and a markdown results table, mean ± std over seeds.
 *
 * What is the same for every mode of a seed: data, model, initialization (seeded), data order (per seed, rank
 * and epoch), SGD options and schedule, and the budget, counted as epochs per worker: each model copy passes
 * over its data `--epochs` times. hwa and localsgd train K copies, so they see K times the samples of the
 * one-copy modes; the table shows the samples of each run so that this is in plain view.
 *
 * The comparison folder holds compare.json (what to run), `<mode>-seed<s>/` run folders, report.html and
 * results.md. Stopped, it continues with `hwa compare --resume DIR`: finished runs are kept, a stopped run
 * resumes from its checkpoint, a run stopped before its first checkpoint starts again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  ConfigError,
  DataError,
  HwaError,
  MODES,
  TRAINING_KEYS,
  makeRunConfig,
  runtimeShape,
  trainingShape,
  type Mode,
  type RunConfig,
} from '@hwa/core';
import type { Logger } from 'pino';
import { crossCheck } from '../checks.js';
import { envWithoutOptions, MAIN } from '../launcher.js';
import { createLogger } from '../logging.js';
import { emitJson } from '../report.js';
import { comparisonCharts } from '../report-charts.js';
import { describeTraining, REPORT_FILE, reportHtml } from '../report-html.js';
import { markdownTable, resultsTable, runResult, summarize, type TextTable } from '../results.js';
import { ioError, optionConflicts, writeFileAtomic } from '../run-folder.js';
import { isRunFolder, readRunRecords } from '../run-records.js';
import { Interrupted } from '../signals.js';

const { mode: _mode, ...sharedTraining } = trainingShape;
/** The runtime options a comparison hands to each of its runs (not --in-process: runs go through the launcher). */
const RUN_RUNTIME_KEYS = ['backend', 'threads', 'transport', 'averageThreads', 'gpus', 'checkpointEvery', 'progressTimeout', 'joinTimeout', 'curveKeys', 'dataDir', 'logLevel', 'progress', 'progressEvery', 'json', 'tensorboard'] as const;

/** What `hwa compare` adds to the training options. */
export const compareShape = {
  modes: z.array(z.enum(MODES)).min(1).default([...MODES]).describe('methods to compare; every one runs for every seed, with the same options'),
  seeds: z.number().int().min(1).max(1000).default(3).describe('seeds per mode: --seed, --seed+1, …; one seed gives every mode the same initialization and data order'),
  target: z.number().gt(0).max(1).default(0.9).describe('test accuracy (0–1) for the results table\'s epochs-to-target column'),
} as const;

export const compareSchema = z
  .object({
    ...sharedTraining,
    ...Object.fromEntries(RUN_RUNTIME_KEYS.map((k) => [k, runtimeShape[k]])),
    tensorboard: runtimeShape.tensorboard.describe('folder for TensorBoard event files, one subfolder per run (<mode>-seed<s>); empty = none'),
    outDir: z.string().default('').describe('comparison folder (default runs/<time>-compare): compare.json, a run folder per mode and seed, report.html, results.md'),
    resume: z.string().default('').describe('continue the comparison in this folder: its finished runs are kept, the others resume or start; options come from its compare.json'),
    ...compareShape,
  })
  .strict();

export type CompareConfig = z.output<typeof compareSchema> & RunConfig;

/** compare.json: what a comparison runs. */
export interface CompareManifest {
  version: 1;
  modes: Mode[];
  seeds: number[];
  target: number;
  /** The options every run shares (training and runtime), as given when the comparison started. */
  options: RunConfig;
  runs: { name: string; mode: Mode; seed: number }[];
}

const MANIFEST = 'compare.json';
/** Modes that train K copies; the others train one and take no --workers. */
const MULTI_WORKER: readonly Mode[] = ['hwa', 'localsgd'];

/** The run folder name of a mode and seed. */
const runName = (mode: Mode, seed: number) => `${mode}-seed${seed}`;

/** The options of one run of the comparison in `dir`. */
export function runConfigOf(manifest: CompareManifest, dir: string, run: { name: string; mode: Mode; seed: number }): RunConfig {
  const o = manifest.options;
  const multi = MULTI_WORKER.includes(run.mode);
  return makeRunConfig({
    ...o,
    mode: run.mode,
    seed: run.seed,
    workers: multi ? o.workers : undefined,
    // One GPU for a one-copy mode; K GPUs for the others.
    gpus: multi ? o.gpus : o.gpus.slice(0, 1),
    tensorboard: o.tensorboard ? join(o.tensorboard, run.name) : '',
    outDir: join(dir, run.name),
    resume: '',
    inProcess: false,
  });
}

function readManifest(dir: string): CompareManifest {
  const file = join(dir, MANIFEST);
  if (!existsSync(file)) throw new ConfigError(`${dir}: no ${MANIFEST} there, so it is not a comparison folder (hwa compare makes one)`);
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as CompareManifest;
    if (m.version !== 1 || !Array.isArray(m.runs)) throw new Error(`version ${String(m.version)}`);
    return { ...m, options: makeRunConfig(m.options) };
  } catch (e) {
    throw new DataError(`${file} is not a comparison manifest hwa reads (${(e as Error).message}); the folder is damaged`);
  }
}

/** The options a comparison's runs share, from this invocation. */
function sharedOptions(input: CompareConfig): RunConfig {
  const picked = Object.fromEntries(
    [...TRAINING_KEYS, ...RUN_RUNTIME_KEYS].filter((k) => k !== 'mode').map((k) => [k, input[k as keyof CompareConfig]]),
  );
  return makeRunConfig(picked);
}

/** A new comparison's folder and manifest. */
function startComparison(input: CompareConfig): { dir: string; manifest: CompareManifest } {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = resolve(input.outDir || join('runs', `${stamp}-compare`));
  if (existsSync(join(dir, MANIFEST)))
    throw new ConfigError(`--out-dir ${dir} already holds a comparison: continue it with hwa compare --resume ${dir}, or choose another folder`);
  const seeds = Array.from({ length: input.seeds }, (_, i) => input.seed + i);
  // Seed-major, so that a comparison stopped early has every mode for its first seeds.
  const runs = seeds.flatMap((seed) => input.modes.map((mode) => ({ name: runName(mode, seed), mode, seed })));
  const manifest: CompareManifest = { version: 1, modes: [...input.modes], seeds, target: input.target, options: sharedOptions(input), runs };
  // Every run's options are checked before the first starts: a --workers that fits no mode fails now.
  for (const run of runs) crossCheck('train', runConfigOf(manifest, dir, run));
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw ioError(`cannot create the comparison folder ${dir}`, e);
  }
  writeFileAtomic(join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
  return { dir, manifest };
}

/**
 * `--resume DIR`: the saved comparison with this invocation's runtime options. Training options, modes, seeds
 * or target given now that differ from the saved ones are an error, not ignored.
 */
function resumeComparison(input: CompareConfig): { dir: string; manifest: CompareManifest } {
  const dir = resolve(input.resume);
  const saved = readManifest(dir);
  // The seeds are saved as a list: compared as --seed (the first) and --seeds (how many).
  type Flat = Record<string, unknown>;
  const flat = (o: RunConfig, extra: Flat): Flat => ({ ...o, ...extra });
  const savedFlat = flat(saved.options, { modes: saved.modes, seeds: saved.seeds.length, seed: saved.seeds[0], target: saved.target });
  const defaults = flat(makeRunConfig(), compareSchema.parse({}));
  const keys = [...TRAINING_KEYS.filter((k) => k !== 'mode'), 'modes', 'seeds', 'target'];
  const conflicts = optionConflicts<Flat>(keys, input as unknown as Flat, savedFlat, defaults);
  if (conflicts.length) throw new ConfigError(`--resume takes the comparison's options from ${join(dir, MANIFEST)}; these differ: ${conflicts.join('; ')}`);
  const runtime = Object.fromEntries(RUN_RUNTIME_KEYS.map((k) => [k, input[k]]));
  return { dir, manifest: { ...saved, options: makeRunConfig({ ...saved.options, ...runtime }) } };
}

type RunState = 'finished' | 'stopped' | 'new';

/** finished (run.json), stopped with a checkpoint to resume from, or to start (again) from nothing. */
function runState(runDir: string): RunState {
  if (existsSync(join(runDir, 'run.json'))) return 'finished';
  if (existsSync(join(runDir, 'checkpoint.json'))) return 'stopped';
  return 'new';
}

/** The options file a comparison's run is started (and resumed) with. */
const OPTIONS_FILE = 'options.json';

/**
 * Starts `hwa train` for one run of the comparison. Its IPC channel is its lifeline: should this process die,
 * the run stops with a checkpoint.
 */
function trainProcess(config: RunConfig, resume: boolean): ChildProcess {
  const runDir = config.outDir;
  const optionsFile = join(runDir, OPTIONS_FILE);
  if (!resume) {
    rmSync(runDir, { recursive: true, force: true });
    mkdirSync(runDir, { recursive: true });
  }
  writeFileAtomic(optionsFile, JSON.stringify(config, null, 2) + '\n');
  const args = [MAIN, 'train', '--config', optionsFile, ...(resume ? ['--resume', runDir] : [])];
  return spawn(process.execPath, args, { env: envWithoutOptions(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** The exit code of a child (128 + the signal's number when a signal ended it). */
function exitCode(child: ChildProcess): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    child.on('error', (e) => reject(new HwaError(`cannot start hwa train: ${e.message}`)));
    child.on('exit', (code, signal) => resolvePromise(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)));
  });
}

/**
 * SIGINT/SIGTERM while `body` runs: remembered, and passed on once as SIGTERM to the run in progress, so that it
 * stops with a checkpoint (a terminal's Ctrl-C reaches it too; SIGTERM is a second, different signal to it).
 */
async function withStopSignals<T>(body: (stop: { signal: NodeJS.Signals | null; child: ChildProcess | null }) => Promise<T>): Promise<T> {
  const stop: { signal: NodeJS.Signals | null; child: ChildProcess | null } = { signal: null, child: null };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal === null) stop.child?.kill('SIGTERM');
    stop.signal ??= signal;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(stop);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Writes the comparison in `dir` as report.html and results.md (the markdown table) and returns both.
 * @param target - accuracy for the epochs-to-target column; default the comparison's --target.
 */
export function comparisonReport(dir: string, target?: number): { file: string; markdown: string; table: TextTable; missing: string[] } {
  const saved = readManifest(dir);
  const manifest = { ...saved, target: target ?? saved.target };
  const present = manifest.runs.filter((r) => isRunFolder(join(dir, r.name)));
  const records = present.map((r) => ({ run: r, records: readRunRecords(join(dir, r.name)) }));
  const results = records.map(({ run, records: rec }) => runResult(rec, manifest.target, run.mode));
  const table = resultsTable(summarize(results, manifest.modes), manifest.target);
  const groups = manifest.modes
    .map((mode) => ({ series: mode, runs: records.filter((r) => r.run.mode === mode).map((r) => r.records) }))
    .filter((g) => g.runs.length > 0);
  const o = manifest.options;
  const k = o.workers ?? 2;
  const missing = manifest.runs.filter((r) => !existsSync(join(dir, r.name, 'run.json'))).map((r) => r.name);
  const intro = [
    `${manifest.modes.join(', ')} over seeds ${manifest.seeds.join(', ')}: ${describeTraining({ ...o, workers: k }, 'each mode').replace(/, seed \d+$/, '')}.`,
    `Same for every mode of a seed: data, model, initialization, data order, SGD options and schedule. The budget is ${o.epochs} epoch${o.epochs === 1 ? '' : 's'} per worker: ` +
      `each model copy passes over its data that often. hwa and localsgd train K = ${k} copies and so process ${k}× the samples of sgd, swa, lawa and ema (column "samples / run").`,
    `Accuracy and loss are those of each mode's exported model (θ_HWA; θ̄ for sgd and localsgd) on the test set, mean ± standard deviation over seeds (bands in the plots). Folder: ${dir}.`,
    ...(missing.length ? [`Not finished yet: ${missing.join(', ')}.`] : []),
  ];
  const file = join(dir, REPORT_FILE);
  writeFileAtomic(
    file,
    reportHtml({
      title: `hwa compare: ${manifest.modes.join(', ')} on ${o.dataset}`,
      intro,
      table,
      charts: comparisonCharts(groups),
      links: present.map((r) => ({ href: `${r.name}/${REPORT_FILE}`, text: `${r.name}${existsSync(join(dir, r.name, 'run.json')) ? '' : ' (not finished)'}` })),
    }),
  );
  const markdown = markdownTable(table);
  writeFileAtomic(join(dir, 'results.md'), `${markdown}\n`);
  return { file, markdown, table, missing };
}

function logRun(log: Logger, json: boolean, event: Record<string, unknown>, message: string): void {
  log.info(event, message);
  emitJson(json, event);
}

export async function compare(input: CompareConfig): Promise<void> {
  const { dir, manifest } = input.resume ? resumeComparison(input) : startComparison(input);
  const json = manifest.options.json;
  const log = createLogger({ level: manifest.options.logLevel, bindings: { role: 'compare' }, file: join(dir, 'compare.log'), console: 'pretty' });
  const total = manifest.runs.length;
  logRun(log, json, { event: 'compare.started', dir, modes: manifest.modes, seeds: manifest.seeds, runs: total }, `comparison folder ${dir}: ${total} runs (${manifest.modes.join(', ')} × seeds ${manifest.seeds.join(', ')})`);
  await withStopSignals(async (stop) => {
    for (const [i, run] of manifest.runs.entries()) {
      const config = runConfigOf(manifest, dir, run);
      const state = runState(config.outDir);
      const event = { event: 'compare.run', index: i + 1, runs: total, run: run.name, mode: run.mode, seed: run.seed, dir: config.outDir };
      const next = `continue with: hwa compare --resume ${dir}`;
      const stopped = () => {
        emitJson(json, { event: 'compare.stopped', dir, run: run.name, command: `hwa compare --resume ${dir}` });
        return new Interrupted(`stopped by ${stop.signal ?? 'a signal'} during ${run.name} (run ${i + 1} of ${total}); ${next}`);
      };
      if (state === 'finished') {
        logRun(log, json, { ...event, action: 'kept' }, `run ${i + 1} of ${total}: ${run.name} finished before, kept`);
        continue;
      }
      if (stop.signal) throw stopped();
      const resume = state === 'stopped';
      logRun(log, json, { ...event, action: resume ? 'resumed' : 'started' }, `run ${i + 1} of ${total}: ${run.name} ${resume ? 'resumes from its checkpoint' : 'starts'} in ${config.outDir}`);
      stop.child = trainProcess(config, resume);
      const code = await exitCode(stop.child);
      stop.child = null;
      if (code === 0) continue;
      if (stop.signal || code === 130) throw stopped();
      emitJson(json, { event: 'compare.failed', dir, run: run.name, exitCode: code });
      throw new HwaError(`${run.name} (run ${i + 1} of ${total}) failed with exit code ${code}; its log: ${join(config.outDir, 'coordinator.log')}. The comparison stops here; ${next} once the cause is fixed`);
    }
  });
  const report = comparisonReport(dir);
  logRun(log, json, { event: 'compare.finished', dir, report: report.file, results: join(dir, 'results.md'), table: report.table }, `report: ${report.file}; results table: ${join(dir, 'results.md')}`);
  if (!json) process.stdout.write(`${report.markdown}\n`);
}

/** True when `dir` holds a comparison (its compare.json). */
export function isComparisonFolder(dir: string): boolean {
  return existsSync(join(dir, MANIFEST));
}
