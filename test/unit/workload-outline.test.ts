/**
 * A coordinator plans a run from the workload's outline (sizes from file headers, a model without data or
 * optimizer). Each outline is checked against the independent result: the same options loaded in full, as a
 * worker loads them, and a LocalTrainer built on that data.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePlan, makeRunConfig, type DatasetName, type RunConfig } from '@hwa/core';
import {
  buildModel,
  CIFAR10_RECORD_BYTES,
  describeDataset,
  encodeIdxImages,
  encodeIdxLabels,
  IDX_FILES,
  loadDataset,
  LocalTrainer,
  outlineOf,
  RunModel,
  selectBackend,
} from '@hwa/engine';
import { makeWorkload, outlineWorkload } from '../../packages/cli/src/user-modules.js';

let root: string;
beforeAll(async () => {
  await selectBackend('wasm');
  root = mkdtempSync(join(tmpdir(), 'hwa-outline-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A folder of gzipped IDX files: `train` and `test` images of 5×4 pixels. */
function gzipIdx(train: number, test: number): string {
  const dir = mkdtempSync(join(root, 'idx-'));
  const write = (images: string, labels: string, n: number) => {
    writeFileSync(join(dir, `${images}.gz`), gzipSync(encodeIdxImages(new Uint8Array(n * 20).map((_, i) => i % 251), n, 5, 4)));
    writeFileSync(join(dir, `${labels}.gz`), gzipSync(encodeIdxLabels(new Uint8Array(n).map((_, i) => i % 10))));
  };
  write(IDX_FILES.trainImages, IDX_FILES.trainLabels, train);
  write(IDX_FILES.testImages, IDX_FILES.testLabels, test);
  return dir;
}

/** The six CIFAR-10 batch files with `perFile` zero records each. */
function cifarDir(perFile: number): string {
  const dir = mkdtempSync(join(root, 'cifar-'));
  for (const f of ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch'])
    writeFileSync(join(dir, `${f}.bin`), Buffer.alloc(perFile * CIFAR10_RECORD_BYTES));
  return dir;
}

describe('describeDataset: the sizes loadDataset gives, from headers alone', () => {
  const cases: [string, DatasetName, () => { dir?: string; trainLimit?: number; testLimit?: number }][] = [
    ['bundled MNIST, whole', 'mnist', () => ({})],
    ['bundled MNIST, limited', 'mnist', () => ({ trainLimit: 1000, testLimit: 300 })],
    ['bundled Fashion-MNIST, limited', 'fashion-mnist', () => ({ trainLimit: 500, testLimit: 70_000 })],
    ['gzipped IDX files', 'mnist', () => ({ dir: gzipIdx(37, 11), testLimit: 5 })],
    ['CIFAR-10 batch files', 'cifar10', () => ({ dir: cifarDir(3), trainLimit: 14 })],
    ['synthetic', 'synthetic', () => ({ trainLimit: 100 })],
  ];
  for (const [name, dataset, options] of cases) {
    it(name, async () => {
      const o = options();
      const [outline, loaded] = await Promise.all([describeDataset(dataset, o), loadDataset(dataset, o)]);
      expect(outline).toEqual({ train: loaded.train.count, test: loaded.test.count, shape: loaded.train.shape, numClasses: loaded.train.numClasses });
    });
  }

  it('missing files fail as loadDataset does, naming the folder and the download command', async () => {
    const empty = mkdtempSync(join(root, 'empty-'));
    const both = await Promise.allSettled([describeDataset('cifar10', { dir: empty }), loadDataset('cifar10', { dir: empty })]);
    const messages = both.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'resolved'));
    expect(messages[0]).toMatch(/^cifar10: dataset not found\. .*hwa data download cifar10/);
    expect(messages[0]).toBe(messages[1]);
  });
});

