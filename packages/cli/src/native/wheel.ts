/**
 * Python wheels as a source of native libraries: fetch them with pip (pinned, hash-checked), read their
 * metadata, and extract chosen files. Wheels are zip files; yauzl streams each entry, so a 790 MB library is
 * never held in memory whole.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import { BackendError } from '@hwa/core';
import { WHEEL_TAGS } from './pins.js';

/** A pip requirement: `name==version` or `name>=a,<b`, with an optional sha256 pin. */
export interface Requirement {
  readonly spec: string;
  readonly sha256?: string | null;
}

/** The Python that runs pip: HWA_PYTHON, else python3. */
export function pythonCommand(): string {
  return process.env.HWA_PYTHON || 'python3';
}

/** Runs a command, streaming its stdout to `onLine`; resolves with its exit code and the tail of its stderr. */
function run(command: string, args: string[], onLine: (line: string) => void): Promise<{ code: number | null; stderr: string[] }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stderr: string[] = [];
    const lines = (stream: Readable | null, sink: (l: string) => void) =>
      stream?.setEncoding('utf8').on('data', (chunk: string) => chunk.split('\n').filter((l) => l.trim()).forEach(sink));
    lines(child.stdout, onLine);
    lines(child.stderr, (l) => {
      stderr.push(l);
      if (stderr.length > 40) stderr.shift();
    });
    child.on('error', (e) => resolve({ code: null, stderr: [e.message] }));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

/**
 * Downloads wheels (no dependencies) into `dir` for the pinned CPython tag and Linux platform, whatever Python
 * runs pip. Requirements with a sha256 go through `--require-hashes`, so pip refuses a file with another hash.
 * Returns the paths of the wheels now in `dir`.
 */
export async function pipDownload(requirements: readonly Requirement[], dir: string, onLine: (line: string) => void): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const python = pythonCommand();
  const probe = await run(python, ['-m', 'pip', '--version'], () => {});
  if (probe.code !== 0)
    throw new BackendError(
      `pip is needed to fetch the TensorFlow wheels and '${python} -m pip' does not run (${probe.stderr.at(-1) ?? 'no output'}): ` +
        'install Python 3 with pip (e.g. apt-get install python3-pip) or point HWA_PYTHON at one',
    );
  const tagArgs = ['--no-deps', '--only-binary=:all:', '--python-version', WHEEL_TAGS.python, '--implementation', 'cp', '--abi', WHEEL_TAGS.abi, '--platform', WHEEL_TAGS.platform, '-d', dir];
  const pinned = requirements.filter((r) => r.sha256);
  const loose = requirements.filter((r) => !r.sha256);
  const calls: string[][] = [];
  if (pinned.length) {
    const file = join(dir, 'requirements.txt');
    writeFileSync(file, pinned.map((r) => `${r.spec} --hash=sha256:${r.sha256}\n`).join(''));
    calls.push(['--require-hashes', '-r', file]);
  }
  if (loose.length) calls.push(loose.map((r) => r.spec));
  for (const extra of calls) {
    const result = await run(python, ['-m', 'pip', 'download', ...tagArgs, ...extra], onLine);
    if (result.code !== 0) {
      const reason = result.stderr.filter((l) => /ERROR|error:|mismatch|hash/i.test(l)).at(-1) ?? result.stderr.at(-1) ?? 'no output';
      throw new BackendError(`pip could not download ${extra.filter((a) => !a.startsWith('-') && !a.endsWith('.txt')).join(', ') || pinned.map((r) => r.spec).join(', ')}: ${reason.trim()}`);
    }
  }
  return readdirSync(dir).filter((f) => f.endsWith('.whl')).map((f) => join(dir, f));
}

/** sha256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: true }, (err, zip) => (err ? reject(err) : resolve(zip))),
  );
}

function entryStream(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream))));
}

/**
 * Visits every file of a wheel; `visit` returns a path to extract the entry to (written to a temporary name
 * and renamed, so an interrupted run never leaves a truncated file under the final name) or null to skip it.
 * Returns the paths written.
 */
export async function extractFromWheel(wheel: string, visit: (name: string) => string | null): Promise<string[]> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(wheel);
  } catch (err) {
    throw new BackendError(`${wheel} is not a readable wheel (${(err as Error).message}): delete it and run the setup again`);
  }
  const written: string[] = [];
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', () => resolve());
    zip.on('entry', (entry: yauzl.Entry) => {
      const target = entry.fileName.endsWith('/') ? null : visit(entry.fileName);
      if (target == null) return zip.readEntry();
      mkdirSync(dirname(target), { recursive: true });
      const partial = `${target}.partial`;
      entryStream(zip, entry)
        .then((stream) => pipeline(stream, createWriteStream(partial)))
        .then(() => {
          renameSync(partial, target);
          written.push(target);
          zip.readEntry();
        })
        .catch(reject);
    });
    zip.readEntry();
  });
  return written;
}

/** The text of one file in a wheel (e.g. its METADATA), or null if absent. */
export async function readWheelText(wheel: string, match: (name: string) => boolean): Promise<string | null> {
  const zip = await openZip(wheel);
  return new Promise((resolve, reject) => {
    let found: string | null = null;
    zip.on('error', reject);
    zip.on('end', () => resolve(found));
    zip.on('entry', (entry: yauzl.Entry) => {
      if (!match(entry.fileName)) return zip.readEntry();
      entryStream(zip, entry)
        .then(async (stream) => {
          const chunks: Buffer[] = [];
          for await (const c of stream) chunks.push(c as Buffer);
          found = Buffer.concat(chunks).toString('utf8');
          zip.close();
          resolve(found);
        })
        .catch(reject);
    });
    zip.readEntry();
  });
}

/**
 * The requirements a wheel's METADATA lists under `extra` (e.g. tensorflow's `and-cuda`: the nvidia-*-cu12
 * wheels), without their environment markers: `Requires-Dist: nvidia-cudnn-cu12<10,>=9.3; extra == "and-cuda"`
 * gives `nvidia-cudnn-cu12<10,>=9.3`.
 */
export function extraRequirements(metadata: string, extra: string): string[] {
  const out: string[] = [];
  for (const line of metadata.split('\n')) {
    const m = /^Requires-Dist:\s*([^;]+);(.*)$/.exec(line.trim());
    if (!m) continue;
    const marker = m[2].replace(/\s+/g, '');
    if (marker.includes(`extra=="${extra}"`) || marker.includes(`extra=='${extra}'`)) out.push(m[1].replace(/\s+/g, '').replace(/\(([^)]*)\)/, '$1'));
  }
  return out;
}
