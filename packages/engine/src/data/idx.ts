/**
 * IDX files (MNIST, Fashion-MNIST), parsed by hand: a 4-byte magic (0x00 0x00 dtype ndim), ndim big-endian
 * uint32 dimensions, then the values. Only what MNIST-style sets use is accepted: unsigned bytes, images with
 * 3 dimensions (0x00000803) and labels with 1 (0x00000801). Raw or gzip-compressed files both load; gzip is
 * recognised by its magic bytes rather than the file name, so a renamed file still works.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip as gunzipCallback } from 'node:zlib';
import { DataError } from '@hwa/core';
import type { Dataset } from './dataset.js';

const gunzip = promisify(gunzipCallback);

/** Magic of an IDX file of unsigned bytes with 3 dimensions (count × rows × cols). */
export const IDX_IMAGES_MAGIC = 0x00000803;
/** Magic of an IDX file of unsigned bytes with 1 dimension (count). */
export const IDX_LABELS_MAGIC = 0x00000801;

/** An IDX image file's bytes: the 0x00000803 header (count, rows, cols) followed by `pixels`. */
export function encodeIdxImages(pixels: Uint8Array, count: number, height: number, width: number): Uint8Array {
  const out = new Uint8Array(16 + pixels.length);
  const view = new DataView(out.buffer);
  [IDX_IMAGES_MAGIC, count, height, width].forEach((v, i) => view.setUint32(4 * i, v));
  out.set(pixels, 16);
  return out;
}

/** An IDX label file's bytes: the 0x00000801 header (count) followed by `labels`. */
export function encodeIdxLabels(labels: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + labels.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, IDX_LABELS_MAGIC);
  view.setUint32(4, labels.length);
  out.set(labels, 8);
  return out;
}

/** Default end of a DataError message when the caller has no better advice. */
const REDOWNLOAD_HINT = 're-download the file';

/** The pixel block of an IDX image file, as a view into the file's bytes (not yet normalized). */
export interface IdxImages {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  /** count × height × width bytes, row-major. */
  readonly pixels: Uint8Array;
}

/** Reads a file and gunzips it when it starts with the gzip magic 1f 8b. */
export async function readMaybeGzip(file: string, hint: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new DataError(`${file}: cannot read: ${(err as Error).message}; ${hint}`);
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      // Async: inflating runs in the libuv pool, so the train and test files inflate in parallel.
      bytes = await gunzip(bytes);
    } catch (err) {
      throw new DataError(`${file}: corrupt gzip data (${(err as Error).message}); ${hint}`);
    }
  }
  return bytes;
}

const magicName = (magic: number): string => {
  if (magic === IDX_IMAGES_MAGIC) return 'an IDX image file (0x00000803)';
  if (magic === IDX_LABELS_MAGIC) return 'an IDX label file (0x00000801)';
  return `0x${magic.toString(16).padStart(8, '0')}`;
};

/**
 * Checks the magic and header length. `head` holds the file's first bytes (at least the header, if the file
 * has that many); `length` is the whole (inflated) file's length.
 */
function header(head: Uint8Array, length: number, file: string, want: number, hint: string): DataView {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const headerBytes = 4 + 4 * (want & 0xff);
  const truncated = (): DataError =>
    new DataError(`${file}: truncated: ${length} bytes, shorter than the ${headerBytes}-byte IDX header; ${hint}`);
  if (length < 4) throw truncated();
  // Magic before length: a swapped or foreign file should be reported as such, not as "truncated".
  const magic = view.getUint32(0, false);
  if (magic !== want) {
    throw new DataError(`${file}: magic is ${magicName(magic)}, expected ${magicName(want)}; ${hint}`);
  }
  if (length < headerBytes) throw truncated();
  return view;
}

/** Dimensions of an IDX image file. */
export interface IdxImagesHeader {
  readonly count: number;
  readonly height: number;
  readonly width: number;
}

/**
 * Validates an IDX image header against the file's length (`head`: the first 16 bytes or all there are).
 * The length must match the dimensions exactly: a short file is truncated, a long one is not what its header
 * says, and both mean a bad download.
 */
