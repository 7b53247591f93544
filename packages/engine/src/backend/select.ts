/**
 * Picks the tfjs backend a process trains on. `auto` tries the fastest first (BACKEND_ORDER):
 *   tensorflow-gpu  @tensorflow/tfjs-node-gpu, libtensorflow on CUDA (tfjs backend name `tensorflow`)
 *   tensorflow      @tensorflow/tfjs-node, libtensorflow on the CPU   (also `tensorflow`)
 *   wasm            @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD) plus hwa's training kernels (wasm-kernels.ts)
 *   cpu             tfjs's pure-JS backend
 * The two native packages are optionalDependencies whose install script downloads libtensorflow; without
 * network access npm drops them silently (DESIGN.md §6), so on such hosts auto ends on wasm.
 *
 * Determinism: cpu and wasm run on one thread (tfjs-backend-wasm cannot use threads in Node, tfjs #3830),
 * so with fixed seeds they repeat bit for bit; parallelism comes from running one worker process per core.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { BACKENDS, BackendError, type BackendChoice } from '@hwa/core';
import { BACKEND_ORDER, type BackendName, type BackendReport } from './names.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

export { registerWasmTrainingKernels, unregisterWasmTrainingKernels, WASM_TRAINING_KERNELS } from './wasm-kernels.js';

/** Structured log sink (pino-like `log(event, fields)`); events are `backend.unavailable` and `backend.selected`. */
export type BackendLog = (event: string, fields: Record<string, unknown>) => void;

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
const CPU_PACKAGE = '@tensorflow/tfjs-node';

/** What the user should do when a backend they asked for by name cannot load. */
const REMEDY: Record<BackendName, string> = {
  'tensorflow-gpu':
    `install ${GPU_PACKAGE}@4.22.0 on Linux x86-64 with an NVIDIA driver >= 450, CUDA 11.2 and cuDNN 8.1 ` +
    `(the tfjs-node README's requirement) on LD_LIBRARY_PATH; its install script downloads libtensorflow, ` +
    `so run \`npm rebuild ${GPU_PACKAGE}\` with network access; or choose --backend wasm`,
  tensorflow:
    `install ${CPU_PACKAGE}@4.22.0 (its install script downloads libtensorflow: run ` +
    `\`npm rebuild ${CPU_PACKAGE}\` with network access); or choose --backend wasm`,
  wasm: 'reinstall @tensorflow/tfjs-backend-wasm@4.22.0 (its .wasm files must sit next to its dist/ bundle), or choose --backend cpu',
  cpu: 'reinstall @tensorflow/tfjs@4.22.0',
};

/** A backend that could not be used, with the reason shown to the user. */
class Unavailable extends Error {}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n', 1)[0].trim();
}

/** Throws Unavailable('package not installed') unless `spec` resolves from here. */
function assertInstalled(spec: string): void {
  try {
    createRequire(import.meta.url).resolve(spec);
  } catch {
    throw new Unavailable(`package ${spec} not installed`);
  }
}

/** Imports a native tfjs-node package; the specifier is a variable so TypeScript doesn't need its types. */
async function importNative(spec: string): Promise<void> {
  assertInstalled(spec);
  try {
    await import(spec);
  } catch (err) {
    throw new Unavailable(`${spec} failed to load: ${firstLine(err)}`);
  }
}

async function activate(tfName: string): Promise<void> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(tfName);
    await tf.ready();
  } catch (err) {
    throw new Unavailable(`tfjs backend '${tfName}' failed to initialize: ${firstLine(err)}`);
  }
  if (!ok) throw new Unavailable(`tfjs backend '${tfName}' failed to initialize (tfjs logged the cause above)`);
}

/** The `tensorflow` backend's own report of whether libtensorflow found a CUDA device. */
function usingGpu(): boolean {
  const backend = tf.backend() as unknown as { isUsingGpuDevice?: boolean };
  return backend.isUsingGpuDevice === true;
}

const LOADERS: Record<BackendName, () => Promise<void>> = {
  async 'tensorflow-gpu'() {
    // Several worker processes may share a GPU; by default the first would reserve all of its memory.
    process.env.TF_FORCE_GPU_ALLOW_GROWTH ??= 'true';
    await importNative(GPU_PACKAGE);
    await activate('tensorflow');
    if (!usingGpu()) {
      const visible = process.env.CUDA_VISIBLE_DEVICES;
      throw new Unavailable(
        `${GPU_PACKAGE} loaded but TensorFlow found no usable CUDA GPU` +
          (visible == null ? '' : ` (CUDA_VISIBLE_DEVICES=${visible})`) +
          ' - check nvidia-smi and that the CUDA 11.2 / cuDNN 8.1 libraries are on LD_LIBRARY_PATH',
      );
    }
  },
  async tensorflow() {
    // tfjs-node-gpu, if it loaded above without a GPU, already registered `tensorflow` on the CPU: use it
    // rather than loading a second libtensorflow into the process.
    if (tf.findBackend('tensorflow') == null) await importNative(CPU_PACKAGE);
    await activate('tensorflow');
  },
  async wasm() {
    let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
    try {
      wasm = await import('@tensorflow/tfjs-backend-wasm');
    } catch (err) {
      throw new Unavailable(`@tensorflow/tfjs-backend-wasm failed to load: ${firstLine(err)}`);
    }
    // Node has no wasm threads (tfjs #3830); say so explicitly so that a future build can't change results.
    wasm.setThreadsCount(1);
    registerWasmTrainingKernels();
    await activate('wasm');
  },
  async cpu() {
    await activate('cpu');
  },
};

/**
 * Loads and activates a tfjs backend. `auto` tries tensorflow-gpu, tensorflow, wasm, cpu in that order and
 * keeps the first that works; a named choice that cannot load throws BackendError saying why and what to
 * do. Safe to call more than once (kernel registration is idempotent).
 */
export async function selectBackend(choice: BackendChoice, log?: BackendLog): Promise<BackendReport> {
  if (choice !== 'auto' && !(BACKEND_ORDER as readonly string[]).includes(choice)) {
    throw new BackendError(`unknown backend '${String(choice)}': valid names are ${BACKENDS.join(', ')}`);
  }
  const candidates: readonly BackendName[] = choice === 'auto' ? BACKEND_ORDER : [choice];
  const attempts: { backend: BackendName; ok: boolean; reason?: string }[] = [];
  for (const backend of candidates) {
    try {
      await LOADERS[backend]();
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      attempts.push({ backend, ok: false, reason: err.message });
      log?.('backend.unavailable', { backend, reason: err.message });
      if (choice !== 'auto') {
        throw new BackendError(`backend '${backend}' is unavailable: ${err.message}. To fix: ${REMEDY[backend]}.`);
      }
      continue;
    }
    attempts.push({ backend, ok: true });
    const report: BackendReport = {
      selected: backend,
      tfBackend: tf.getBackend(),
      attempts,
      cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null,
    };
    log?.('backend.selected', { ...report });
    return report;
  }
  throw new BackendError(
    `no tfjs backend could be loaded: ${attempts.map((a) => `${a.backend}: ${a.reason}`).join('; ')}`,
  );
}
