import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CIFAR10_MEAN,
  CIFAR10_RECORD_BYTES,
  CIFAR10_STD,
  loadCifar10Split,
  loadDataset,
} from '@hwa/engine';
import { dataError } from '../helpers/errors.js';

/** Pixel byte of record `r`, channel `c`, row `y`, column `x` in the fixtures below. */
const pixel = (r: number, c: number, y: number, x: number): number => (r * 31 + c * 85 + y * 7 + x * 3) % 256;

/** `labels.length` CIFAR-10 records: a label byte, then 1024 R, 1024 G, 1024 B bytes, each plane row-major. */
function records(labels: number[], first = 0): Buffer {
  const b = Buffer.alloc(labels.length * CIFAR10_RECORD_BYTES);
  labels.forEach((label, i) => {
    const at = i * CIFAR10_RECORD_BYTES;
    b[at] = label;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) b[at + 1 + c * 1024 + y * 32 + x] = pixel(first + i, c, y, x);
      }
    }
  });
  return b;
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hwa-cifar-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes the six batch files with `perFile` records each into `folder`; record numbers run on across files. */
function writeCifar(folder: string, perFile: number): void {
  mkdirSync(folder, { recursive: true });
  for (let f = 0; f < 5; f++) {
    const labels = Array.from({ length: perFile }, (_, i) => (f * perFile + i) % 10);
    writeFileSync(join(folder, `data_batch_${f + 1}.bin`), records(labels, f * perFile));
  }
  writeFileSync(join(folder, 'test_batch.bin'), records(Array.from({ length: perFile }, (_, i) => 9 - (i % 10)), 1000));
}

describe('CIFAR-10 binary loader', () => {
  it('converts CHW records to NHWC and normalizes each channel with the CIFAR-10 mean/std', async () => {
    const file = join(dir, 'b.bin');
    writeFileSync(file, records([3, 7]));
    const d = await loadCifar10Split({ files: [file], name: 'cifar10/test' });
    expect(d.count).toBe(2);
    expect(d.shape).toEqual([32, 32, 3]);
    expect(d.numClasses).toBe(10);
    expect([...d.labels]).toEqual([3, 7]);
    expect(d.images.length).toBe(2 * 3072);
    for (const [r, y, x, c] of [
      [0, 0, 0, 0],
      [0, 0, 1, 2],
      [1, 5, 9, 1],
      [1, 31, 31, 2],
    ]) {
      const expected = (pixel(r, c, y, x) / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c];
      expect(d.images[((r * 32 + y) * 32 + x) * 3 + c]).toBeCloseTo(expected, 5);
    }
  });

  it('loads the six files from dir or from dir/cifar-10-batches-bin, with limits spanning files', async () => {
    for (const folder of [dir, join(dir, 'sub')]) {
      writeCifar(folder === dir ? dir : join(folder, 'cifar-10-batches-bin'), 4);
      const { train, test } = await loadDataset('cifar10', { dir: folder, trainLimit: 10 });
      expect(train.name).toBe('cifar10/train');
      expect(train.count).toBe(10);
      expect(test.count).toBe(4);
      // Records 0..9 come from data_batch_1 (0–3), _2 (4–7) and _3 (8–9), in order.
      expect([...train.labels]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const r = 9;
      const expected = (pixel(r, 1, 2, 3) / 255 - CIFAR10_MEAN[1]) / CIFAR10_STD[1];
      expect(train.images[r * 3072 + (2 * 32 + 3) * 3 + 1]).toBeCloseTo(expected, 5);
      const all = await loadDataset('cifar10', { dir: folder });
      expect(all.train.count).toBe(20);
      expect([...all.test.labels]).toEqual([9, 8, 7, 6]);
    }
  });

  it('rejects a file that is not a whole number of records', async () => {
    writeCifar(dir, 2);
    const file = join(dir, 'data_batch_3.bin');
    writeFileSync(file, records([1, 2]).subarray(0, CIFAR10_RECORD_BYTES + 100));
    const message = await dataError(loadDataset('cifar10', { dir }));
    expect(message).toContain(file);
    expect(message).toContain('3173 bytes is not a whole number of 3073-byte CIFAR-10 records');
    expect(message).toContain(`hwa data download cifar10 --dir ${dir}`);
  });

  it('with several damaged batch files, names the first of them on every run', async () => {
    writeCifar(dir, 2);
    for (const f of ['data_batch_2.bin', 'data_batch_5.bin']) writeFileSync(join(dir, f), records([1]).subarray(0, 100));
    for (let i = 0; i < 5; i++) {
      const message = await dataError(loadDataset('cifar10', { dir }));
      expect(message).toContain(join(dir, 'data_batch_2.bin'));
    }
  });

  it('rejects a label outside 0..9, naming the record', async () => {
    const file = join(dir, 'b.bin');
    writeFileSync(file, records([1, 2, 12]));
    const message = await dataError(loadCifar10Split({ files: [file], name: 'x' }));
    expect(message).toContain(`${file}: record 2`);
    expect(message).toContain('label 12');
  });

  it('names the files and both folders it looked in when the set is missing', async () => {
    const message = await dataError(loadDataset('cifar10', { dir }));
    expect(message).toContain('data_batch_1.bin');
    expect(message).toContain('test_batch.bin');
    expect(message).toContain(join(dir, 'cifar-10-batches-bin'));
    expect(message).toContain(`hwa data download cifar10 --dir ${dir}`);
  });
});