export function parseIdxImagesHeader(
  head: Uint8Array,
  length: number,
  file: string,
  hint = REDOWNLOAD_HINT,
): IdxImagesHeader {
  const view = header(head, length, file, IDX_IMAGES_MAGIC, hint);
  const count = view.getUint32(4, false);
  const height = view.getUint32(8, false);
  const width = view.getUint32(12, false);
  if (height === 0 || width === 0) {
    throw new DataError(`${file}: header says images are ${height}×${width}, which is empty; ${hint}`);
  }
  // Plain numbers are exact here: at most 2^96 in theory, but any real file is far below 2^53.
  const expected = count * height * width;
  const actual = length - 16;
  if (actual !== expected) {
    const what = actual < expected ? 'truncated' : 'too long';
    throw new DataError(
      `${file}: ${what}: header says ${count}×${height}×${width} = ${expected} bytes of pixels, ` +
        `file has ${actual}; ${hint}`,
    );
  }
  return { count, height, width };
}

/** Parses a whole IDX image file (already gunzipped); see {@link parseIdxImagesHeader} for the checks. */
export function parseIdxImages(bytes: Uint8Array, file: string, hint = REDOWNLOAD_HINT): IdxImages {
  const h = parseIdxImagesHeader(bytes.subarray(0, 16), bytes.length, file, hint);
  // A plain Uint8Array view, not Buffer#subarray: V8 indexes a Buffer (a Uint8Array subclass) ~10× slower in
  // the conversion loop (measured 650 ms vs 70 ms for MNIST's 47M pixels).
  const pixels = new Uint8Array(bytes.buffer, bytes.byteOffset + 16, h.count * h.height * h.width);
  return { ...h, pixels };
}

/** Parses an IDX label file (already gunzipped); every label must be < numClasses. */
export function parseIdxLabels(bytes: Uint8Array, file: string, numClasses = 10, hint = REDOWNLOAD_HINT): Uint8Array {
  const view = header(bytes, bytes.length, file, IDX_LABELS_MAGIC, hint);
  const count = view.getUint32(4, false);
  const actual = bytes.length - 8;
  if (actual !== count) {
    const what = actual < count ? 'truncated' : 'too long';
    throw new DataError(`${file}: ${what}: header says ${count} labels, file has ${actual} bytes of labels; ${hint}`);
  }
  // Plain Uint8Array for the same reason as the pixels, and because Buffer#slice would not copy.
  const labels = new Uint8Array(bytes.buffer, bytes.byteOffset + 8, count);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= numClasses) {
      throw new DataError(
        `${file}: label ${labels[i]} at index ${i} is not a class index (expected 0..${numClasses - 1}); ${hint}`,
      );
    }
  }
  return labels;
}


/** byte → byte/255 as float32; a table lookup is both faster and exactly the same as dividing. */
const UNIT_SCALE = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = v / 255;
  return t;
})();

function scaleInto(out: Float32Array, at: number, src: Uint8Array, n: number): void {
  for (let i = 0; i < n; i++) out[at + i] = UNIT_SCALE[src[i]];
}

/** Bytes read per step when streaming a raw image file. */
const CHUNK = 1 << 20;

