/**
 * Training-step benchmark: ms per step and samples/s of one SGD step (the engine's SgdStep: momentum 0.9,
 * weight decay 5e-4, softmax cross-entropy) on the `mlp` (784-256-128-10) and `cnn`
 * (conv32-pool-conv64-pool-dense128) models of packages/engine/src/model.ts, batch 64 of 28×28×1 inputs, on
 * every backend this host can load; native TensorFlow once per thread count. Each backend (and thread count)
 * runs in a process of its own: libtensorflow reads its thread settings once, when it loads. With --pytorch,
 * the same two models and step in PyTorch at the same thread counts, in the same run. Prints a table and writes
 * bench/results/step.json.
 *
 *   npm run bench:step                                   # every loadable backend, both models, native at 1 and 2 threads
 *   npm run bench:step -- --pytorch /usr/bin/python3     # + PyTorch beside them (apt-get install python3-torch libopenblas0-pthread)
 *   npm run bench:step -- --backends wasm --profile      # + where the time goes, per kernel (tf.profile)
 *   npm run bench:step -- --backends wasm --stock        # + stock tfjs-backend-wasm kernels, for comparison
 *   npm run bench:step -- --backends cpu --cpu-cnn-steps 2   # the cpu cnn is ~33 s/step, so opt-in
 *   npm run bench:step -- --backends wasm --models resnet20   # ResNet-20 on 32×32×3 inputs (~1.1 s/step)
 *
 * The machine is shared and noisy (±20%): read the median, with min as the best case. cpu ms is the
 * process's CPU time per step on all its threads (V8's concurrent GC and compiler included).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '@hwa/core';
import {
  BACKEND_ORDER,
  SgdStep,
  buildModel,
  registerWasmTrainingKernels,
  selectBackend,
  unregisterWasmTrainingKernels,
  type BackendName,
} from '@hwa/engine';

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string', default: BACKEND_ORDER.join(',') }, // which backends to try, in order
    threads: { type: 'string', default: '1,2' }, // TensorFlow thread counts for the native backends
    pytorch: { type: 'string' }, // a python3 with torch: time the same models in PyTorch at the same thread counts
    child: { type: 'string' }, // internal: time this one backend (at --child-threads) and print JSON results
    models: { type: 'string', default: 'mlp,cnn' },
    batch: { type: 'string', default: '64' },
    warmup: { type: 'string' }, // untimed steps first (XNNPACK operators, V8 JIT); default per model below
    steps: { type: 'string' }, // timed steps; default per model below
    'cpu-cnn-steps': { type: 'string', default: '0' }, // the pure-JS cpu backend needs ~33 s per cnn step
    profile: { type: 'boolean', default: false }, // per-kernel times, min over --profile-repeats steps
    'profile-repeats': { type: 'string', default: '8' },
    'child-threads': { type: 'string', default: '0' },
    stock: { type: 'boolean', default: false }, // also time wasm with stock tfjs-backend-wasm kernels
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'results', 'step.json') },
  },
});

type ModelName = 'mlp' | 'cnn' | 'resnet20';
const BATCH = Number(args.batch);
/**
 * Default warm-up and timed steps per model: enough for a stable median on a shared machine (a 30-step
 * median of the 4 ms mlp step still moves by 30% with the load).
 */
const DEFAULT_STEPS: Record<ModelName, { warmup: number; steps: number }> = {
  mlp: { warmup: 20, steps: 200 },
  cnn: { warmup: 5, steps: 40 },
  resnet20: { warmup: 2, steps: 5 },
};
const CPU_CNN_STEPS = Number(args['cpu-cnn-steps']);
/** MNIST-shaped inputs for mlp and cnn, CIFAR-shaped for resnet20 (opt-in: --models resnet20). */
const INPUTS: Record<ModelName, [number, number, number]> = { mlp: [28, 28, 1], cnn: [28, 28, 1], resnet20: [32, 32, 3] };
const CLASSES = 10;
const LR = 0.01;
/**
 * PyTorch 1.13 CPU, 1 thread, OpenBLAS, ms per step, measured on the 2-core reference machine
 * (docs/measurements.md): the comparison when --pytorch is not given. What ratio counts as good is written in
 * docs/measurements.md, not here.
 */
const PYTORCH_MS: Partial<Record<ModelName, number>> = { mlp: 1.6, cnn: 43 };

interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

