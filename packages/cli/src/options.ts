/**
 * Flags, `HWA_*` env variables and the `--config` file, all generated from the one zod schema in
 * `@hwa/core` (config.ts), and resolved with the precedence flag > env > file > default.
 *
 * What each option is comes from `z.toJSONSchema` (type, enum values, default, bounds, description), so a
 * new option in the schema gets its flag, env variable, file key, help line and error messages for free.
 * Bad values are reported from zod's own issues, one line each, naming the option the way the user wrote it:
 *
 *     --mode: 'hwx' is not one of hwa, sgd, localsgd, swa, lawa, ema
 *     HWA_SYNC_PERIOD: must be a whole number ≥ 1, got 0
 *     sync-period in demo.yaml (line 3): must be a whole number ≥ 1, got 0
 *
 * Typical use (main.ts):
 *
 *     const train = addSchemaOptions(new Command('train'), runConfigSchema).addOption(configFileOption());
 *     train.action((opts) => {
 *       const { config, sources } = resolveRunConfig({ flags: opts, env: process.env, configFile: opts.config });
 *       log.info(formatConfigTable(config, sources));
 *     });
 */
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ConfigError, runConfigSchema } from '@hwa/core';
import { kebabCase, readConfigFile, upperSnakeCase } from './config-file.js';
import { allowed, optionSpecs, parseText, showValue, withEnvNames, type OptionSpec, type SchemaShape } from './option-specs.js';

export { optionSpecs, parseText, withEnvNames, type NumberRange, type OptionKind, type OptionSpec, type SchemaShape } from './option-specs.js';

/** Where a resolved value came from, strongest first. */
export type ConfigSource = 'flag' | 'env' | 'file' | 'default';

/** What {@link resolveRunConfig} returns. */
export interface ResolvedConfig<C> {
  /** The validated config, defaults filled in. */
  readonly config: C;
  /** Which layer each key's value came from. */
  readonly sources: Record<keyof C & string, ConfigSource>;
  /**
   * The exact origin of each non-default value as the user wrote it: `--lr`, `HWA_WORLD_SIZE`,
   * `lr in demo.yaml (line 4)`; absent for defaults.
   */
  readonly origins: Partial<Record<keyof C & string, string>>;
}

/** Input of {@link resolveRunConfig}. */
export interface ResolveOptions<S extends z.ZodObject> {
  /**
   * Parsed flags, typically `command.opts()` of a command built with {@link addSchemaOptions}. Keys not in the
   * schema (e.g. `config`) are ignored; `undefined` means "not given". Strings are parsed like env values, so
   * hand-built flag records work too.
   */
  readonly flags?: Readonly<Record<string, unknown>>;
  /** Environment, typically `process.env`. Empty variables count as unset. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Path of a `.yaml`/`.yml`/`.json` config file (the `--config` flag), if any. */
  readonly configFile?: string;
  /** The schema to resolve; default `runConfigSchema` of `@hwa/core`. */
  readonly schema?: S;
  /**
   * Extra env names for schema keys, e.g. `{ HWA_WORLD_SIZE: 'workers' }`. The generated name (`HWA_WORKERS`)
   * wins when both are set.
   */
  readonly envAliases?: Readonly<Record<string, string>>;
  /**
   * The one env name of a key where it is not the generated one, e.g. `{ workers: 'HWA_WORLD_SIZE' }` for the
   * torchrun-style variables of the worker and coordinator commands; the generated name is then not read.
   * Pass the same record to {@link addSchemaOptions} so that the help names it.
   */
  readonly envNames?: Readonly<Record<string, string>>;
  /**
   * Keys a config file shared by several commands may hold that this command does not take (`gpus` in the
   * file a worker reads): accepted in the file and ignored, where any other unknown key is an error.
   */
  readonly sharedFileKeys?: readonly string[];
}

/**
 * Adds one commander option per schema key: `--kebab-case <value>`, help text from the schema, and a parser
 * that turns numbers into numbers and comma lists into arrays. Booleans get `--flag` and `--no-flag`.
 *
 * No commander defaults are set, so an option the user did not give is `undefined` in `command.opts()`;
 * {@link resolveRunConfig} needs that to let env, file and schema default fill it in. Enum values and ranges
 * are checked there too, so that every bad value is reported in the same words.
 *
 * @param only - schema keys to add (default: all), e.g. the training keys for a worker command.
 * @param envNames - env names that replace generated ones in the help (see {@link ResolveOptions.envNames}).
 * @param hidden - accept the flags but leave them out of the help (options of another command, ignored here).
 * @throws ConfigError from `command.parse()` when a number or list flag is not a number (`--lr: 'abc' is not
 *   a number`); it propagates past commander, so catch it where the CLI prints errors.
 */
