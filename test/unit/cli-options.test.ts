import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, runConfigSchema, runtimeShape, trainingShape } from '@hwa/core';
import {
  addSchemaOptions,
  configFileOption,
  formatConfigTable,
  optionSpecs,
  resolveRunConfig,
} from '../../packages/cli/src/options.js';

const dir = mkdtempSync(join(tmpdir(), 'hwa-cli-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCounter = 0;
/** Writes `text` to a fresh file in the test folder and returns its path. */
function writeFile(ext: string, text: string): string {
  const path = join(dir, `config-${++fileCounter}${ext}`);
  writeFileSync(path, text);
  return path;
}

/** A `train`-like command with every schema option, parsing `argv` as user arguments. */
function parse(argv: string[], shape: Parameters<typeof addSchemaOptions>[1] = runConfigSchema): Record<string, unknown> {
  const command = addSchemaOptions(new Command('train'), shape).addOption(configFileOption()).exitOverride();
  command.parse(argv, { from: 'user' });
  return command.opts();
}

/** The ConfigError message that `fn` throws (fails the test if it throws anything else or nothing). */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const allKeys = Object.keys({ ...trainingShape, ...runtimeShape });

describe('flags generated from the schema', () => {
  it('gives every schema key a kebab-case flag with help text', () => {
    const command = addSchemaOptions(new Command('train'), runConfigSchema);
    const help = command.helpInformation();
    for (const key of allKeys) {
      const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      const option = command.options.find((o) => o.long === flag);
      expect(option, flag).toBeDefined();
      expect(option?.attributeName()).toBe(key);
      expect(option?.description.length, flag).toBeGreaterThan(10);
      expect(help).toContain(flag);
    }
  });

  it('puts allowed values, default and env variable into the help', () => {
    const mode = optionSpecs(runConfigSchema).find((s) => s.key === 'mode');
    expect(mode?.help).toContain('one of hwa, sgd, localsgd, swa, lawa, ema');
    expect(mode?.help).toContain('default: hwa');
    expect(mode?.help).toContain('env HWA_MODE');
    const syncPeriod = optionSpecs(runConfigSchema).find((s) => s.key === 'syncPeriod');
    expect(syncPeriod?.help).toContain('whole number ≥ 1');
    expect(syncPeriod?.help).toContain('default: 16');
    expect(syncPeriod?.env).toBe('HWA_SYNC_PERIOD');
    const workers = optionSpecs(runConfigSchema).find((s) => s.key === 'workers');
    expect(workers?.hasDefault).toBe(false);
    expect(workers?.help).not.toContain('default:');
  });

  it('adds only the requested keys', () => {
    const command = addSchemaOptions(new Command('worker'), trainingShape, { only: ['mode', 'lr'] });
    expect(command.options.map((o) => o.long)).toEqual(['--mode', '--lr']);
    expect(() => addSchemaOptions(new Command('x'), trainingShape, { only: ['nope'] })).toThrow(/nope/);
  });

  it('leaves options that were not given undefined (no commander defaults)', () => {
    const opts = parse([]);
    for (const key of allKeys) expect(opts[key], key).toBeUndefined();
  });

  it('parses each type', () => {
    const opts = parse([
      '--mode', 'sgd',
      '--sync-period', '8',
      '--lr', '0.1',
      '--ema-decay', '5e-1',
      '--milestones', '30,60',
      '--gpus', '0,1',
      '--out-dir', 'runs/x',
      '--in-process',
    ]);
    expect(opts).toMatchObject({
      mode: 'sgd',
      syncPeriod: 8,
      lr: 0.1,
      emaDecay: 0.5,
      milestones: [30, 60],
      gpus: [0, 1],
      outDir: 'runs/x',
      inProcess: true,
    });
  });

  it('has --flag and --no-flag for booleans', () => {
    expect(parse(['--in-process']).inProcess).toBe(true);
    expect(parse(['--no-in-process']).inProcess).toBe(false);
    expect(parse([]).inProcess).toBeUndefined();
    expect(resolveRunConfig({ flags: parse(['--no-in-process']), env: { HWA_IN_PROCESS: 'true' } }).config.inProcess).toBe(
      false,
    );
  });

  it("reads --gpus 0,1 as [0, 1] and refuses an empty --gpus '' rather than taking it as no GPUs", () => {
    expect(resolveRunConfig({ flags: parse(['--gpus', '0,1']) }).config.gpus).toEqual([0, 1]);
    expect(configErrorOf(() => parse(['--gpus', '']))).toBe("--gpus: '' is an empty list; give values such as 0,1, or leave --gpus out");
    expect(configErrorOf(() => resolveRunConfig({ flags: { gpus: ' , ' } }))).toMatch(/^--gpus: ' , ' is an empty list/);
  });

  it('resolves to the schema defaults when nothing is given', () => {
    const { config, sources } = resolveRunConfig({ flags: parse([]), env: {} });
    expect(config).toEqual(runConfigSchema.parse({}));
    expect(Object.values(sources).every((s) => s === 'default')).toBe(true);
    expect(Object.keys(sources).sort()).toEqual([...allKeys].sort());
  });
});

describe('precedence flag > env > file > default', () => {
  const yaml = (): string => writeFile('.yaml', 'sync-period: 4\nlr: 0.2\nmode: swa\n# comment\n');
  const json = (): string => writeFile('.json', JSON.stringify({ syncPeriod: 4, lr: 0.2, mode: 'swa' }));

  for (const [format, make] of [
    ['YAML', yaml],
    ['JSON', json],
  ] as const) {
    it(`applies the layers in order on the same key (${format} file)`, () => {
      const configFile = make();
      const env = { HWA_SYNC_PERIOD: '8', HWA_LR: '0.3' };
      const flags = parse(['--sync-period', '32', '--config', configFile]);
      const { config, sources, origins } = resolveRunConfig({ flags, env, configFile: String(flags.config) });
      expect(config.syncPeriod).toBe(32);
      expect(sources.syncPeriod).toBe('flag');
      expect(config.lr).toBe(0.3);
      expect(sources.lr).toBe('env');
      expect(origins.lr).toBe('HWA_LR');
      expect(config.mode).toBe('swa');
      expect(sources.mode).toBe('file');
      expect(config.window).toBe(16);
      expect(sources.window).toBe('default');

      // Peel the layers off one by one on the same key.
      expect(resolveRunConfig({ flags: parse([]), env, configFile }).config.syncPeriod).toBe(8);
      expect(resolveRunConfig({ flags: parse([]), env: {}, configFile }).config.syncPeriod).toBe(4);
      expect(resolveRunConfig({ flags: parse([]), env: {} }).config.syncPeriod).toBe(16);
    });
  }

  it('accepts camelCase and kebab-case keys in a file', () => {
    const configFile = writeFile('.yml', 'batchSize: 32\nweight-decay: 0.001\ngpus: [2, 3]\nmilestones: 30,60\n');
    const { config, origins } = resolveRunConfig({ configFile });
    expect(config).toMatchObject({ batchSize: 32, weightDecay: 0.001, gpus: [2, 3], milestones: [30, 60] });
    expect(origins.weightDecay).toBe(`weight-decay in ${configFile} (line 2)`);
  });

  it('parses env values like flags, including torchrun-style aliases', () => {
    const env = { HWA_WORLD_SIZE: '4', HWA_GPUS: '0,1', HWA_IN_PROCESS: 'yes', HWA_MODE: 'ema', HWA_BATCH_SIZE: '' };
    const { config, sources, origins } = resolveRunConfig({ env, envAliases: { HWA_WORLD_SIZE: 'workers' } });
    expect(config).toMatchObject({ workers: 4, gpus: [0, 1], inProcess: true, mode: 'ema', batchSize: 64 });
    expect(sources.workers).toBe('env');
    expect(origins.workers).toBe('HWA_WORLD_SIZE');
    expect(sources.batchSize).toBe('default');
    // The generated name wins over an alias.
    const both = resolveRunConfig({ env: { HWA_WORKERS: '2', HWA_WORLD_SIZE: '4' }, envAliases: { HWA_WORLD_SIZE: 'workers' } });
    expect(both.config.workers).toBe(2);
  });

  it('reads only the one env name a command gives an option, and its help names that one', () => {
    const envNames = { workers: 'HWA_WORLD_SIZE' };
    const { config, origins } = resolveRunConfig({ env: { HWA_WORLD_SIZE: '4' }, envNames });
    expect(config.workers).toBe(4);
    expect(origins.workers).toBe('HWA_WORLD_SIZE');
    expect(resolveRunConfig({ env: { HWA_WORKERS: '4' }, envNames }).config.workers).toBeUndefined();
    const help = addSchemaOptions(new Command('coordinator'), runConfigSchema, { envNames }).helpInformation();
    expect(help).toMatch(/env\s+HWA_WORLD_SIZE\)/);
    expect(help).not.toContain('HWA_WORKERS');
  });

  it('ignores the keys of other commands in a shared config file, and still refuses unknown ones', () => {
    const schema = z.object(trainingShape).strict();
    const configFile = writeFile('.yaml', 'sync-period: 4\ngpus: [0, 1]\nin-process: true\n');
    const { config } = resolveRunConfig({ schema, configFile, sharedFileKeys: ['gpus', 'inProcess'] });
    expect(config.syncPeriod).toBe(4);
    expect('gpus' in config).toBe(false);
    expect(configErrorOf(() => resolveRunConfig({ schema, configFile }))).toMatch(/unknown option 'gpus'/);
  });

  it('resolves against a smaller schema too', () => {
    const schema = z.object(trainingShape).extend({ rank: z.number().int().min(0).describe('worker rank') }).strict();
    const { config } = resolveRunConfig({ schema, env: { HWA_RANK: '3', HWA_BACKEND: 'cpu' } });
    expect(config.rank).toBe(3);
    expect('backend' in config).toBe(false);
  });
});

describe('one-line messages for bad values', () => {
  it('names a bad enum value and the choices', () => {
    expect(configErrorOf(() => resolveRunConfig({ flags: parse(['--mode', 'hwx']) }))).toBe(
      "--mode: 'hwx' is not one of hwa, sgd, localsgd, swa, lawa, ema",
    );
  });

  it('names a value that is not a number', () => {
    expect(configErrorOf(() => parse(['--lr', 'abc']))).toBe("--lr: 'abc' is not a number");
    expect(configErrorOf(() => resolveRunConfig({ env: { HWA_LR: 'abc' } }))).toBe("HWA_LR: 'abc' is not a number");
    expect(configErrorOf(() => parse(['--gpus', '0,x']))).toBe(
      "--gpus: 'x' is not a number (expected a comma-separated list such as 0,1,2)",
    );
  });

  it('names a value below the minimum, with the range', () => {
    expect(configErrorOf(() => resolveRunConfig({ flags: parse(['--sync-period', '0']) }))).toBe(
      '--sync-period: must be a whole number ≥ 1, got 0',
    );
    expect(configErrorOf(() => resolveRunConfig({ env: { HWA_SYNC_PERIOD: '2.5' } }))).toBe(
      'HWA_SYNC_PERIOD: must be a whole number ≥ 1, got 2.5',
    );
    expect(configErrorOf(() => resolveRunConfig({ flags: parse(['--ema-decay', '1']) }))).toBe(
      '--ema-decay: must be a number ≥ 0 and < 1, got 1',
    );
    expect(configErrorOf(() => resolveRunConfig({ flags: parse(['--gpus', '0,-1']) }))).toBe(
      '--gpus: entry 2 must be a whole number ≥ 0, got -1',
    );
  });

  it('names a bad value in a file by key, file and line', () => {
    const configFile = writeFile('.yaml', 'mode: hwa\nsync-period: 0\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile }))).toBe(
      `sync-period in ${configFile} (line 2): must be a whole number ≥ 1, got 0`,
    );
    const jsonFile = writeFile('.json', '{"lr": "fast"}');
    expect(configErrorOf(() => resolveRunConfig({ configFile: jsonFile }))).toBe(`lr in ${jsonFile}: 'fast' is not a number`);
  });

  it('gives one line per bad value when several are wrong', () => {
    const message = configErrorOf(() => resolveRunConfig({ flags: parse(['--mode', 'x', '--lr', '0']) }));
    expect(message.split('\n')).toEqual(["--mode: 'x' is not one of hwa, sgd, localsgd, swa, lawa, ema", '--lr: must be a number > 0, got 0']);
  });

  it('rejects an unknown file key and suggests the closest valid one', () => {
    const configFile = writeFile('.yaml', 'mode: hwa\nsync-perod: 4\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile }))).toBe(
      `unknown option 'sync-perod' in ${configFile} (line 2); did you mean 'sync-period'?`,
    );
    const camel = writeFile('.json', '{"batchSise": 4}');
    expect(configErrorOf(() => resolveRunConfig({ configFile: camel }))).toBe(
      `unknown option 'batchSise' in ${camel}; did you mean 'batchSize'?`,
    );
    const far = writeFile('.yaml', 'frobnicate: 1\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile: far }))).toBe(`unknown option 'frobnicate' in ${far} (line 1)`);
  });

  it('rejects a file with an unsupported extension', () => {
    const configFile = writeFile('.toml', 'lr = 0.1\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile }))).toBe(
      `config file ${configFile}: unsupported extension '.toml'; use .yaml, .yml or .json`,
    );
  });

  it('names file and line of malformed YAML and JSON', () => {
    const configFile = writeFile('.yaml', 'mode: hwa\ngpus: [0, 1\nlr: 0.1\n');
    const message = configErrorOf(() => resolveRunConfig({ configFile }));
    expect(message).toMatch(new RegExp(`^${configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:1: malformed YAML`));
    expect(message).not.toContain('\n');
    const jsonFile = writeFile('.json', '{\n  "lr": 0.1,\n}\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile: jsonFile }))).toMatch(/:3:1: malformed JSON in config file/);
  });

  it('names a missing file, a repeated key and a non-mapping file', () => {
    const missing = join(dir, 'nope.yaml');
    expect(configErrorOf(() => resolveRunConfig({ configFile: missing }))).toBe(`cannot read config file ${missing}: no such file`);
    const twice = writeFile('.yaml', 'sync-period: 4\nsyncPeriod: 8\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile: twice }))).toBe(
      `option 'syncPeriod' in ${twice} (line 2) repeats 'sync-period'; keep one of them`,
    );
    const list = writeFile('.yaml', '- 1\n- 2\n');
    expect(configErrorOf(() => resolveRunConfig({ configFile: list }))).toBe(
      `config file ${list}: expected a mapping of option: value at the top level, got a list`,
    );
  });

  it('reads an empty YAML file as setting nothing', () => {
    const configFile = writeFile('.yaml', '# nothing yet\n');
    expect(resolveRunConfig({ configFile }).config).toEqual(runConfigSchema.parse({}));
  });

  it('names a bad boolean env value', () => {
    expect(configErrorOf(() => resolveRunConfig({ env: { HWA_IN_PROCESS: 'maybe' } }))).toBe(
      "HWA_IN_PROCESS: 'maybe' is not true or false",
    );
  });
});

describe('config table', () => {
  it('lists every option aligned, with its value and source', () => {
    const configFile = writeFile('.yaml', 'lr: 0.2\n');
    const { config, sources, origins } = resolveRunConfig({
      flags: parse(['--gpus', '0,1']),
      // The options without a default (K, the failure policy) are listed once they have a value.
      env: { HWA_WORLD_SIZE: '4', HWA_ON_WORKER_FAILURE: 'continue' },
      configFile,
      envAliases: { HWA_WORLD_SIZE: 'workers' },
    });
    const table = formatConfigTable(config, sources, origins);
    const lines = table.split('\n');
    expect(lines).toHaveLength(allKeys.length);
    const row = (name: string): string => lines.find((l) => l.startsWith(`${name} `)) ?? '';
    expect(row('gpus')).toMatch(/^gpus +0,1 +flag$/);
    expect(row('workers')).toMatch(/^workers +4 +env HWA_WORLD_SIZE$/);
    expect(row('lr')).toMatch(new RegExp(`^lr +0\\.2 +file lr in .*\\(line 1\\)$`));
    expect(row('sync-period')).toMatch(/^sync-period +16 +default$/);
    // Values start in the same column on every line.
    const valueColumn = (l: string): number => l.search(/ {2}\S/);
    expect(new Set(lines.map(valueColumn)).size).toBe(1);
  });
});