interface Result {
  backend: string;
  model: ModelName;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  warmup?: number;
  steps?: number;
  msMedian?: number;
  msMin?: number;
  msP90?: number;
  cpuMsMedian?: number;
  samplesPerSec?: number;
  /** PyTorch's ms per step at the same thread count (this run's with --pytorch, else PYTORCH_MS at 1 thread). */
  pytorchMs?: number;
  meanLoss?: number;
  /** Tensors alive after the timed steps minus before: must be 0. */
  leakedTensors?: number;
  /** With --profile: kernel time per step by kernel name (min over repeats of each call), largest first. */
  kernels?: KernelTime[];
  kernelMsTotal?: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** A few fixed synthetic batches (pixels in [0,1), labels uniform): data loading is not part of the step. */
function makeBatches(input: [number, number, number], count: number): { x: Float32Array; y: Float32Array }[] {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const pixels = input[0] * input[1] * input[2];
  return Array.from({ length: count }, () => {
    const x = new Float32Array(BATCH * pixels).map(() => rand());
    const y = new Float32Array(BATCH * CLASSES);
    for (let i = 0; i < BATCH; i++) y[i * CLASSES + Math.floor(rand() * CLASSES)] = 1;
    return { x, y };
  });
}

async function timeModel(backend: string, model: ModelName, steps: number, warmup: number): Promise<Result> {
  const input = INPUTS[model];
  const batches = makeBatches(input, 4);
  const net = buildModel({ name: model, inputShape: input, numClasses: CLASSES, seed: 1 });
  const sgd = new SgdStep(net, { momentum: 0.9, weightDecay: 5e-4 });
  // The GPU runs asynchronously: wait for each step there, or the timings measure only the enqueueing.
  const syncEachStep = backend === 'tensorflow-gpu';
  let k = 0;
  let lossSum = 0;
  const runStep = () => {
    const b = batches[k++ % batches.length];
    sgd.run(tf.tensor4d(b.x, [BATCH, ...input]), tf.tensor2d(b.y, [BATCH, CLASSES]), LR);
    if (syncEachStep) lossSum += sgd.takeLossSum();
  };
  try {
    for (let i = 0; i < warmup; i++) runStep();
    sgd.takeLossSum();
    lossSum = 0;
    const before = tf.memory().numTensors;
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < steps; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      runStep();
      wall.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    lossSum += sgd.takeLossSum();
    const leakedTensors = tf.memory().numTensors - before;
    wall.sort((a, b) => a - b);
    cpu.sort((a, b) => a - b);
    const median = quantile(wall, 0.5);
    const result: Result = {
      backend,
      model,
      status: 'ok',
      warmup,
      steps,
      msMedian: median,
      msMin: wall[0],
      msP90: quantile(wall, 0.9),
      cpuMsMedian: quantile(cpu, 0.5),
      samplesPerSec: (BATCH / median) * 1000,
      meanLoss: lossSum / steps,
      leakedTensors,
    };
    if (args.profile) Object.assign(result, await profileKernels(runStep, Number(args['profile-repeats'])));
    sgd.takeLossSum();
    return result;
  } finally {
    sgd.dispose();
    net.dispose();
  }
}

/**
 * Kernel time per step by kernel name. tf.profile times every kernel of one step; over several steps each
 * kernel call (same position in the step) keeps its minimum, which filters out other processes' noise.
 */
async function profileKernels(runStep: () => void, repeats: number): Promise<Pick<Result, 'kernels' | 'kernelMsTotal'>> {
  let names: string[] = [];
  let best: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const info = await tf.profile(runStep);
    const ms = await Promise.all(info.kernels.map(async (kernel) => Number(await kernel.kernelTimeMs)));
    if (r === 0 || ms.length !== best.length) {
      names = info.kernels.map((kernel) => kernel.name);
      best = ms;
    } else {
      best = best.map((m, i) => Math.min(m, ms[i]));
    }
  }
  const byName = new Map<string, KernelTime>();
  names.forEach((kernel, i) => {
    // Ops with a custom gradient (fusedMatMul__op, softmaxCrossEntropy__op) are profiled as a whole as well
    // as by the kernels they run: counting them would count those kernels twice.
    if (kernel.endsWith('__op')) return;
    const entry = byName.get(kernel) ?? { kernel, calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += best[i];
    byName.set(kernel, entry);
  });
  const kernels = [...byName.values()].sort((a, b) => b.ms - a.ms);
  return { kernels, kernelMsTotal: kernels.reduce((s, k) => s + k.ms, 0) };
}

async function runBackend(
  backend: BackendName,
  models: ModelName[],
  label: string = backend,
  select: () => Promise<unknown> = () => selectBackend(backend, undefined, { threads: Number(args['child-threads']) }),
): Promise<Result[]> {
  try {
    await select();
  } catch (err) {
    if (!(err instanceof BackendError)) throw err;
    return models.map((model) => ({ backend: label, model, status: 'skipped' as const, reason: err.message }));
  }
  const results: Result[] = [];
  for (const model of models) {
    let steps = args.steps != null ? Number(args.steps) : DEFAULT_STEPS[model].steps;
    let warmup = args.warmup != null ? Number(args.warmup) : DEFAULT_STEPS[model].warmup;
    // The pure-JS cpu backend is two orders of magnitude slower: fewer steps say as much.
    if (backend === 'cpu') {
      steps = Math.min(steps, 20);
      warmup = Math.min(warmup, 3);
    }
    if (backend === 'cpu' && model !== 'mlp') {
      if (CPU_CNN_STEPS <= 0) {
        results.push({
          backend: label,
          model,
          status: 'skipped',
          reason: `cpu ${model} takes ~33 s or more per step (pure-JS Conv2DBackpropFilter); pass --cpu-cnn-steps 2 to time it`,
        });
        continue;
      }
      steps = CPU_CNN_STEPS;
      warmup = 0;
    }
    process.stderr.write(`timing ${label} ${model} (${warmup} warm-up + ${steps} steps)…\n`);
    try {
      results.push(await timeModel(label, model, steps, warmup));
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).split('\n', 1)[0];
      results.push({ backend: label, model, status: 'failed', reason });
    }
  }
  return results;
}

