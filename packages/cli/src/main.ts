#!/usr/bin/env node
/**
 * The `hwa` command line. Every training option comes from the one schema in @hwa/core (flags, HWA_* env
 * variables and --config files are generated from it, see options.ts).
 *
 *   hwa train [--workers K | --gpus 0,1,..] [--in-process] [options]   launch a run on this machine
 *   hwa coordinator --bind tcp://0.0.0.0:5555 --workers K [options]     multi-node: the coordinator alone
 *   hwa worker --connect tcp://HOST:5555 --rank R [options]             multi-node: one worker
 *   hwa compare --modes sgd,hwa --seeds 3 [options]                     every mode on the same budget, one report
 *   hwa report DIR [--png OUTDIR]                                       report.html of a run or comparison again
 *   hwa data download mnist|fashion-mnist|cifar10 [--dir D]             fetch a dataset (needs internet)
 *   hwa bench comm [options]                                            communication benchmark
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { HwaError, ROLE_RUNTIME_KEYS, makeRunConfig, parseWholeNumber, runConfigSchema, runtimeShape, trainingShape } from '@hwa/core';
import { DOWNLOADABLE_DATASETS, type DownloadableDataset } from '@hwa/engine';
import { generateCurveKeys } from '@hwa/protocol';
import { downloadDataset } from './commands/data.js';
import { coordinate, train } from './commands/train.js';
import { work } from './commands/worker.js';
import { createLogger } from './logging.js';
import { addSchemaOptions, configFileOption, formatConfigTable, resolveRunConfig } from './options.js';
import { kebabCase } from './config-file.js';
import { registerBenchCommands } from './commands/bench-comm.js';
import { setupNative } from './commands/setup-native.js';
import { crossCheck, type Role } from './checks.js';
import { launch, launchSchema } from './commands/launch.js';
import { compare, compareSchema } from './commands/compare.js';
import { report } from './commands/report.js';
import { torchrunEnv } from './torchrun.js';

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The runtime options a role reads (see ROLE_RUNTIME_KEYS); the others are hidden there (see schemaCommand). */
const runtimeOf = (keys: readonly (keyof typeof runtimeShape)[]) => Object.fromEntries(keys.map((k) => [k, runtimeShape[k]]));

const coordinatorSchema = z
  .object({
    ...trainingShape,
    ...runtimeOf(ROLE_RUNTIME_KEYS.coordinator),
    bind: z.string().default('tcp://0.0.0.0:5555').describe('ZeroMQ endpoint the coordinator binds'),
  })
  .strict();
const workerSchema = z
  .object({
    ...trainingShape,
    ...runtimeOf(ROLE_RUNTIME_KEYS.worker),
    connect: z.string().min(1).describe('coordinator endpoint, e.g. tcp://10.0.0.1:5555'),
    rank: z.number().int().min(0).describe('this worker\'s rank in [0, K)'),
    receiveTimeout: z
      .number()
      .min(0)
      .default(0)
      .describe('seconds to wait for the coordinator\'s first answer before giving up (0 = forever); once it has answered, --heartbeat-timeout applies'),
  })
  .strict();

/** One env name per option; the standalone roles take torchrun-style names for K and the coordinator. */
const ROLE_ENV_NAMES: Record<Role, Record<string, string>> = {
  train: {},
  coordinator: { workers: 'HWA_WORLD_SIZE' },
  worker: { workers: 'HWA_WORLD_SIZE', connect: 'HWA_COORDINATOR' },
  launch: {},
  compare: {},
};

/** Every key any role takes: one config file may serve all of them (docker/compose.yaml). */
const SHARED_FILE_KEYS = [...new Set([...Object.keys(runConfigSchema.shape), ...Object.keys(coordinatorSchema.shape), ...Object.keys(workerSchema.shape), ...Object.keys(launchSchema.shape), ...Object.keys(compareSchema.shape)])];

