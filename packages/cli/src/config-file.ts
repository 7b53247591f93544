/**
 * Reading a `--config FILE`: JSON or YAML chosen by extension, keys in camelCase or kebab-case.
 *
 * This module only reads the file and maps its keys onto schema keys; it does not judge values. Values are
 * parsed and validated in `options.ts` together with flags and env variables, so a bad value reads the same
 * wherever it came from, except for the label (`sync-period in demo.yaml (line 3)`).
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { ConfigError } from '@hwa/core';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';

/** One option value read from a config file, with the label error messages name it by. */
export interface ConfigFileEntry {
  /** The value as the file holds it (number, string, list, …); not yet validated. */
  readonly value: unknown;
  /** How the user wrote it: `sync-period in demo.yaml (line 3)`. */
  readonly label: string;
}

/** The options a config file sets, by schema (camelCase) key. */
export interface ConfigFileValues {
  /** The path as given, so messages name the file the way the user typed it. */
  readonly path: string;
  readonly entries: Readonly<Record<string, ConfigFileEntry>>;
}

/** File extensions a config file may have, and the parser each one means. */
const FORMATS: Readonly<Record<string, 'yaml' | 'json'>> = { '.yaml': 'yaml', '.yml': 'yaml', '.json': 'json' };

/** `syncPeriod` → `sync-period`: the spelling of flags and the preferred spelling in files. */
export function kebabCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `syncPeriod` → `SYNC_PERIOD`, the tail of the option's `HWA_*` environment variable. */
export function upperSnakeCase(key: string): string {
  return kebabCase(key).replace(/-/g, '_').toUpperCase();
}

/**
 * Reads `path` and returns the options it sets, keyed by the schema key among `keys`.
 *
 * @throws ConfigError if the extension is not .yaml/.yml/.json, the file cannot be read or parsed (the message
 *   names the file and, where the parser knows it, the line), the top level is not a mapping, a key is
 *   unknown (the message suggests the closest valid key) or one option is given twice (`lr` and `l-r`).
 */
export function readConfigFile(path: string, keys: readonly string[]): ConfigFileValues {
  const format = FORMATS[extname(path).toLowerCase()];
  if (format === undefined) {
    throw new ConfigError(
      `config file ${path}: unsupported extension '${extname(path) || '(none)'}'; use .yaml, .yml or .json`,
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message;
    throw new ConfigError(`cannot read config file ${path}: ${why}`);
  }
  const { data, lines } = format === 'yaml' ? parseYaml(path, text) : parseJson(path, text);
  return { path, entries: normalizeKeys(path, data, lines, keys) };
}

interface Parsed {
  readonly data: unknown;
  /** 1-based line of each top-level key as written, where the parser can tell. */
  readonly lines: ReadonlyMap<string, number>;
}

function parseYaml(path: string, text: string): Parsed {
  const lineCounter = new LineCounter();
  // uniqueKeys (the default) makes a key given twice a parse error with its line, rather than last-one-wins.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error !== undefined) {
    const pos = error.linePos?.[0];
    // yaml's message is "<what> at line L, column C:\n\n<snippet>"; one line is wanted, so keep only <what>.
    const what = (error.message.split('\n')[0] ?? error.message).replace(/ at line \d+, column \d+:?$/, '');
    const where = pos ? `${path}:${pos.line}:${pos.col}` : path;
    throw new ConfigError(`${where}: malformed YAML in config file: ${what}`);
  }
  const lines = new Map<string, number>();
  if (isMap(doc.contents)) {
    for (const pair of doc.contents.items) {
      if (isScalar(pair.key) && pair.key.range) {
        lines.set(String(pair.key.value), lineCounter.linePos(pair.key.range[0]).line);
      }
    }
  }
  // An empty file (or one of comments only) sets nothing rather than failing: a handy template.
  return { data: doc.contents === null ? {} : doc.toJS(), lines };
}

function parseJson(path: string, text: string): Parsed {
  try {
    return { data: JSON.parse(text) as unknown, lines: new Map() };
  } catch (err) {
    const message = (err as Error).message;
    // V8 reports a character offset ("… at position 12"); people look for lines.
    const at = /position (\d+)/.exec(message);
    if (at?.[1] !== undefined) {
      const before = text.slice(0, Number(at[1]));
      const line = before.split('\n').length;
      const col = Number(at[1]) - before.lastIndexOf('\n');
      const what = message.replace(/ in JSON at position \d+.*$/, '');
      throw new ConfigError(`${path}:${line}:${col}: malformed JSON in config file: ${what}`);
    }
    throw new ConfigError(`${path}: malformed JSON in config file: ${message}`);
  }
}

function normalizeKeys(
  path: string,
  data: unknown,
  lines: ReadonlyMap<string, number>,
  keys: readonly string[],
): Record<string, ConfigFileEntry> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    const got = Array.isArray(data) ? 'a list' : `${JSON.stringify(data)}`;
    throw new ConfigError(`config file ${path}: expected a mapping of option: value at the top level, got ${got}`);
  }
  const byName = new Map<string, string>();
  for (const key of keys) {
    byName.set(key, key);
    byName.set(kebabCase(key), key);
  }
  const entries: Record<string, ConfigFileEntry> = {};
  const written: Record<string, string> = {};
  const problems: string[] = [];
  for (const [name, value] of Object.entries(data)) {
    const line = lines.get(name);
    const where = line === undefined ? path : `${path} (line ${line})`;
    const key = byName.get(name);
    if (key === undefined) {
      const hint = closest(name, keys);
      problems.push(`unknown option '${name}' in ${where}${hint === undefined ? '' : `; did you mean '${hint}'?`}`);
      continue;
    }
    const earlier = written[key];
    if (earlier !== undefined) {
      problems.push(`option '${name}' in ${where} repeats '${earlier}'; keep one of them`);
      continue;
    }
    written[key] = name;
    entries[key] = { value, label: `${name} in ${where}` };
  }
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
  return entries;
}

/**
 * The valid key nearest to `name`, spelled the way `name` is (kebab unless it looks camelCase), or undefined
 * when nothing is near enough to be a plausible typo. Case, `-` and `_` are ignored in the comparison so that
 * `sync_period` and `SyncPeriod` find `sync-period`.
 */
function closest(name: string, keys: readonly string[]): string | undefined {
  const squash = (s: string): string => s.toLowerCase().replace(/[-_]/g, '');
  const target = squash(name);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const key of keys) {
    const d = levenshtein(target, squash(key));
    if (d < bestDistance) {
      bestDistance = d;
      best = key;
    }
  }
  // One edit in three characters is about where a suggestion stops helping and starts confusing.
  if (best === undefined || bestDistance > Math.max(2, Math.floor(target.length / 3))) return undefined;
  return /[A-Z]/.test(name) && !name.includes('-') ? best : kebabCase(best);
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
