import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DataError } from '@hwa/core';
import { loadDataset, loadIdxDataset } from '@hwa/engine';

/** An IDX image file: magic 0x00000803, big-endian count/rows/cols, then the pixels. */
function idxImages(
  count: number,
  h: number,
  w: number,
  pixel: (n: number, i: number) => number,
  magic = 0x803,
): Buffer {
  const b = Buffer.alloc(16 + count * h * w);
  b.writeUInt32BE(magic, 0);
  b.writeUInt32BE(count, 4);
  b.writeUInt32BE(h, 8);
  b.writeUInt32BE(w, 12);
  for (let n = 0; n < count; n++) for (let i = 0; i < h * w; i++) b[16 + n * h * w + i] = pixel(n, i);
  return b;
}

function idxLabels(labels: number[]): Buffer {
  const b = Buffer.alloc(8 + labels.length);
  b.writeUInt32BE(0x801, 0);
  b.writeUInt32BE(labels.length, 4);
  labels.forEach((l, i) => (b[8 + i] = l));
  return b;
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hwa-idx-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const write = (name: string, bytes: Buffer): string => {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
};

/** Expects `promise` to reject with a DataError whose message contains every fragment. */
async function expectDataError(promise: Promise<unknown>, ...fragments: string[]): Promise<string> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataError);
  const message = (err as Error).message;
  for (const f of fragments) expect(message).toContain(f);
  return message;
}

