#!/usr/bin/env node
/**
 * The `hwa` command line. Every training option comes from the one schema in @hwa/core (flags, HWA_* env
 * variables and --config files are generated from it, see options.ts).
 *
 *   hwa train [--workers K | --gpus 0,1,..] [--in-process] [options]   launch a run on this machine
 *   hwa coordinator --bind tcp://0.0.0.0:5555 --workers K [options]     multi-node: the coordinator alone
 *   hwa worker --connect tcp://HOST:5555 --rank R [options]             multi-node: one worker
 *   hwa data download mnist|fashion-mnist|cifar10 [--dir D]             fetch a dataset (needs internet)
 *   hwa bench comm [options]                                            communication benchmark
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { HwaError, runConfigSchema } from '@hwa/core';
import { DOWNLOADABLE_DATASETS, type DownloadableDataset } from '@hwa/engine';
import { generateCurveKeys } from '@hwa/protocol';
import { downloadDataset } from './commands/data.js';
import { coordinate, train } from './commands/train.js';
import { work } from './commands/worker.js';
import { createLogger } from './logging.js';
import { addSchemaOptions, configFileOption, formatConfigTable, resolveRunConfig } from './options.js';
import { registerBenchCommands } from './commands/bench-comm.js';

const coordinatorSchema = runConfigSchema
  .extend({ bind: z.string().default('tcp://0.0.0.0:5555').describe('ZeroMQ endpoint the coordinator binds') })
  .strict();
const workerSchema = runConfigSchema
  .extend({
    connect: z.string().min(1).describe('coordinator endpoint, e.g. tcp://10.0.0.1:5555 (env HWA_COORDINATOR)'),
    rank: z.number().int().min(0).describe('this worker\'s rank in [0, K)'),
    receiveTimeout: z.number().min(0).default(0).describe('seconds to wait for the coordinator before giving up (0 = forever)'),
  })
  .strict();

const ENV_ALIASES = { HWA_WORLD_SIZE: 'workers' };

let debug = process.argv.includes('--log-level') && process.argv[process.argv.indexOf('--log-level') + 1] === 'debug';

function resolve<S extends z.ZodObject>(schema: S, opts: Record<string, unknown>, aliases: Record<string, string> = ENV_ALIASES) {
  const resolved = resolveRunConfig({ flags: opts, env: process.env, configFile: opts.config as string | undefined, schema, envAliases: aliases });
  debug ||= (resolved.config as { logLevel?: string }).logLevel === 'debug';
  if (opts.dryRun) {
    process.stdout.write(formatConfigTable(resolved.config as object, resolved.sources, resolved.origins) + '\n');
    return null;
  }
  return resolved.config;
}

const program = new Command('hwa')
  .description('Distributed training with Hierarchical Weight Averaging (online + offline weight averaging)')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

/** A command whose options come from `schema` (plus --config and --dry-run) and that runs `run` on them. */
function schemaCommand<S extends z.ZodObject>(
  name: string,
  description: string,
  schema: S,
  run: (config: z.output<S>) => Promise<void>,
  aliases: Record<string, string> = ENV_ALIASES,
): void {
  addSchemaOptions(program.command(name).description(description), schema)
    .addOption(configFileOption())
    .option('--dry-run', 'print the resolved options with their sources and exit')
    .action(async (opts: Record<string, unknown>) => {
      const config = resolve(schema, opts, aliases);
      if (config) await run(config);
    });
}

schemaCommand('train', 'train on this machine: a coordinator and K worker processes (or --in-process)', runConfigSchema, train);
schemaCommand('coordinator', 'run the coordinator alone; K workers join with `hwa worker`', coordinatorSchema, coordinate);
schemaCommand('worker', 'run one worker that joins a coordinator', workerSchema, work, { ...ENV_ALIASES, HWA_COORDINATOR: 'connect' });

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
  .requiredOption('--workers <K>', 'number of worker key pairs (ranks 0..K-1)', (v) => {
    const k = Number(v);
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`'${v}' is not a whole number ≥ 1`);
    return k;
  })
  .action((opts: { dir: string; workers: number }) => {
    const files = generateCurveKeys(opts.dir, opts.workers);
    process.stdout.write(`wrote ${files.length} key files to ${opts.dir}: coordinator and worker-0..${opts.workers - 1} (.public, .secret)\n`);
  });

// `hwa bench comm` (issue 4): its options and action live in commands/bench-comm.ts.
registerBenchCommands(program);

program.addOption(new Option('--version', 'print the version').hideHelp());

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof HwaError) {
    process.stderr.write(`hwa: ${error.message}\n`);
    if (debug && error.stack) process.stderr.write(`${error.stack}\n`);
    process.exit(error.exitCode);
  }
  const e = error as Error;
  process.stderr.write(`hwa: unexpected error: ${e?.message ?? String(error)}\n${e?.stack ?? ''}\n`);
  process.exit(1);
}