describe('outlineWorkload: what makeWorkload loads, without the examples', () => {
  const config = (over: Partial<RunConfig>): RunConfig => makeRunConfig({ workers: 2, ...over });
  const cases: [string, Partial<RunConfig>][] = [
    ['built-in data, limits and --val-fraction', { dataset: 'mnist', model: 'mlp', trainLimit: 1000, testLimit: 200, valFraction: 0.13 }],
    ['synthetic images, the cnn', { dataset: 'synthetic', model: 'cnn', trainLimit: 96 }],
    ['a user data module with its validation split', { dataset: join(import.meta.dirname, '../../examples/tabular-regression/data.js'), model: join(import.meta.dirname, '../../examples/tabular-regression/net.js') }],
  ];
  for (const [name, over] of cases) {
    it(name, async () => {
      const c = config(over);
      const [outline, loaded] = await Promise.all([outlineWorkload(c), makeWorkload(c).then(outlineOf)]);
      expect({ trainCount: outline.trainCount, hasValidation: outline.hasValidation }).toEqual({ trainCount: loaded.trainCount, hasValidation: loaded.hasValidation });
      const [a, b] = await Promise.all([outline.createModel(), loaded.createModel()]);
      expect(a.inputs[0].shape).toEqual(b.inputs[0].shape);
      expect(a.countParams()).toBe(b.countParams());
    });
  }

  it('a --val-fraction that leaves no training example fails with the same line', async () => {
    const c = config({ dataset: 'synthetic', trainLimit: 3, valFraction: 0.9 });
    const both = await Promise.allSettled([outlineWorkload(c), makeWorkload(c)]);
    const messages = both.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'resolved'));
    expect(messages[0]).toBe('--val-fraction 0.9 of 3 training examples leaves 3 for validation and 0 for training; both need at least one');
    expect(messages[1]).toBe(messages[0]);
  });
});

describe('RunModel: θ0 and the vector sizes of a LocalTrainer on the loaded data', () => {
  for (const over of [
    { optimizer: 'sgd', momentumSync: 'average' },
    { optimizer: 'adam', momentumSync: 'average' },
    { optimizer: 'sgd', momentumSync: 'keep' },
  ] as const) {
    it(`${over.optimizer}, --momentum-sync ${over.momentumSync}`, async () => {
      const c = makeRunConfig({ workers: 2, dataset: 'synthetic', model: 'cnn', trainLimit: 64, ...over });
      const workload = await makeWorkload(c);
      const trainer = await LocalTrainer.create(c, makePlan(c, workload.data.train.count), 0, workload);
      const model = await RunModel.create(c, (await outlineWorkload(c)).createModel);
      expect({ modelSize: model.modelSize, syncSize: model.syncSize }).toEqual({ modelSize: trainer.modelSize, syncSize: trainer.syncSize });
      expect(model.syncSize).toBe(over.momentumSync === 'average' ? (over.optimizer === 'sgd' ? 2 : 3) * model.modelSize - (over.optimizer === 'sgd' ? 1 : 2) * bnStatistics(model) : model.modelSize);
      expect(model.initialVector()).toEqual(trainer.initialVector());
    });
  }
});

describe('buildModel: the same θ0 from every build with the same seed', () => {
  for (const [name, inputShape] of [['mlp', [28, 28, 1]], ['cnn', [28, 28, 1]], ['resnet20', [8, 8, 3]]] as const) {
    it(`${name}, seeds 0 and 3`, () => {
      for (const seed of [0, 3]) {
        const [a, b] = [0, 1].map(() => new RunModel({ optimizer: 'sgd', momentumSync: 'keep' }, buildModel({ name, inputShape, numClasses: 10, seed })).initialVector());
        expect(a).toEqual(b);
      }
    });
  }
});

/** Floats of BatchNorm's moving statistics: in the model vector, not trained, so no optimizer state. */
function bnStatistics(model: RunModel): number {
  return model.model.nonTrainableWeights.reduce((a, w) => a + w.shape.reduce<number>((x, y) => x * (y ?? 1), 1), 0);
}