export function addSchemaOptions(
  command: Command,
  shape: SchemaShape | z.ZodObject,
  options: { readonly only?: readonly string[]; readonly envNames?: Readonly<Record<string, string>>; readonly hidden?: boolean } = {},
): Command {
  const specs = withEnvNames(optionSpecs(shape), options.envNames);
  const only = options.only;
  if (only) {
    const missing = only.filter((k) => !specs.some((s) => s.key === k));
    if (missing.length) throw new Error(`addSchemaOptions: not schema keys: ${missing.join(', ')}`);
  }
  for (const spec of specs) {
    if (only && !only.includes(spec.key)) continue;
    const add = (option: Option) => command.addOption(options.hidden ? option.hideHelp() : option);
    if (spec.kind === 'boolean') {
      add(checked(new Option(spec.flag, spec.help), spec.key));
      add(checked(new Option(`--no-${spec.flag.slice(2)}`, `turn ${spec.flag} off`), spec.key));
      continue;
    }
    const option = checked(new Option(`${spec.flag} <${valueName(spec)}>`, spec.help), spec.key);
    if (spec.kind !== 'string' && spec.kind !== 'enum') {
      // A later repetition replaces an earlier one, like every other flag; lists are given as one comma list.
      option.argParser((raw: string) => parseText(spec, raw, spec.flag));
    }
    add(option);
  }
  return command;
}

/** The `--config <file>` option, for commands that accept a config file. */
export function configFileOption(): Option {
  return new Option(
    '--config <file>',
    'YAML (.yaml, .yml) or JSON (.json) file of options, keys as in the flags (sync-period or syncPeriod); flags and HWA_* env variables override it',
  );
}

function checked(option: Option, key: string): Option {
  // Commander derives the opts() key from the flag; if our kebab-case ever disagrees, fail loudly at startup.
  if (option.attributeName() !== key) {
    throw new Error(`flag ${option.long} maps to '${option.attributeName()}', not schema key '${key}'`);
  }
  return option;
}

function valueName(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'enum':
      // `--mode <mode>` reads well; `--momentum-sync <momentum-sync>` only widens the help column.
      return spec.key.length <= 8 ? kebabCase(spec.key) : 'choice';
    case 'integer':
      return 'n';
    case 'number':
      return 'x';
    case 'integer-list':
    case 'number-list':
    case 'enum-list':
      return 'list';
    default:
      return ['dataDir', 'outDir', 'curveKeys'].includes(spec.key) ? 'dir' : 'text';
  }
}

/**
 * Values as a config file holds them, made to fit the option: YAML reads `milestones: 30,60` as the text
 * "30,60" and `in-process: yes` as "yes" (YAML 1.2), so text is parsed like an env value; a lone number
 * given for a list becomes a one-entry list; a number for a text option becomes its text.
 */
function fromFile(spec: OptionSpec, value: unknown, label: string): unknown {
  if (typeof value === 'string' && spec.kind !== 'string' && spec.kind !== 'enum') return parseText(spec, value, label);
  if (typeof value === 'number' && (spec.kind === 'integer-list' || spec.kind === 'number-list')) return [value];
  if (typeof value === 'number' && spec.kind === 'string') return String(value);
  return value;
}

/**
 * Merges flags, env variables, the config file and the schema defaults (in that order of precedence) and
 * validates the result against the schema.
 *
 * @throws ConfigError with one line per bad value, each naming the option as the user wrote it, the bad value
 *   and what is allowed; or a config-file error (unreadable, malformed, unknown key) naming file and line.
 * @example
 * const { config, sources } = resolveRunConfig({
 *   flags: cmd.opts(), env: process.env, configFile: cmd.opts().config, envAliases: { HWA_WORLD_SIZE: 'workers' },
 * });
 */