let debug = process.argv.includes('--log-level') && process.argv[process.argv.indexOf('--log-level') + 1] === 'debug';

function resolve<S extends z.ZodObject>(role: Role, schema: S, opts: Record<string, unknown>) {
  // torchrun's MASTER_ADDR, WORLD_SIZE, RANK, … where HWA_* are not given (torchrun.ts).
  const torchrun = torchrunEnv(role, process.env);
  const resolved = resolveRunConfig({
    flags: opts,
    env: torchrun.env,
    envAliases: torchrun.aliases,
    configFile: opts.config as string | undefined,
    schema,
    envNames: ROLE_ENV_NAMES[role],
    sharedFileKeys: SHARED_FILE_KEYS,
  });
  debug ||= (resolved.config as { logLevel?: string }).logLevel === 'debug';
  // Options not offered to this role take their defaults, so every command hands its run a whole RunConfig.
  const config = crossCheck(role, { ...makeRunConfig(), ...(resolved.config as object) } as z.output<S> & ReturnType<typeof makeRunConfig>);
  if (opts.dryRun) {
    const out = (resolved.config as { json?: boolean }).json
      ? JSON.stringify({ config, sources: resolved.sources, origins: resolved.origins })
      : formatConfigTable(resolved.config as object, resolved.sources, resolved.origins);
    process.stdout.write(out + '\n');
    return null;
  }
  return config;
}

/** commander's error text (`error: unknown option '--x'` and a `(Did you mean --y?)` line) as one line. */
function oneLine(text: string): string {
  const [first = '', ...rest] = text.trim().split('\n');
  const hint = /\(Did you mean (.+)\?\)/.exec(rest.join(' '));
  return `${first.replace(/^error: /, 'hwa: ')}${hint ? `; did you mean ${hint[1]}?` : ''}\n`;
}

// Commands created below inherit the output and exit settings: a usage error is one line and exits 2,
// like a bad option value (ConfigError); help and --version exit 0.
const program = new Command('hwa')
  .description('Distributed training with Hierarchical Weight Averaging (online + offline weight averaging)')
  .version(VERSION, '-V, --version', 'print the version and exit')
  .showSuggestionAfterError()
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(oneLine(text)) });

/** A command whose options come from `schema` (plus --config and --dry-run) and that runs `run` on them. */
function schemaCommand<S extends z.ZodObject>(
  role: Role,
  description: string,
  schema: S,
  run: (config: z.output<S> & ReturnType<typeof makeRunConfig>) => Promise<void>,
): void {
  const command = addSchemaOptions(program.command(role).description(description), schema, { envNames: ROLE_ENV_NAMES[role] });
  // Options of `hwa train` that mean nothing to this role are accepted (one list of flags may serve every
  // role), kept out of the help, and named when given, so that `hwa worker --gpus 0` is not silently pinned.
  const foreign = Object.keys(runtimeShape).filter((k) => !(k in schema.shape));
  if (foreign.length) addSchemaOptions(command, runtimeShape, { only: foreign, hidden: true });
  command
    .addOption(configFileOption())
    .option('--dry-run', 'check the options (each against the others too), print them with their sources and exit')
    .action(async (opts: Record<string, unknown>) => {
      const ignored = foreign.filter((k) => opts[k] !== undefined).map((k) => `--${kebabCase(k)}`);
      if (ignored.length) process.stderr.write(`hwa: ${ignored.join(', ')} ${ignored.length > 1 ? 'mean' : 'means'} nothing to hwa ${role}; ignored\n`);
      const config = resolve(role, schema, opts);
      if (config) await run(config);
    });
}

schemaCommand('train', 'train on this machine: a coordinator and K worker processes (or --in-process)', runConfigSchema, async (config) => {
  await train(config);
});
schemaCommand('coordinator', 'run the coordinator alone; K workers join with `hwa worker`', coordinatorSchema, coordinate);
schemaCommand('worker', 'run one worker that joins a coordinator', workerSchema, work);
schemaCommand('launch', 'run on every node of a cluster job, as torchrun: node 0 also runs the coordinator', launchSchema, launch);
schemaCommand('compare', 'train every --modes for every seed on the same budget, one run after another, and report them together', compareSchema, compare);

