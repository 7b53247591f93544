/**
 * The shared-memory tensor files (`--transport shm`, @hwa/protocol shared-memory.ts) and the header fields that
 * point into them: real files in a temp folder, written by one side and read by the other.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProtocolError, WIRE_DTYPES } from '@hwa/core';
import { PROTOCOL_VERSION, SharedTensorFiles, bytesPerElement, decode, decodeRange, encode, removeStaleSharedDirs, tensorFrame, type SharedLayout } from '@hwa/protocol';
import { Packr } from 'msgpackr';
import { afterAll, describe, expect, it } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'hwa-shm-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const layout: SharedLayout = { workers: 3, syncSize: 1003, modelSize: 1000, dtype: 'float32' };
const ramp = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => (i - n / 2) * 1e-3 * k);

describe('SharedTensorFiles', () => {
  it.each(WIRE_DTYPES)('%s: a worker writes its weights, the coordinator reads them; the coordinator writes the average, workers read it', (dtype) => {
    const l = { ...layout, dtype };
    const coordinator = SharedTensorFiles.create(l, root);
    const names = readdirSync(coordinator.dir).sort();
    expect(names).toEqual(['average', 'offline', 'weights-0', 'weights-1', 'weights-2']);
    expect(statSync(join(coordinator.dir, 'weights-1')).size).toBe(1003 * bytesPerElement(dtype));
    expect(statSync(join(coordinator.dir, 'offline')).size).toBe(1000 * bytesPerElement(dtype));
    const worker = SharedTensorFiles.open(coordinator.dir, 1, l);
    const theta = ramp(1003, 3);
    // Chunk [500, 1003) then [0, 500), as frames would carry them.
    for (const [offset, count] of [[500, 503], [0, 500]]) worker.write('weights', 1, tensorFrame(theta, offset, count, dtype), offset);
    const got = new Float32Array(1003);
    const scratch = new Uint8Array(1003 * 2);
    coordinator.readTensorInto('weights', 1, { dtype, length: 1003, offset: 0, count: 1003, chunk: 0, chunks: 1 }, got, scratch);
    // The same bytes decoded as a payload frame would be:
    const viaFrame = new Float32Array(1003);
    decodeRange(tensorFrame(theta, 0, 1003, dtype), 1003, dtype, viaFrame, 0);
    expect(got).toEqual(viaFrame);

    const average = ramp(1003, -1);
    coordinator.write('average', 0, tensorFrame(average, 0, 1003, dtype), 0);
    const back = new Float32Array(1003);
    worker.readTensorInto('average', 0, { dtype, length: 1003, offset: 3, count: 1000, chunk: 0, chunks: 1 }, back, scratch);
    expect(back[0]).toBe(0);
    if (dtype === 'float32') expect(back.subarray(3)).toEqual(average.subarray(3));
    else for (let i = 3; i < 1003; i++) expect(Math.abs(back[i] - average[i])).toBeLessThanOrEqual(Math.abs(average[i]) * 2 ** -7);
    worker.close();
    coordinator.close();
    expect(existsSync(coordinator.dir)).toBe(false);
  });

  it('a worker only holds its own weights file and the broadcasts, read-only', () => {
    const coordinator = SharedTensorFiles.create(layout, root);
    const worker = SharedTensorFiles.open(coordinator.dir, 2, layout);
    expect(() => worker.write('weights', 0, new Uint8Array(8), 0)).toThrow(/no shared-memory file 'weights-0' is open/);
    expect(() => worker.write('average', 0, new Uint8Array(8), 0)).toThrow(/EBADF|bad file/i);
    expect(() => worker.write('weights', 2, new Uint8Array(4 * 4), 1000)).toThrow(/\[1000, 1004\) lies outside the weights file of 1003 floats/);
    worker.close();
    worker.close(); // twice is fine
    expect(() => worker.read('average', 0, new Uint8Array(4), 0, 1)).toThrow(/closed/);
    expect(existsSync(coordinator.dir)).toBe(true); // a worker never removes the folder
    coordinator.close();
  });

  it('names the missing file and the fix when the folder is not on this machine', () => {
    const err = (() => {
      try {
        SharedTensorFiles.open(join(root, 'nowhere'), 0, layout);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toMatch(/cannot open the shared-memory file .*nowhere\/weights-0 \(ENOENT\); --transport shm needs every worker on the coordinator's machine/);
  });

  it('refuses files of the wrong size (coordinator and worker disagree on the vector)', () => {
    const coordinator = SharedTensorFiles.create(layout, root);
    truncateSync(join(coordinator.dir, 'average'), 12);
    expect(() => SharedTensorFiles.open(coordinator.dir, 0, layout)).toThrow(/average is 12 bytes, expected 4012 \(1003 × float32\)/);
    coordinator.close();
  });

  it('a read past a truncated file says so instead of returning stale bytes', () => {
    const coordinator = SharedTensorFiles.create(layout, root);
    truncateSync(join(coordinator.dir, 'weights-0'), 40);
    expect(() => coordinator.read('weights', 0, new Uint8Array(400), 0, 100)).toThrow(/weights-0 ended early/);
    coordinator.close();
  });

  it('cannot create its folder in a root that does not exist: a clear error', () => {
    expect(() => SharedTensorFiles.create(layout, join(root, 'missing', 'deeper'))).toThrow(/cannot create a shared-memory folder in .*missing/);
  });

  it('removes folders of coordinators that are gone, and only those', () => {
    const stale = join(root, 'hwa-999999999-abcdef');
    const live = join(root, `hwa-${process.ppid}-abcdef`);
    const foreign = join(root, 'hwa-999999998-zzzzzz');
    for (const dir of [stale, live, foreign]) mkdirSync(dir);
    writeFileSync(join(stale, 'average'), '');
    writeFileSync(join(live, 'average'), '');
    // `foreign` has no `average` file: not made by hwa, left alone.
    expect(removeStaleSharedDirs(root)).toEqual([stale]);
    expect([existsSync(stale), existsSync(live), existsSync(foreign)]).toEqual([false, true, true]);
    for (const dir of [live, foreign]) rmSync(dir, { recursive: true });
  });
});

describe('shared tensor headers', () => {
  const packr = new Packr({ useRecords: false });
  const shared = { dtype: 'float32', length: 4, offset: 0, count: 4, chunk: 0, chunks: 1, shared: true } as const;
  const weights = { v: PROTOCOL_VERSION, type: 'weights', rank: 0, round: 1, step: 1, stats: { loss: 1, computeMs: 1, samples: 1 }, tensor: shared } as const;

  it('carry no payload frame', () => {
    expect(decode(encode(weights)).header).toEqual(weights);
    expect(() => decode([Buffer.from(packr.pack(weights)), Buffer.alloc(16)])).toThrow(/payload frame of 16 bytes, but 'tensor.shared' says the elements are in shared memory/);
  });

  it('a welcome names the folder, but its start vector always comes in frames', () => {
    const welcome = { v: PROTOCOL_VERSION, type: 'welcome', rank: 0, workers: 2, nextRound: 1, shared: '/dev/shm/hwa-1-abcdef', tensor: { ...shared, shared: undefined } } as const;
    expect(decode(encode(welcome, new Uint8Array(16))).header).toMatchObject({ shared: '/dev/shm/hwa-1-abcdef' });
    expect(() => decode([Buffer.from(packr.pack({ ...welcome, tensor: shared }))])).toThrow(/'tensor.shared' set, but a welcome's start vector always travels in frames/);
    expect(() => decode([Buffer.from(packr.pack({ ...welcome, shared: '' })), Buffer.alloc(16)])).toThrow(/shared/);
    expect(() => decode([Buffer.from(packr.pack({ ...weights, tensor: { ...shared, shared: false } }))])).toThrow(/tensor\.shared/);
  });
});

describe('room in the shared-memory folder', () => {
  it('is checked before any file is made, with the fix named', () => {
    // 257 files of 2^31 − 1 float32 is ~2 TiB: more than any /dev/shm or temp folder this runs on holds.
    const huge: SharedLayout = { workers: 255, syncSize: 2 ** 31 - 1, modelSize: 2 ** 31 - 1, dtype: 'float32' };
    expect(() => SharedTensorFiles.create(huge, root)).toThrow(/not enough room for shared memory in .*: the run needs 2105344\.0 MiB, [\d.]+ MiB are free \(in docker, raise --shm-size; or use --transport ipc\)/);
    expect(readdirSync(root).filter((n) => n.startsWith('hwa-'))).toEqual([]);
  });
});