function fmt(n: number | undefined, digits = 2): string {
  return n == null ? '' : n.toFixed(digits);
}

function printTable(results: Result[]): void {
  const header = ['backend', 'model', 'steps', 'ms/step median', 'min', 'p90', 'cpu ms', 'samples/s', '× PyTorch', 'leaks'];
  const ok = results.filter((r) => r.status === 'ok');
  const cells = ok.map((r) => [
    r.backend,
    r.model,
    String(r.steps),
    fmt(r.msMedian),
    fmt(r.msMin),
    fmt(r.msP90),
    fmt(r.cpuMsMedian),
    fmt(r.samplesPerSec, 0),
    r.pytorchMs != null && !r.backend.startsWith('pytorch') ? fmt(r.msMedian! / r.pytorchMs) : '',
    r.leakedTensors == null ? '' : String(r.leakedTensors),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...cells.map((row) => row[i].length), ...(i < 2 ? results.map((r) => (i === 0 ? r.backend : r.model).length) : [])),
  );
  const line = (row: string[]) => row.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of results) {
    const i = ok.indexOf(r);
    console.log(i >= 0 ? line(cells[i]) : `${r.backend.padEnd(widths[0])}  ${r.model.padEnd(widths[1])}  ${r.status}: ${r.reason}`);
  }
}

function printProfiles(results: Result[]): void {
  for (const r of results) {
    if (r.kernels == null) continue;
    console.log(`\n${r.backend} ${r.model}: kernel time ${fmt(r.kernelMsTotal)} ms of ${fmt(r.msMedian)} ms/step (rest: JS, engine, tape)`);
    for (const k of r.kernels.slice(0, 12)) {
      console.log(`  ${k.kernel.padEnd(28)} ${String(k.calls).padStart(3)} calls  ${fmt(k.ms, 3).padStart(8)} ms`);
    }
  }
}

/** The label of a backend run: native ones carry their thread count (`tensorflow ×2`). */
function label(backend: string, threads: number): string {
  return backend.startsWith('tensorflow') ? `${backend} ×${threads}` : backend;
}

/** Child mode: one backend in this process, results as one JSON line on stdout. */
async function child(backend: BackendName, models: ModelName[]): Promise<void> {
  const threads = Number(args['child-threads']);
  const results = await runBackend(backend, models, label(backend, threads));
  if (backend === 'wasm' && args.stock) {
    // Stock tfjs-backend-wasm 4.22 kernels: the baseline hwa's kernels replace (the cnn cannot train there).
    // selectBackend would register hwa's kernels again, so switch with tf.setBackend.
    unregisterWasmTrainingKernels();
    try {
      results.push(...(await runBackend('wasm', models, 'wasm-stock', () => tf.setBackend('wasm'))));
    } finally {
      registerWasmTrainingKernels();
    }
  }
  process.stdout.write(`RESULTS ${JSON.stringify(results)}\n`);
}

