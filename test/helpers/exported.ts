/**
 * What a finished run left for its user: the exported θ_HWA (reloaded with tfjs' own loader), the run's
 * reported metrics, and θ_HWA rebuilt from the checkpoint through the run's own options, to compare with.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { makePlan, tallyToMetrics, trainingPart, type EvalRecord, type RunConfig } from '@hwa/core';
import { LocalTrainer, evaluateRange, type Workload } from '@hwa/engine';
import { makeWorkload } from '../../packages/cli/src/user-modules.js';
import { readCheckpoint } from './cli.js';

/** The exported model folder loaded with tf.loadLayersModel (its model.json and weight files, as written). */
export async function reloadExported(dir: string): Promise<tf.LayersModel> {
  const folder = join(dir, 'model');
  const json = JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8')) as { modelTopology: object; weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] };
  const bytes = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths.map((p) => readFileSync(join(folder, p)))));
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    }),
  );
}

/** The run's options (config.json, module paths pinned) and its evaluations (run.json). */
export function runReport(dir: string): { config: RunConfig; evals: EvalRecord[]; totals: { test: { offline: { loss: number } } | null } } {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as RunConfig;
  const run = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { evals: EvalRecord[]; totals: { test: { offline: { loss: number } } | null } };
  return { config, ...run };
}

/** The run's workload, built in this process from its config.json, as a worker builds it. */
export function workloadOf(dir: string): Promise<Workload> {
  return makeWorkload(runReport(dir).config);
}

/**
 * Predictions of the reloaded export and of θ_HWA from the checkpoint (BatchNorm statistics recomputed as for
 * the export) on the first `n` examples of the set evaluations scored, and the export's loss on that whole set.
 */
export async function compareExport(dir: string, n = 32): Promise<{ exported: Float32Array; rebuilt: Float32Array; loss: number }> {
  const { config } = runReport(dir);
  const workload = await workloadOf(dir);
  const training = trainingPart(config);
  const trainer = await LocalTrainer.create(training, makePlan(training, workload.data.train.count), 0, workload);
  trainer.prepareForEval(readCheckpoint(dir).offline);
  const set = trainer.evalSet;
  const take = Math.min(n, set.count);
  const x = tf.tensor(set.x.subarray(0, take * (set.x.length / set.count)), [take, ...set.xShape]);
  const loaded = await reloadExported(dir);
  const exported = (loaded.predict(x) as tf.Tensor).dataSync() as Float32Array;
  const rebuilt = (trainer.model.predict(x) as tf.Tensor).dataSync() as Float32Array;
  const loss = tallyToMetrics(evaluateRange(loaded, set, 0, set.count, workload.objective)).loss;
  x.dispose();
  loaded.dispose();
  trainer.dispose();
  return { exported, rebuilt, loss };
}
