/**
 * What every process role does before it trains: pick the tfjs backend, load the data, derive the plan.
 */
import { makePlan, type RunPlan, type TrainingConfig, type BackendChoice } from '@hwa/core';
import { loadDataset, selectBackend, type BackendReport, type DatasetPair } from '@hwa/engine';
import type { Logger } from 'pino';

export interface Prepared {
  backend: BackendReport;
  data: DatasetPair;
  plan: RunPlan;
}

export async function prepare(
  config: TrainingConfig & { backend: BackendChoice; dataDir: string },
  log: Logger,
): Promise<Prepared> {
  const backend = await selectBackend(config.backend, (event, fields) => {
    // An unavailable backend is expected when `auto` falls through (no native tfjs here): debug, not noise.
    if (event === 'backend.selected') log.info({ event, ...fields }, `tfjs backend: ${String(fields.backend ?? fields.selected ?? '')}`);
    else log.debug({ event, ...fields }, `${event}: ${JSON.stringify(fields)}`);
  });
  const started = performance.now();
  const data = await loadDataset(config.dataset, {
    dir: config.dataDir || undefined,
    trainLimit: config.trainLimit,
    testLimit: config.testLimit,
    seed: config.seed,
  });
  log.info(
    { event: 'data.loaded', train: data.train.count, test: data.test.count, ms: Math.round(performance.now() - started) },
    `${config.dataset}: ${data.train.count} training and ${data.test.count} test images`,
  );
  return { backend, data, plan: makePlan(config, data.train.count) };
}