/** Runs `command` and returns the JSON of its `RESULTS ` line (its stderr passes through as progress). */
function collect(command: string, argv: string[], fallback: (reason: string) => Result[], env: NodeJS.ProcessEnv = process.env): Result[] {
  const run = spawnSync(command, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20, env });
  const line = run.stdout?.split('\n').find((l) => l.startsWith('RESULTS '));
  if (run.status === 0 && line) return JSON.parse(line.slice('RESULTS '.length)) as Result[];
  return fallback(run.error?.message ?? `exit ${run.status}: ${run.stdout?.trim().split('\n').at(-1) ?? ''}`);
}

/** PyTorch's figures for the same models and step at each thread count (bench/step-pytorch.py). */
function pytorch(python: string, models: ModelName[], threads: number[]): Result[] {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'step-pytorch.py');
  const torchModels = models.filter((m) => m !== 'resnet20');
  return threads.flatMap((t) => {
    const argv = [script, '--models', torchModels.join(','), '--threads', String(t), '--batch', String(BATCH)];
    // One process per thread count, with BLAS and OpenMP pools of that size from the start (OpenBLAS keeps its
    // own pool, which torch.set_num_threads does not shrink). Some machines pin OpenBLAS to an older core type
    // (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) for old builds' sake; a current one runs slower so: unset here.
    const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(t), OPENBLAS_NUM_THREADS: String(t), MKL_NUM_THREADS: String(t) };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    return collect(python, argv, (reason) => [{ backend: `pytorch ×${t}`, model: torchModels[0] ?? 'mlp', status: 'failed', reason }], env);
  });
}

/** Each result's PyTorch comparison at the same thread count (this run's with --pytorch, else the reference). */
function setPytorchComparison(results: Result[]): void {
  for (const r of results) {
    if (r.status !== 'ok') continue;
    const native = /^tensorflow(-gpu)? ×(\d+)$/.exec(r.backend);
    const threads = native ? Number(native[2]) : 1;
    const torch = results.find((p) => p.backend === `pytorch ×${threads}` && p.model === r.model && p.status === 'ok')?.msMedian;
    r.pytorchMs = torch ?? (threads === 1 ? PYTORCH_MS[r.model] : undefined);
  }
}

async function main(): Promise<void> {
  const backends = args.backends.split(',').map((b) => b.trim()) as BackendName[];
  const models = args.models.split(',').map((m) => m.trim()) as ModelName[];
  if (args.child) return child(args.child as BackendName, models);
  const threads = args.threads.split(',').map(Number);
  const loadBefore = loadavg()[0];
  const results: Result[] = [];
  const self = [...process.execArgv, fileURLToPath(import.meta.url)];
  const passed = process.argv.slice(2).filter((a, i, all) => !['--backends', '--threads', '--pytorch'].includes(a) && !['--backends', '--threads', '--pytorch'].includes(all[i - 1]));
  for (const backend of backends) {
    for (const t of backend.startsWith('tensorflow') ? threads : [1]) {
      results.push(
        ...collect(process.execPath, [...self, ...passed, '--child', backend, '--child-threads', String(t)], (reason) =>
          models.map((model) => ({ backend: label(backend, t), model, status: 'failed' as const, reason })),
        ),
      );
    }
  }
  if (args.pytorch) results.push(...pytorch(args.pytorch, models, threads));
  setPytorchComparison(results);
  console.log(
    `\nhwa bench:step, batch ${BATCH}, tfjs ${tf.version.tfjs}, ` +
      `node ${process.version}, ${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, load ${loadBefore.toFixed(2)}\n`,
  );
  printTable(results);
  if (!args.pytorch) console.log(`\n(PyTorch 1.13 CPU, 1 thread, on the reference machine: ${Object.entries(PYTORCH_MS).map(([m, ms]) => `${m} ${ms} ms`).join(', ')}; --pytorch PYTHON measures it here)`);
  printProfiles(results);
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    tfjs: tf.version.tfjs,
    cpu: cpus()[0]?.model ?? null,
    cores: cpus().length,
    loadAverage: { before: loadBefore, after: loadavg()[0] },
    batch: BATCH,
    pytorchCpu1ThreadMs: PYTORCH_MS,
    results,
  };
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nwrote ${args.out}`);
}

await main();
