/**
 * Writes a model in the standard tfjs LayersModel format (model.json + weights.bin), loadable with
 * tf.loadLayersModel in the browser or Node. tfjs' own `file://` handler lives in tfjs-node, which may not be
 * installed, so the two files are written here from the save artifacts.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';

export async function saveLayersModel(model: tf.LayersModel, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = artifacts.weightData;
      const bytes = weightData instanceof ArrayBuffer ? new Uint8Array(weightData) : Buffer.concat((weightData ?? []).map((b) => new Uint8Array(b)));
      const modelJson = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: `hwa (TensorFlow.js ${tf.version.tfjs})`,
        convertedBy: null,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
      };
      await writeFile(join(dir, WEIGHTS_BIN), bytes);
      await writeFile(join(dir, MODEL_JSON), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}

/** Loads a model written by saveLayersModel (or any tfjs LayersModel folder) from disk. */
export async function loadLayersModelFromDir(dir: string): Promise<tf.LayersModel> {
  return loadLayersModelFromFile(join(dir, MODEL_JSON));
}

/** The files of a saved LayersModel: its model.json and the weight files it names, in order. */
export async function layersModelFiles(file: string): Promise<string[]> {
  const json = JSON.parse(await readFile(file, 'utf8')) as { weightsManifest?: { paths: string[] }[] };
  return [file, ...(json.weightsManifest ?? []).flatMap((g) => g.paths.map((p) => join(dirname(file), p)))];
}

/** Loads a LayersModel from its model.json file (weight files beside it, as the manifest names them). */
export async function loadLayersModelFromFile(file: string): Promise<tf.LayersModel> {
  const dir = dirname(file);
  const json = JSON.parse(await readFile(file, 'utf8')) as {
    modelTopology: object;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const buffers = await Promise.all(json.weightsManifest.flatMap((g) => g.paths.map((p) => readFile(join(dir, p)))));
  const weightData = Buffer.concat(buffers);
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
    }),
  );
}