describe('IDX loader', () => {
  const pixel = (n: number, i: number): number => (n * 7 + i * 3) % 256;

  it('loads images scaled to [0,1] in NHWC with one channel, and the labels', async () => {
    const imagesFile = write('img', idxImages(3, 2, 4, pixel));
    const labelsFile = write('lab', idxLabels([9, 0, 4]));
    const d = await loadIdxDataset({ imagesFile, labelsFile, name: 'x/train' });
    expect(d.name).toBe('x/train');
    expect(d.count).toBe(3);
    expect(d.shape).toEqual([2, 4, 1]);
    expect(d.numClasses).toBe(10);
    expect([...d.labels]).toEqual([9, 0, 4]);
    expect(d.images.length).toBe(3 * 8);
    for (let n = 0; n < 3; n++) {
      for (let i = 0; i < 8; i++) expect(d.images[n * 8 + i]).toBe(Math.fround(pixel(n, i) / 255));
    }
  });

  it('maps 0 to 0 and 255 to exactly 1', async () => {
    const imagesFile = write('img', idxImages(1, 1, 2, (_, i) => (i === 0 ? 0 : 255)));
    const labelsFile = write('lab', idxLabels([1]));
    const d = await loadIdxDataset({ imagesFile, labelsFile, name: 'x' });
    expect([...d.images]).toEqual([0, 1]);
  });

  it('reads gzip files, detected by magic bytes rather than by name', async () => {
    const raw = await loadIdxDataset({
      imagesFile: write('img', idxImages(5, 3, 3, pixel)),
      labelsFile: write('lab', idxLabels([1, 2, 3, 4, 5])),
      name: 'raw',
    });
    const gz = await loadIdxDataset({
      imagesFile: write('img-no-suffix', gzipSync(idxImages(5, 3, 3, pixel))),
      labelsFile: write('lab.gz', gzipSync(idxLabels([1, 2, 3, 4, 5]))),
      name: 'gz',
    });
    expect(gz.images).toEqual(raw.images);
    expect(gz.labels).toEqual(raw.labels);
  });

  it('keeps the first `limit` examples; 0 keeps all', async () => {
    const imagesFile = write('img', idxImages(6, 2, 2, pixel));
    const labelsFile = write('lab', idxLabels([0, 1, 2, 3, 4, 5]));
    const all = await loadIdxDataset({ imagesFile, labelsFile, name: 'x', limit: 0 });
    const some = await loadIdxDataset({ imagesFile, labelsFile, name: 'x', limit: 4 });
    const more = await loadIdxDataset({ imagesFile, labelsFile, name: 'x', limit: 100 });
    expect(all.count).toBe(6);
    expect(more.count).toBe(6);
    expect(some.count).toBe(4);
    expect([...some.labels]).toEqual([0, 1, 2, 3]);
    expect(some.images).toEqual(all.images.subarray(0, 16));
  });

  it('rejects a truncated image file, naming the file, the header dims and the actual size', async () => {
    const full = idxImages(10, 28, 28, pixel);
    const imagesFile = write('train-images-idx3-ubyte', full.subarray(0, 16 + 1000));
    const labelsFile = write('lab', idxLabels(new Array(10).fill(0)));
    await expectDataError(
      loadIdxDataset({ imagesFile, labelsFile, name: 'x', hint: 're-download with `hwa data download mnist`' }),
      imagesFile,
      'truncated: header says 10×28×28 = 7840 bytes of pixels, file has 1000',
      're-download with `hwa data download mnist`',
    );
  });

  it('rejects trailing bytes after the pixels', async () => {
    const imagesFile = write('img', Buffer.concat([idxImages(2, 2, 2, pixel), Buffer.alloc(3)]));
    const labelsFile = write('lab', idxLabels([0, 1]));
    await expectDataError(loadIdxDataset({ imagesFile, labelsFile, name: 'x' }), imagesFile, 'too long', 'file has 11');
  });

  it('rejects a file shorter than its header', async () => {
    const imagesFile = write('img', idxImages(1, 1, 1, pixel).subarray(0, 10));
    const labelsFile = write('lab', idxLabels([0]));
    const load = loadIdxDataset({ imagesFile, labelsFile, name: 'x' });
    await expectDataError(load, imagesFile, 'truncated', '16-byte IDX header');
  });

  it('rejects a wrong magic, saying what the file looks like', async () => {
    const labels = idxLabels([0, 1]);
    // Files swapped by mistake: the labels file where images are expected.
    await expectDataError(
      loadIdxDataset({ imagesFile: write('img', labels), labelsFile: write('lab', labels), name: 'x' }),
      'magic is an IDX label file (0x00000801), expected an IDX image file (0x00000803)',
    );
    const junk = idxImages(1, 1, 1, pixel, 0xdeadbeef);
    await expectDataError(
      loadIdxDataset({ imagesFile: write('img2', junk), labelsFile: write('lab', labels), name: 'x' }),
      'magic is 0xdeadbeef',
    );
  });

  it('rejects a truncated label file', async () => {
    const imagesFile = write('img', idxImages(4, 1, 1, pixel));
    const labelsFile = write('lab', idxLabels([0, 1, 2, 3]).subarray(0, 10));
    const load = loadIdxDataset({ imagesFile, labelsFile, name: 'x' });
    await expectDataError(load, labelsFile, 'truncated: header says 4 labels');
  });

  it('rejects image and label counts that differ', async () => {
    const imagesFile = write('img', idxImages(4, 2, 2, pixel));
    const labelsFile = write('lab', idxLabels([0, 1, 2]));
    const load = loadIdxDataset({ imagesFile, labelsFile, name: 'x' });
    await expectDataError(load, '4 images', '3 labels', imagesFile, labelsFile);
  });

  it('rejects a label that is not a class index', async () => {
    const imagesFile = write('img', idxImages(3, 1, 1, pixel));
    const labelsFile = write('lab', idxLabels([0, 10, 2]));
    await expectDataError(loadIdxDataset({ imagesFile, labelsFile, name: 'x' }), labelsFile, 'label 10 at index 1');
  });

  it('rejects corrupt gzip data', async () => {
    const gz = gzipSync(idxImages(3, 4, 4, pixel));
    gz.fill(0x55, 12, 30);
    const imagesFile = write('img.gz', gz);
    const labelsFile = write('lab', idxLabels([0, 1, 2]));
    await expectDataError(loadIdxDataset({ imagesFile, labelsFile, name: 'x' }), imagesFile, 'gzip');
  });

  it('reports a missing file as a DataError', async () => {
    await expectDataError(
      loadIdxDataset({ imagesFile: join(dir, 'nope'), labelsFile: join(dir, 'nope2'), name: 'x' }),
      'cannot read',
    );
  });
});

