/**
 * What each option is, derived from the one zod schema in `@hwa/core` through `z.toJSONSchema`: its kind (how
 * its text reads), choices, bounds, default, help line and env name, and the parser of its text. options.ts
 * turns these specs into commander flags and resolves flag > env > file > default.
 */
import { z } from 'zod';
import { ConfigError } from '@hwa/core';
import { kebabCase, upperSnakeCase } from './config-file.js';

/** A record of zod schemas by option key, like `trainingShape` and `runtimeShape` in `@hwa/core`. */
export type SchemaShape = Readonly<Record<string, z.ZodType>>;

/** How the text of a flag or env variable is turned into a value. */
export type OptionKind = 'string' | 'enum' | 'number' | 'integer' | 'boolean' | 'number-list' | 'integer-list' | 'enum-list';

/** Bounds of a number (or of each number of a list), as the schema states them. */
export interface NumberRange {
  readonly min?: number;
  readonly max?: number;
  /** `min` itself is not allowed (`> min` rather than `≥ min`). */
  readonly minExclusive?: boolean;
  readonly maxExclusive?: boolean;
}

/** Everything the CLI needs to know about one option, derived from the schema. */
export interface OptionSpec {
  /** Schema key, camelCase: `syncPeriod`. */
  readonly key: string;
  /** `--sync-period`; also the spelling suggested in config files (without the dashes). */
  readonly flag: string;
  /** `HWA_SYNC_PERIOD`. */
  readonly env: string;
  readonly kind: OptionKind;
  /** The schema's description, without the generated suffix. */
  readonly description: string;
  /** Allowed values of an `enum` option, or of each entry of an `enum-list`. */
  readonly choices?: readonly string[];
  /** True when the schema supplies a default; false for options that stay unset (e.g. `workers`). */
  readonly hasDefault: boolean;
  readonly default?: unknown;
  /** Bounds of a number, or of each entry of a list. */
  readonly range: NumberRange;
  /** Full help line: description, allowed values, default and env variable. */
  readonly help: string;
}

const SAFE = Number.MAX_SAFE_INTEGER;
const specCache = new WeakMap<object, readonly OptionSpec[]>();

/**
 * The option specs of a schema shape (or a `z.object`), in key order. Computed once per shape.
 *
 * @throws Error if a key's type cannot be expressed as a flag (a programming error in the schema).
 */
export function optionSpecs(shape: SchemaShape | z.ZodObject): readonly OptionSpec[] {
  const object = shape instanceof z.ZodObject ? shape : z.object(shape);
  const cacheKey = shape instanceof z.ZodObject ? shape.shape : shape;
  const cached = specCache.get(cacheKey);
  if (cached) return cached;
  // io 'input' because that is what a user writes: options with a default are optional and carry `default`.
  const json = z.toJSONSchema(object, { io: 'input', unrepresentable: 'any' });
  const props = json.properties ?? {};
  const specs = Object.keys(object.shape).map((key) => specFromJson(key, props[key]));
  specCache.set(cacheKey, specs);
  return specs;
}

type Json = z.core.JSONSchema.JSONSchema;

/** `specs` with the env names of `envNames` (key → name) in place of the generated ones, help included. */
export function withEnvNames(specs: readonly OptionSpec[], envNames: Readonly<Record<string, string>> = {}): readonly OptionSpec[] {
  const unknown = Object.keys(envNames).filter((k) => !specs.some((s) => s.key === k));
  if (unknown.length) throw new Error(`env names given for keys not in the schema: ${unknown.join(', ')}`);
  return specs.map((spec) => {
    const env = envNames[spec.key];
    if (env === undefined) return spec;
    const renamed = { ...spec, env };
    return { ...renamed, help: helpText(renamed) };
  });
}

function specFromJson(key: string, prop: z.core.JSONSchema._JSONSchema | undefined): OptionSpec {
  const p: Json = typeof prop === 'object' ? prop : {};
  const items: Json = typeof p.items === 'object' && !Array.isArray(p.items) ? p.items : {};
  let kind: OptionKind;
  let choices: readonly string[] | undefined;
  let range: NumberRange = {};
  if (Array.isArray(p.enum) && p.enum.every((v) => typeof v === 'string')) {
    kind = 'enum';
    choices = p.enum as string[];
  } else if (p.type === 'integer' || p.type === 'number') {
    kind = p.type;
    range = rangeOf(p);
  } else if (p.type === 'boolean') {
    kind = 'boolean';
  } else if (p.type === 'array' && Array.isArray(items.enum) && items.enum.every((v) => typeof v === 'string')) {
    kind = 'enum-list';
    choices = items.enum as string[];
  } else if (p.type === 'array' && (items.type === 'integer' || items.type === 'number')) {
    kind = items.type === 'integer' ? 'integer-list' : 'number-list';
    range = rangeOf(items);
  } else if (p.type === 'string' || p.type === undefined) {
    // Untyped (unrepresentable) options are passed through as text and judged by zod itself.
    kind = 'string';
  } else {
    throw new Error(`schema option '${key}' has type ${JSON.stringify(p.type)}, which has no flag syntax`);
  }
  const flag = `--${kebabCase(key)}`;
  const env = `HWA_${upperSnakeCase(key)}`;
  const hasDefault = 'default' in p;
  const base = { key, flag, env, kind, description: p.description ?? '', hasDefault, range };
  const spec: OptionSpec = {
    ...base,
    ...(choices ? { choices } : {}),
    ...(hasDefault ? { default: p.default } : {}),
    help: '',
  };
  return { ...spec, help: helpText(spec) };
}