/** An opened IDX file: its handle (the caller closes it), its length, its first bytes (up to 16), and whether it is gzipped. */
async function openIdx(file: string, hint: string): Promise<{ handle: FileHandle; length: number; head: Uint8Array; gzipped: boolean }> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new DataError(`${file}: cannot read: ${(err as Error).message}; ${hint}`);
  }
  try {
    const length = (await handle.stat()).size;
    const head = new Uint8Array(Math.min(16, length));
    await handle.read(head, 0, head.length, 0);
    return { handle, length, head, gzipped: head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * The validated header of an IDX image file, read without its pixels (a gzip file is inflated to check its
 * length, as {@link readIdxImages} would).
 */
export async function readIdxImagesHeader(file: string, hint = REDOWNLOAD_HINT): Promise<IdxImagesHeader> {
  const { handle, length, head, gzipped } = await openIdx(file, hint);
  await handle.close();
  if (!gzipped) return parseIdxImagesHeader(head, length, file, hint);
  const bytes = await readMaybeGzip(file, hint);
  return parseIdxImagesHeader(bytes.subarray(0, 16), bytes.length, file, hint);
}

/**
 * Reads an IDX image file into a Float32Array scaled to [0, 1], keeping the first `limit` images (0 = all).
 * A raw file is validated from its header and size, then streamed through one small reused buffer: no copy of
 * the whole file is held, which matters because on a virtual machine the first touch of fresh memory is what
 * costs most (~3 ms per MB on the reference machine, docs/measurements.md#allocator-and-first-touch). A gzip
 * file is inflated in memory first.
 */
export async function readIdxImages(
  file: string,
  limit = 0,
  hint = REDOWNLOAD_HINT,
  /** Called with the validated header before any pixel is converted; throw to stop. */
  check?: (header: IdxImagesHeader) => void,
): Promise<IdxImagesHeader & { readonly images: Float32Array; readonly kept: number }> {
  const { handle, length, head, gzipped } = await openIdx(file, hint);
  try {
    if (gzipped) {
      const parsed = parseIdxImages(await readMaybeGzip(file, hint), file, hint);
      check?.(parsed);
      const kept = limit ? Math.min(limit, parsed.count) : parsed.count;
      const images = new Float32Array(kept * parsed.height * parsed.width);
      scaleInto(images, 0, parsed.pixels, images.length);
      return { count: parsed.count, height: parsed.height, width: parsed.width, images, kept };
    }
    const h = parseIdxImagesHeader(head, length, file, hint);
    check?.(h);
    const kept = limit ? Math.min(limit, h.count) : h.count;
    const images = new Float32Array(kept * h.height * h.width);
    const chunk = new Uint8Array(Math.min(CHUNK, Math.max(1, images.length)));
    for (let done = 0; done < images.length; ) {
      const want = Math.min(chunk.length, images.length - done);
      const { bytesRead } = await handle.read(chunk, 0, want, 16 + done);
      if (bytesRead === 0) {
        throw new DataError(`${file}: shrank while being read (ended after ${16 + done} bytes); ${hint}`);
      }
      scaleInto(images, done, chunk, bytesRead);
      done += bytesRead;
    }
    return { ...h, images, kept };
  } finally {
    await handle.close();
  }
}

/** Options of {@link loadIdxDataset}. */
export interface IdxDatasetOptions {
  /** Path of the images file (raw or gzip). */
  readonly imagesFile: string;
  /** Path of the labels file (raw or gzip). */
  readonly labelsFile: string;
  /** Dataset name, e.g. "mnist/train". */
  readonly name: string;
  /** Keep only the first `limit` examples; 0 or undefined keeps all. The whole file is still validated. */
  readonly limit?: number;
  /** Number of classes (labels must be below it). Default 10. */
  readonly numClasses?: number;
  /** What the user should do about a bad file; ends every DataError message. */
  readonly hint?: string;
}

/**
 * Loads an images/labels pair of IDX files into a {@link Dataset}: pixels scaled to [0, 1], NHWC with one
 * channel, written once into a preallocated Float32Array.
 */
export async function loadIdxDataset(options: IdxDatasetOptions): Promise<Dataset> {
  const { imagesFile, labelsFile, name, numClasses = 10, hint = REDOWNLOAD_HINT } = options;
  // Labels first: they are small, and a count mismatch should fail before megabytes of pixels are converted.
  const labels = parseIdxLabels(await readMaybeGzip(labelsFile, hint), labelsFile, numClasses, hint);
  const images = await readIdxImages(imagesFile, options.limit ?? 0, hint, ({ count }) => {
    if (count !== labels.length) {
      throw new DataError(
        `${imagesFile} holds ${count} images but ${labelsFile} holds ${labels.length} labels; ` +
          `the two files come from different sets or one is damaged; ${hint}`,
      );
    }
  });
  return {
    name,
    count: images.kept,
    shape: [images.height, images.width, 1],
    numClasses,
    images: images.images,
    // A copy, so the dataset does not keep the whole file's buffer alive.
    labels: labels.slice(0, images.kept),
  };
}