program
  .command('report')
  .description('write report.html of a run folder or a comparison folder again (a comparison\'s results table too)')
  .argument('<dir>', 'run folder or comparison folder')
  .option('--png <dir>', 'also render every plot to <dir>/<plot>.png in headless Chromium')
  .option('--chromium <path>', 'the Chromium to render with (default HWA_CHROMIUM, else /usr/bin/chromium and the like)')
  .option('--target <x>', 'test accuracy (0–1) for the epochs-to-target column (default: the comparison\'s --target, 0.9 for a run)', (v) => {
    const x = Number(v);
    if (!(x > 0 && x <= 1)) throw new InvalidArgumentError(`'${v}' is not a number > 0 and ≤ 1`);
    return x;
  })
  .action(async (dir: string, opts: { png?: string; chromium?: string; target?: number }) => {
    await report(dir, opts, (line) => process.stdout.write(`${line}\n`));
  });

const data = program.command('data').description('datasets');
data
  .command('download')
  .description('download a dataset\'s public files (needs internet)')
  .addArgument(new Command().createArgument('<name>', 'dataset').choices(DOWNLOADABLE_DATASETS))
  .option('--dir <dir>', 'target folder (default ~/.hwa/data/<name>)')
  .option('--mirror <url>', 'fetch the same files from this URL prefix instead of the public host')
  .action(async (name: DownloadableDataset, opts: { dir?: string; mirror?: string }) => {
    await downloadDataset(name, opts, createLogger({ level: 'info', bindings: { role: 'cli' }, console: 'pretty' }));
  });

program
  .command('keys')
  .description('make the CURVE key folder for --curve-keys: a coordinator key pair and one per worker rank')
  .requiredOption('--dir <dir>', 'folder to create the keys in (copy it to every host; secret files are mode 0600)')
  .requiredOption('--workers <K>', 'number of worker key pairs (ranks 0..K-1)', (v) => parseWholeNumber(v, '--workers', 1))
  .action((opts: { dir: string; workers: number }) => {
    const files = generateCurveKeys(opts.dir, opts.workers);
    process.stdout.write(`wrote ${files.length} key files to ${opts.dir}: coordinator and worker-0..${opts.workers - 1} (.public, .secret)\n`);
  });

// `hwa bench comm`: its options and action live in commands/bench-comm.ts.
program
  .command('setup')
  .description('optional native parts')
  .command('native')
  .description('build the native TensorFlow backend (@tensorflow/tfjs-node) from the TensorFlow pip wheel (npm run setup:native)')
  .option('--gpu', 'build @tensorflow/tfjs-node-gpu against TensorFlow with CUDA 12 and cuDNN 9 (pip wheels)', false)
  .option('--cache <dir>', 'where extracted libraries and built addons are kept (default HWA_NATIVE_CACHE or ~/.cache/hwa/native)')
  .option('--force', 'redo every step even when its result is cached', false)
  .action(async (opts: { gpu: boolean; cache?: string; force: boolean }) => {
    await setupNative(opts, (line) => process.stdout.write(`${line}\n`));
  });

registerBenchCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // commander has printed the help, the version or the one-line error already.
    process.exit(error.exitCode === 0 ? 0 : error.code === 'commander.help' ? error.exitCode : 2);
  }
  if (error instanceof HwaError) {
    process.stderr.write(`hwa: ${error.message}\n`);
    if (debug && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exit(error.exitCode);
  }
  const e = error as Error;
  process.stderr.write(`hwa: unexpected error: ${e?.message ?? String(error)}\n${e?.stack ?? ''}\n`);
  process.exit(1);
}
