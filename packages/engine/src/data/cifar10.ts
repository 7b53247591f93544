/**
 * CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html): each file is a run of 3073-byte
 * records, one label byte then 32×32×3 pixels stored channel-major (1024 red, 1024 green, 1024 blue, each
 * row-major). We convert to NHWC float32 and normalize per channel with the usual CIFAR-10 mean/std, so
 * models see roughly zero-mean unit-variance inputs as in the torchvision recipes the paper's numbers come from.
 */
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError } from '@hwa/core';
import type { Dataset } from './dataset.js';
import { allInOrder } from './all-in-order.js';

/** Per-channel (R, G, B) mean of the CIFAR-10 training set, on pixels scaled to [0, 1]. */
export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465] as const;
/** Per-channel (R, G, B) standard deviation of the CIFAR-10 training set, on pixels scaled to [0, 1]. */
export const CIFAR10_STD = [0.247, 0.2435, 0.2616] as const;

export const CIFAR10_TRAIN_FILES = [
  'data_batch_1.bin',
  'data_batch_2.bin',
  'data_batch_3.bin',
  'data_batch_4.bin',
  'data_batch_5.bin',
] as const;
export const CIFAR10_TEST_FILES = ['test_batch.bin'] as const;

/** The folder the official archive unpacks into. */
export const CIFAR10_ARCHIVE_FOLDER = 'cifar-10-batches-bin';

const SIDE = 32;
const PLANE = SIDE * SIDE;
const PIXELS = PLANE * 3;
/** Bytes per record: 1 label + 3072 pixels. */
export const CIFAR10_RECORD_BYTES = 1 + PIXELS;
/** Records per file in the official release (the loader accepts any whole number of records). */
export const CIFAR10_RECORDS_PER_FILE = 10_000;

/**
 * The folder holding all six batch files: `dir` itself or `dir/cifar-10-batches-bin` (what unpacking the
 * official archive in `dir` gives). Null when neither has them all.
 */
export async function findCifar10Dir(dir: string): Promise<string | null> {
  for (const candidate of [dir, join(dir, CIFAR10_ARCHIVE_FOLDER)]) {
    const present = await Promise.all(
      [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES].map((f) =>
        stat(join(candidate, f)).then(
          (s) => s.isFile(),
          () => false,
        ),
      ),
    );
    if (present.every(Boolean)) return candidate;
  }
  return null;
}

/** byte → (byte/255 − mean[c]) / std[c], one table per channel. */
const CHANNEL_TABLES = [0, 1, 2].map((c) => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = (v / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c];
  return t;
});

/**
 * Decodes `records` records of `bytes` into `images` (NHWC, normalized) and `labels`, starting at example
 * `offset` of the outputs. Checks every label.
 */
export function decodeCifar10Records(
  input: Uint8Array,
  file: string,
  records: number,
  images: Float32Array,
  labels: Uint8Array,
  offset: number,
  hint: string,
): void {
  // Index a plain Uint8Array view: V8 reads a Buffer (what readFile returns) several times slower in hot loops.
  const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.length < records * CIFAR10_RECORD_BYTES) {
    throw new DataError(
      `${file}: truncated: ${records} records need ${records * CIFAR10_RECORD_BYTES} bytes, ` +
        `have ${bytes.length}; ${hint}`,
    );
  }
  for (let r = 0; r < records; r++) {
    const src = r * CIFAR10_RECORD_BYTES;
    const label = bytes[src];
    if (label >= 10) {
      throw new DataError(
        `${file}: record ${r} (byte ${src}) has label ${label}, expected 0..9; the file is damaged or not a ` +
          `CIFAR-10 batch (CIFAR-100 binaries have 2 label bytes per record); ${hint}`,
      );
    }
    labels[offset + r] = label;
    const dst = (offset + r) * PIXELS;
    for (let c = 0; c < 3; c++) {
      const table = CHANNEL_TABLES[c];
      const plane = src + 1 + c * PLANE;
      for (let p = 0; p < PLANE; p++) images[dst + p * 3 + c] = table[bytes[plane + p]];
    }
  }
}

async function recordCount(file: string, hint: string): Promise<number> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new DataError(`${file}: cannot read: ${(err as Error).message}; ${hint}`);
  }
  if (size === 0 || size % CIFAR10_RECORD_BYTES !== 0) {
    const whole = Math.floor(size / CIFAR10_RECORD_BYTES);
    throw new DataError(
      `${file}: ${size} bytes is not a whole number of ${CIFAR10_RECORD_BYTES}-byte CIFAR-10 records ` +
        `(${whole} records and ${size % CIFAR10_RECORD_BYTES} bytes left over; the official files are ` +
        `${CIFAR10_RECORDS_PER_FILE * CIFAR10_RECORD_BYTES} bytes); ${hint}`,
    );
  }
  return size / CIFAR10_RECORD_BYTES;
}

/** Options of {@link loadCifar10Split}. */
export interface Cifar10SplitOptions {
  /** Batch files of the split, in order (their records are concatenated). */
  readonly files: readonly string[];
  /** Dataset name, e.g. "cifar10/train". */
  readonly name: string;
  /** Keep only the first `limit` examples; 0 or undefined keeps all. Files past the limit are not read. */
  readonly limit?: number;
  /** What the user should do about a bad file; ends every DataError message. */
  readonly hint?: string;
}

/** Loads CIFAR-10 batch files into one {@link Dataset} (NHWC 32×32×3, normalized per channel). */
export async function loadCifar10Split(options: Cifar10SplitOptions): Promise<Dataset> {
  const hint = options.hint ?? 're-download the dataset';
  // Sizes first, so the output is allocated once and a bad file fails before any decoding.
  const counts = await allInOrder(options.files.map((f) => recordCount(f, hint)));
  const total = counts.reduce((a, b) => a + b, 0);
  const count = options.limit ? Math.min(options.limit, total) : total;
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let done = 0;
  for (let i = 0; i < options.files.length && done < count; i++) {
    const file = options.files[i];
    const bytes = await readFile(file);
    // The file may have changed between stat and read; check what we actually got.
    if (bytes.length !== counts[i] * CIFAR10_RECORD_BYTES) {
      throw new DataError(`${file}: changed size while being read (${bytes.length} bytes now); ${hint}`);
    }
    const take = Math.min(counts[i], count - done);
    decodeCifar10Records(bytes, file, take, images, labels, done, hint);
    done += take;
  }
  return { name: options.name, count, shape: [SIDE, SIDE, 3], numClasses: 10, images, labels };
}
