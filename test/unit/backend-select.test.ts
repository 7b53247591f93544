/**
 * Backend selection (packages/engine/src/backend/select.ts). On hosts without the native tfjs-node packages
 * (the normal case: their install script needs network access), `auto` must fall through to wasm, and asking
 * for a native backend by name must fail with one line saying why and what to do.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '@hwa/core';
import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from '@hwa/engine';
import { maxAbsDiff } from '../helpers/vectors.js';

const require = createRequire(import.meta.url);
function installed(spec: string): boolean {
  try {
    require.resolve(spec);
    return true;
  } catch {
    return false;
  }
}
const gpuInstalled = installed('@tensorflow/tfjs-node-gpu');
const nativeInstalled = gpuInstalled || installed('@tensorflow/tfjs-node');

function recorder() {
  const events: { event: string; fields: Record<string, unknown> }[] = [];
  return { events, log: (event: string, fields: Record<string, unknown>) => events.push({ event, fields }) };
}

async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

const savedCuda = process.env.CUDA_VISIBLE_DEVICES;
afterEach(() => {
  if (savedCuda === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
  else process.env.CUDA_VISIBLE_DEVICES = savedCuda;
});

describe('selectBackend', () => {
  it.skipIf(nativeInstalled)('auto falls through the missing native packages to wasm and says why', async () => {
    const { events, log } = recorder();
    const report = await selectBackend('auto', log);
    expect(report.selected).toBe('wasm');
    expect(report.tfBackend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(report.attempts).toEqual([
      { backend: 'tensorflow-gpu', ok: false, reason: 'package @tensorflow/tfjs-node-gpu not installed' },
      { backend: 'tensorflow', ok: false, reason: 'package @tensorflow/tfjs-node not installed' },
      { backend: 'wasm', ok: true },
    ]);
    expect(events.map((e) => e.event)).toEqual(['backend.unavailable', 'backend.unavailable', 'backend.selected']);
    expect(events[0].fields).toEqual({ backend: 'tensorflow-gpu', reason: 'package @tensorflow/tfjs-node-gpu not installed' });
    expect(events[2].fields).toMatchObject({ selected: 'wasm', tfBackend: 'wasm' });
  });

  it('an explicit cpu choice is used as is', async () => {
    const report = await selectBackend('cpu');
    expect(report).toMatchObject({ selected: 'cpu', tfBackend: 'cpu', attempts: [{ backend: 'cpu', ok: true }] });
    expect(tf.getBackend()).toBe('cpu');
  });

  it.skipIf(gpuInstalled)('an explicit tensorflow-gpu that cannot load throws one line with the cause and the fix', async () => {
    const { events, log } = recorder();
    const err = await thrown(selectBackend('tensorflow-gpu', log));
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).not.toContain('\n');
    expect(err.message).toContain("backend 'tensorflow-gpu' is unavailable");
    expect(err.message).toContain('not installed');
    expect(err.message).toContain('CUDA 11.2');
    expect(err.message).toContain('cuDNN 8.1');
    expect(events).toEqual([{ event: 'backend.unavailable', fields: expect.objectContaining({ backend: 'tensorflow-gpu' }) }]);
  });

  it.skipIf(nativeInstalled)('an explicit tensorflow that cannot load throws BackendError naming the package', async () => {
    const err = await thrown(selectBackend('tensorflow'));
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toContain('@tensorflow/tfjs-node');
    expect(err.message).toContain('--backend wasm');
  });

  it('an unknown name throws BackendError listing the valid ones', async () => {
    const err = await thrown(selectBackend('webgpu' as never));
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toBe("unknown backend 'webgpu': valid names are auto, tensorflow-gpu, tensorflow, wasm, cpu");
  });

  it('reports CUDA_VISIBLE_DEVICES as the process saw it', async () => {
    process.env.CUDA_VISIBLE_DEVICES = '1';
    expect((await selectBackend('cpu')).cudaVisibleDevices).toBe('1');
    delete process.env.CUDA_VISIBLE_DEVICES;
    expect((await selectBackend('cpu')).cudaVisibleDevices).toBeNull();
  });

  it('selecting wasm twice is safe, and a conv net gradient repeats bit for bit and equals the cpu backend result', async () => {
    await selectBackend('wasm');
    const report = await selectBackend('wasm');
    expect(report.selected).toBe('wasm');
    // Conv2DBackpropFilter does not exist in stock tfjs-backend-wasm: this needs our kernels.
    const gradient = () =>
      tf.tidy(() => {
        const x = tf.tensor4d(Array.from({ length: 2 * 6 * 6 }, (_, i) => Math.sin(i)), [2, 6, 6, 1]);
        const w = tf.tensor4d(Array.from({ length: 9 * 3 }, (_, i) => Math.cos(i)), [3, 3, 1, 3]);
        return tf.grad((f: tf.Tensor) => tf.conv2d(x, f as tf.Tensor4D, 1, 'same').square().sum())(w).dataSync();
      });
    const first = gradient();
    expect(first.length).toBe(27);
    expect(gradient()).toEqual(first);
    // And right: the same gradient from tfjs's pure-JS cpu backend, the reference (summation order differs).
    await tf.setBackend('cpu');
    const reference = gradient();
    await selectBackend('wasm');
    const scale = Math.max(1, ...Array.from(reference, Math.abs));
    expect(maxAbsDiff(first, reference)).toBeLessThanOrEqual(1e-5 * scale);
  });
});