function rangeOf(p: Json): NumberRange {
  const r: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean } = {};
  // Draft 2020-12 numeric exclusives; zod's int() adds ±MAX_SAFE_INTEGER bounds that only clutter messages.
  if (typeof p.exclusiveMinimum === 'number') Object.assign(r, { min: p.exclusiveMinimum, minExclusive: true });
  else if (typeof p.minimum === 'number' && p.minimum > -SAFE) r.min = p.minimum;
  if (typeof p.exclusiveMaximum === 'number') Object.assign(r, { max: p.exclusiveMaximum, maxExclusive: true });
  else if (typeof p.maximum === 'number' && p.maximum < SAFE) r.max = p.maximum;
  return r;
}

/** "a whole number ≥ 1", "a number ≥ 0 and < 1", "one of a, b": what the option accepts. */
export function allowed(spec: Pick<OptionSpec, 'kind' | 'choices' | 'range'>): string {
  const bounds = (r: NumberRange): string => {
    const parts: string[] = [];
    if (r.min !== undefined) parts.push(`${r.minExclusive ? '>' : '≥'} ${r.min}`);
    if (r.max !== undefined) parts.push(`${r.maxExclusive ? '<' : '≤'} ${r.max}`);
    return parts.length ? ` ${parts.join(' and ')}` : '';
  };
  switch (spec.kind) {
    case 'enum':
      return `one of ${(spec.choices ?? []).join(', ')}`;
    case 'integer':
      return `a whole number${bounds(spec.range)}`;
    case 'number':
      return `a number${bounds(spec.range)}`;
    case 'boolean':
      return 'true or false';
    case 'integer-list':
      return `a comma-separated list of whole numbers${bounds(spec.range)}`;
    case 'number-list':
      return `a comma-separated list of numbers${bounds(spec.range)}`;
    case 'enum-list':
      return `a comma-separated list of ${(spec.choices ?? []).join(', ')}`;
    case 'string':
      return 'text';
  }
}

function helpText(spec: OptionSpec): string {
  const notes: string[] = [];
  if (spec.kind === 'enum') notes.push(`one of ${(spec.choices ?? []).join(', ')}`);
  else if (spec.kind === 'enum-list') notes.push(`any of ${(spec.choices ?? []).join(', ')}`);
  else if (spec.kind !== 'string' && spec.kind !== 'boolean') notes.push(allowed(spec).replace(/^an? /, ''));
  // An empty default is documented by the description itself ("default: runs/<time>"), so it is not repeated.
  if (spec.hasDefault && spec.default !== '') {
    const d = spec.default;
    notes.push(`default: ${Array.isArray(d) && d.length === 0 ? 'none' : typeof d === 'string' ? d : showValue(d)}`);
  }
  notes.push(`env ${spec.env}`);
  return `${spec.description} (${notes.join('; ')})`.trim();
}

/**
 * Turns the text of a flag or env variable into the option's type. Only the syntax is checked here (is it a
 * number at all?); ranges and enum values are left to the schema so they are reported in one place.
 *
 * @param label - how the user wrote the option, for the message: `--lr`, `HWA_LR`.
 * @throws ConfigError `--lr: 'abc' is not a number`.
 */
export function parseText(spec: Pick<OptionSpec, 'kind'>, raw: string, label: string): unknown {
  switch (spec.kind) {
    case 'number':
    case 'integer':
      return toNumber(raw, label);
    case 'integer-list':
    case 'number-list':
    case 'enum-list': {
      const parts = raw
        .split(/[,\s]+/)
        .map((s) => s.trim())
        .filter((s) => s !== '');
      // `--gpus ''` (an unset shell variable, say) would otherwise quietly mean "no GPUs".
      if (parts.length === 0)
        throw new ConfigError(`${label}: '${raw}' is an empty list; give values such as 0,1, or leave ${label} out`);
      // Enum entries are judged by the schema, which names the allowed values.
      if (spec.kind === 'enum-list') return parts;
      return parts.map((s) => toNumber(s, label, ' (expected a comma-separated list such as 0,1,2)'));
    }
    case 'boolean': {
      const v = raw.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off'].includes(v)) return false;
      throw new ConfigError(`${label}: '${raw}' is not true or false`);
    }
    case 'enum':
    case 'string':
      return raw;
  }
}

function toNumber(raw: string, label: string, hint = ''): number {
  const n = Number(raw.trim());
  // Number('') is 0 and Number('Infinity') is Infinity: neither is what the user meant, so both are refused.
  if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${label}: '${raw}' is not a number${hint}`);
  return n;
}

/** A value as the messages and tables show it: text quoted, lists comma-joined, nothing as (unset). */
export function showValue(value: unknown): string {
  if (value === undefined) return '(unset)';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return value.length ? value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(',') : '(none)';
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}