describe('loadDataset for IDX sets', () => {
  function writeMnistLike(gz: boolean): void {
    const z = (b: Buffer): Buffer => (gz ? gzipSync(b) : b);
    const s = gz ? '.gz' : '';
    write(`train-images-idx3-ubyte${s}`, z(idxImages(20, 28, 28, (n, i) => (n + i) % 256)));
    write(`train-labels-idx1-ubyte${s}`, z(idxLabels(Array.from({ length: 20 }, (_, i) => i % 10))));
    write(`t10k-images-idx3-ubyte${s}`, z(idxImages(5, 28, 28, (n, i) => (n * i) % 256)));
    write(`t10k-labels-idx1-ubyte${s}`, z(idxLabels([3, 1, 4, 1, 5])));
  }

  it.each([false, true])('loads mnist and fashion-mnist from a dir (gz: %s) with limits', async (gz) => {
    writeMnistLike(gz);
    for (const name of ['mnist', 'fashion-mnist'] as const) {
      const { train, test } = await loadDataset(name, { dir, trainLimit: 12, testLimit: 0 });
      expect(train.name).toBe(`${name}/train`);
      expect(test.name).toBe(`${name}/test`);
      expect(train.count).toBe(12);
      expect(test.count).toBe(5);
      expect(train.shape).toEqual([28, 28, 1]);
      expect([...test.labels]).toEqual([3, 1, 4, 1, 5]);
    }
  });

  it('names the files it looked for, where, and the download command when a set is missing', async () => {
    write('train-images-idx3-ubyte', idxImages(1, 28, 28, () => 0));
    const message = await expectDataError(
      loadDataset('fashion-mnist', { dir }),
      'fashion-mnist: dataset not found',
      'train-labels-idx1-ubyte[.gz]',
      't10k-images-idx3-ubyte[.gz]',
      dir,
      `hwa data download fashion-mnist --dir ${dir}`,
    );
    // The file that is there is not reported missing.
    expect(message).toMatch(/missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte\)/);
  });

  it('puts the download command into the hint of a damaged file', async () => {
    writeMnistLike(false);
    write('t10k-labels-idx1-ubyte', idxLabels([3, 1, 4, 1, 5]).subarray(0, 9));
    const load = loadDataset('mnist', { dir });
    await expectDataError(load, 't10k-labels-idx1-ubyte: truncated', `hwa data download mnist --dir ${dir}`);
  });

  it('with both label files damaged, names the training one, however the reads interleave', async () => {
    // A training split that takes longer to read than the test split: a first-to-fail report would name t10k.
    write('train-images-idx3-ubyte', idxImages(3000, 28, 28, (n, i) => (n + i) % 256));
    write('t10k-images-idx3-ubyte', idxImages(5, 28, 28, () => 0));
    write('train-labels-idx1-ubyte', Buffer.alloc(0));
    write('t10k-labels-idx1-ubyte', Buffer.alloc(0));
    for (let i = 0; i < 3; i++) await expectDataError(loadDataset('mnist', { dir }), 'train-labels-idx1-ubyte: truncated');
  });

  it('rejects unknown names and bad limits with a ConfigError', async () => {
    await expect(loadDataset('imagenet' as 'mnist')).rejects.toBeInstanceOf(ConfigError);
    const bad = loadDataset('synthetic', { trainLimit: -1 });
    await expect(bad).rejects.toThrow(/trainLimit must be a non-negative integer/);
    await expect(loadDataset('synthetic', { testLimit: 1.5 })).rejects.toBeInstanceOf(ConfigError);
  });
});