export function resolveRunConfig<S extends z.ZodObject = typeof runConfigSchema>(
  options: ResolveOptions<S>,
): ResolvedConfig<z.output<S>> {
  const schema: z.ZodObject = options.schema ?? runConfigSchema;
  const specs = withEnvNames(optionSpecs(schema), options.envNames);
  const byKey = new Map(specs.map((s) => [s.key, s]));
  for (const [name, key] of Object.entries(options.envAliases ?? {})) {
    if (!byKey.has(key)) throw new Error(`env alias ${name} points to '${key}', which is not a schema key`);
  }

  const input: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  const origins: Record<string, string> = {};
  const problems: string[] = [];
  const set = (key: string, source: ConfigSource, origin: string, value: () => unknown): void => {
    try {
      input[key] = value();
      sources[key] = source;
      origins[key] = origin;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(err.message);
    }
  };

  const shared = (options.sharedFileKeys ?? []).filter((k) => !byKey.has(k));
  const file = options.configFile ? readConfigFile(options.configFile, [...byKey.keys(), ...shared]) : undefined;
  const env = options.env ?? {};
  const aliasesOf = (key: string): string[] =>
    Object.entries(options.envAliases ?? {})
      .filter(([, k]) => k === key)
      .map(([name]) => name);

  for (const spec of specs) {
    const flagValue = options.flags?.[spec.key];
    if (flagValue !== undefined) {
      set(spec.key, 'flag', spec.flag, () =>
        typeof flagValue === 'string' ? parseText(spec, flagValue, spec.flag) : flagValue,
      );
      continue;
    }
    const envName = [spec.env, ...aliasesOf(spec.key)].find((n) => (env[n] ?? '') !== '');
    if (envName !== undefined) {
      set(spec.key, 'env', envName, () => parseText(spec, env[envName] ?? '', envName));
      continue;
    }
    const entry = file?.entries[spec.key];
    if (entry !== undefined) {
      set(spec.key, 'file', entry.label, () => fromFile(spec, entry.value, entry.label));
      continue;
    }
    sources[spec.key] = 'default';
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));

  // reportInput puts the offending value into each issue, so messages can quote it.
  const result = schema.safeParse(input, { reportInput: true });
  if (!result.success) {
    const lines = result.error.issues.map((issue) => issueLine(issue, byKey, origins));
    throw new ConfigError([...new Set(lines)].join('\n'));
  }
  return {
    config: result.data as z.output<S>,
    sources: sources as Record<keyof z.output<S> & string, ConfigSource>,
    origins: origins as Partial<Record<keyof z.output<S> & string, string>>,
  };
}

/** One line for one zod issue: `<option as written>: <what is wrong>, got <value>`. */
function issueLine(
  issue: z.core.$ZodIssue,
  specs: ReadonlyMap<string, OptionSpec>,
  origins: Readonly<Record<string, string>>,
): string {
  const key = typeof issue.path[0] === 'string' ? issue.path[0] : undefined;
  const spec = key === undefined ? undefined : specs.get(key);
  // A default that fails its own schema has no user origin; name the flag so the message still points somewhere.
  const label = key === undefined ? 'config' : (origins[key] ?? spec?.flag ?? key);
  const inList = issue.path.length > 1 && typeof issue.path[1] === 'number';
  const got = showValue(issue.input);
  const what = spec
    ? inList
      ? allowed({ ...spec, kind: spec.kind === 'integer-list' ? 'integer' : 'number' })
      : allowed(spec)
    : undefined;
  const entry = inList ? ` entry ${Number(issue.path[1]) + 1}` : '';

  switch (issue.code) {
    case 'invalid_value':
      return `${label}:${entry} ${got} is not one of ${issue.values.map(String).join(', ')}`;
    case 'invalid_type':
      if ((issue.expected === 'number' || issue.expected === 'int') && typeof issue.input === 'string') {
        return `${label}:${entry} ${got} is not a number`;
      }
      if (issue.expected === 'boolean') return `${label}: ${got} is not true or false`;
      if (issue.expected === 'array' && spec) return `${label}: must be ${allowed(spec)}, got ${got}`;
      return `${label}:${entry} must be ${what ?? issue.expected}, got ${got}`;
    case 'too_small':
    case 'too_big': {
      if (what) return `${label}:${entry} must be ${what}, got ${got}`;
      const bound =
        issue.code === 'too_small'
          ? `${issue.inclusive ? '≥' : '>'} ${issue.minimum}`
          : `${issue.inclusive ? '≤' : '<'} ${issue.maximum}`;
      return `${label}:${entry} must be ${bound}, got ${got}`;
    }
    case 'unrecognized_keys':
      return `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${kebabCase(k)}'`).join(', ')}`;
    default:
      return `${label}:${entry} ${issue.message}${issue.input === undefined ? '' : `, got ${got}`}`;
  }
}

/** A value as a user would type it: `'abc'` for text, `0,1` for lists, `(unset)` for nothing. */
/**
 * The resolved config as an aligned three-column listing, one option per line, flag spelling, value and
 * source: `sync-period  8  file demo.yaml (line 3)`. Meant for `--dry-run` and the one-time config log line.
 *
 * @param origins - from {@link resolveRunConfig}; when given, the source column names the flag, env variable
 *   or file the value came from.
 */
export function formatConfigTable<C extends object>(
  config: C,
  sources: Readonly<Record<string, ConfigSource>>,
  origins: Readonly<Partial<Record<string, string>>> = {},
): string {
  const rows = Object.entries(config).map(([key, value]) => {
    const source = sources[key] ?? 'default';
    const origin = source === 'flag' ? undefined : origins[key];
    const shown = typeof value === 'string' ? (value === '' ? "''" : value) : showValue(value);
    return [kebabCase(key), shown, origin ? `${source} ${origin}` : source] as const;
  });
  const w0 = Math.max(0, ...rows.map((r) => r[0].length));
  const w1 = Math.max(0, ...rows.map((r) => r[1].length));
  return rows.map(([k, v, s]) => `${k.padEnd(w0)}  ${v.padEnd(w1)}  ${s}`).join('\n');
}
