/**
 * What every process role does before it trains: pick the tfjs backend, load the data (or, for a coordinator,
 * only size it), derive the plan.
 */
import { makePlan, type RunPlan, type TrainingConfig, type BackendChoice } from '@hwa/core';
import { selectBackend, type BackendReport, type Workload, type WorkloadOutline } from '@hwa/engine';
import type { Logger } from 'pino';
import { makeWorkload, outlineWorkload, shortName } from './user-modules.js';

export interface Prepared<W extends WorkloadOutline | Workload = Workload> {
  backend: BackendReport;
  /**
   * The model factory and objective (built-in or the user's modules), with the examples (a {@link Workload})
   * or only their sizes (a {@link WorkloadOutline}, what a coordinator prepares).
   */
  workload: W;
  plan: RunPlan;
}

/** "tensorflow (TensorFlow 2.21.0, 2 threads)" or "wasm": the backend line every process logs once. */
export function describeBackend(report: BackendReport): string {
  if (report.tensorflowVersion == null) return report.selected;
  return `${report.selected} (TensorFlow ${report.tensorflowVersion}, ${report.threads} thread${report.threads === 1 ? '' : 's'})`;
}

/**
 * GPUs were asked for (--gpus, or CUDA_VISIBLE_DEVICES naming devices) but this process trains without one:
 * say so loudly, with the reason the GPU backend did not load, rather than train on the CPU without a word.
 */
function warnIfGpusUnused(gpus: readonly number[], backend: BackendReport, log: Logger): void {
  const visible = process.env.CUDA_VISIBLE_DEVICES ?? '';
  if (backend.selected === 'tensorflow-gpu' || (gpus.length === 0 && !/\d/.test(visible))) return;
  const why = backend.attempts.find((a) => a.backend === 'tensorflow-gpu')?.reason ?? `--backend ${backend.selected} was chosen`;
  const asked = gpus.length > 0 ? `--gpus ${gpus.join(',')}` : `CUDA_VISIBLE_DEVICES=${visible}`;
  log.warn(
    { event: 'backend.gpu_unused', gpus, cudaVisibleDevices: visible || null, backend: backend.selected, reason: why },
    `${asked} given, but no GPU backend loaded (${why}): training runs on ${backend.selected}, on the CPU. ` +
      'For the GPUs: npm run setup:native -- --gpu',
  );
}

type PrepareConfig = TrainingConfig & { backend: BackendChoice; dataDir: string; threads: number; gpus: readonly number[] };

/** Selects the backend and logs it once, with a loud warning when GPUs were asked for but none loaded. */
async function backendFor(config: PrepareConfig, log: Logger): Promise<BackendReport> {
  const backend = await selectBackend(
    config.backend,
    (event, fields) => {
      // An unavailable backend is expected when `auto` falls through (no native tfjs here): debug, not noise.
      if (event !== 'backend.selected') log.debug({ event, ...fields }, `${event}: ${JSON.stringify(fields)}`);
    },
    { threads: config.threads },
  );
  log.info({ event: 'backend.selected', ...backend }, `tfjs backend: ${describeBackend(backend)}`);
  warnIfGpusUnused(config.gpus, backend, log);
  return backend;
}

/**
 * A trainer's preparation (a worker, an in-process run): the backend and the whole workload.
 * @param given - a workload built by the caller (the programmatic API's in-process runs, whose model, data,
 *   loss or metrics are functions and objects in memory); default: built from the options.
 */
export async function prepare(config: PrepareConfig, log: Logger, given?: Workload): Promise<Prepared> {
  const backend = await backendFor(config, log);
  const started = performance.now();
  const workload = given ?? (await makeWorkload(config));
  const { train, test, validation } = workload.data;
  log.info(
    { event: 'data.loaded', train: train.count, test: test.count, validation: validation?.count ?? 0, ms: Math.round(performance.now() - started) },
    `${shortName(config.dataset)}: ${train.count} training, ${validation ? `${validation.count} validation, ` : ''}${test.count} test examples`,
  );
  return { backend, workload, plan: makePlan(config, train.count) };
}

/**
 * A coordinator's preparation: the backend and the workload's outline, no example in memory
 * (docs/processes.md#the-coordinator-holds-no-data).
 */
export async function prepareOutline(config: PrepareConfig, log: Logger): Promise<Prepared<WorkloadOutline>> {
  const backend = await backendFor(config, log);
  const started = performance.now();
  const workload = await outlineWorkload(config);
  log.info(
    { event: 'data.sized', train: workload.trainCount, validation: workload.hasValidation, ms: Math.round(performance.now() - started) },
    `${shortName(config.dataset)}: ${workload.trainCount} training examples${workload.hasValidation ? ', a validation split' : ''} (sized, not loaded: the workers load the data)`,
  );
  return { backend, workload, plan: makePlan(config, workload.trainCount) };
}
