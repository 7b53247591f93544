/**
 * Picks the tfjs backend a process trains on. `auto` tries the fastest first (BACKEND_ORDER):
 *   tensorflow-gpu  @tensorflow/tfjs-node-gpu, libtensorflow on CUDA (tfjs backend name `tensorflow`)
 *   tensorflow      @tensorflow/tfjs-node, libtensorflow on the CPU   (also `tensorflow`)
 *   wasm            @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD) plus hwa's training kernels (wasm-kernels/)
 *   cpu             tfjs's pure-JS backend
 * The two native packages are optionalDependencies whose own install script downloads a libtensorflow that
 * many hosts cannot reach; npm then drops them. `npm run setup:native` (packages/cli/src/native/) installs them
 * and builds their addon against a current TensorFlow; without it, auto ends on wasm.
 *
 * Determinism: cpu and wasm run on one thread (tfjs-backend-wasm cannot use threads in Node, tfjs #3830),
 * so with fixed seeds they repeat bit for bit; parallelism comes from running one worker process per core.
 * Native TensorFlow repeats bit for bit at a fixed thread count (docs/backends.md).
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { BACKENDS, BackendError, type BackendChoice } from '@hwa/core';
import { cpus } from 'node:os';
import { BACKEND_ORDER, type BackendName, type BackendReport } from './names.js';
import { NATIVE_PACKAGES, locateNativePackage, nativeAddonBuilt, setTensorflowThreads, tensorflowThreads } from './native.js';
import { registerWasmTrainingKernels } from './wasm-kernels/index.js';

export { registerWasmTrainingKernels, unregisterWasmTrainingKernels, WASM_TRAINING_KERNELS } from './wasm-kernels/index.js';

/** Structured log sink (pino-like `log(event, fields)`); events are `backend.unavailable` and `backend.selected`. */
export type BackendLog = (event: string, fields: Record<string, unknown>) => void;

const GPU_PACKAGE = NATIVE_PACKAGES.gpu;
const CPU_PACKAGE = NATIVE_PACKAGES.cpu;

/** What the user should do when a backend they asked for by name cannot load. */
const REMEDY: Record<BackendName, string> = {
  'tensorflow-gpu':
    'run `npm run setup:native -- --gpu` (TensorFlow with CUDA 12 and cuDNN 9 from pip wheels; needs an NVIDIA ' +
    'driver for CUDA 12 on Linux x86-64), or choose --backend tensorflow or wasm',
  tensorflow: 'run `npm run setup:native` (TensorFlow for the CPU from a pip wheel), or choose --backend wasm',
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

/**
 * Imports a native tfjs-node package; the specifier is a variable so TypeScript doesn't need its types. A
 * package without its built addon is not imported at all: its JS would register every `tensorflow` kernel
 * before failing, and the next package would then register them all again.
 */
async function importNative(spec: string): Promise<void> {
  assertInstalled(spec);
  // libtensorflow's INFO and WARNING lines (CPU features, oneDNN) would fill every worker's log.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  const location = locateNativePackage(spec);
  if (!nativeAddonBuilt(location)) {
    const setup = spec === GPU_PACKAGE ? 'npm run setup:native -- --gpu' : 'npm run setup:native';
    throw new Unavailable(`${spec} is installed but its native addon is not built (${setup} builds it)`);
  }
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
          ' - check nvidia-smi, and that `npm run setup:native -- --gpu` finished (it wires in CUDA 12 and cuDNN 9)',
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

/** How a process wants its backend set up. */
export interface BackendOptions {
  /**
   * libtensorflow intra-op (and inter-op) threads for the native backends; 0 = TensorFlow's default (one per
   * core). Read once, when the native package first loads in this process. wasm and cpu always use one thread.
   */
  threads?: number;
}

/** libtensorflow's version, as its C API reports it (the `tensorflow` backend's binding). */
function tensorflowVersion(): string | undefined {
  const backend = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  return backend.binding?.TF_Version;
}

/**
 * Loads and activates a tfjs backend. `auto` tries tensorflow-gpu, tensorflow, wasm, cpu in that order and
 * keeps the first that works; a named choice that cannot load throws BackendError saying why and what to
 * do. Safe to call more than once (kernel registration is idempotent).
 */
export async function selectBackend(choice: BackendChoice, log?: BackendLog, options: BackendOptions = {}): Promise<BackendReport> {
  setTensorflowThreads(options.threads ?? 0);
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
    const native = tf.getBackend() === 'tensorflow';
    const report: BackendReport = {
      selected: backend,
      tfBackend: tf.getBackend(),
      attempts,
      cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null,
      tensorflowVersion: native ? (tensorflowVersion() ?? null) : null,
      threads: native ? tensorflowThreads(cpus().length) : 1,
    };
    log?.('backend.selected', { ...report });
    return report;
  }
  throw new BackendError(
    `no tfjs backend could be loaded: ${attempts.map((a) => `${a.backend}: ${a.reason}`).join('; ')}`,
  );
}
