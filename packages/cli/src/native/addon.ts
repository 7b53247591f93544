/**
 * tfjs-node's addon, built here rather than downloaded: install the package's JavaScript without its install
 * script, give it TensorFlow's libraries and headers in the `deps/` folder its binding.gyp reads, compile it
 * with npm's own node-gyp, and prove the result by loading it in a fresh process.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { BackendError } from '@hwa/core';
import { locateNativePackage, type NativePackageLocation } from '@hwa/engine';

/** The folder whose node_modules holds tfjs (where npm puts the native package beside it). */
export function installRoot(): string {
  const tfjs = createRequire(import.meta.url).resolve('@tensorflow/tfjs/package.json');
  return resolve(dirname(tfjs), '..', '..', '..');
}

/** Runs a command to completion; output goes to `logFile` (appended). */
function runLogged(command: string, args: string[], cwd: string, logFile: string, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  return new Promise((done) => {
    const fd = openSync(logFile, 'a');
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', fd, fd] });
    child.on('error', () => done(null));
    child.on('exit', (code) => {
      closeSync(fd);
      done(code);
    });
  });
}

/** The log's last line that looks like an error, for a one-line message. */
function lastError(logFile: string): string {
  const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.trim());
  return (lines.filter((l) => /error|ERR!|not found|cannot/i.test(l)).at(-1) ?? lines.at(-1) ?? 'no output').trim();
}

/**
 * The package installed (JavaScript only, `--ignore-scripts`: its own script would try to download
 * libtensorflow 2.9.1) at `version`, without touching package.json or the lockfile.
 */
export async function ensurePackage(spec: string, version: string, root: string, logFile: string): Promise<NativePackageLocation> {
  const present = locateNativePackage(spec);
  if (present && present.version === version) return present;
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const code = await runLogged(npm, ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `${spec}@${version}`], root, logFile);
  const installed = locateNativePackage(spec);
  if (code !== 0 || installed == null) throw new BackendError(`npm could not install ${spec}@${version}: ${lastError(logFile)} (log: ${logFile})`);
  return installed;
}

/** Replaces `path` (file, link or folder) with a symbolic link to `target`. */
function link(target: string, path: string): void {
  rmSync(path, { recursive: true, force: true });
  symlinkSync(target, path);
}

/**
 * Points the package's deps/ at the cached TensorFlow: deps/lib links every library of `libDir` (so that the
 * addon's rpath, `$ORIGIN/../../deps/lib`, finds them all), plus the unversioned names the linker wants and
 * the `libtensorflow.so.2.9.1` name whose presence keeps tfjs-node's own install script (`npm rebuild`) from
 * deleting deps/; deps/include links the headers.
 */
export function wireDeps(pkg: NativePackageLocation, libDir: string, includeDir: string): void {
  const deps = join(pkg.dir, 'deps');
  rmSync(deps, { recursive: true, force: true });
  mkdirSync(join(deps, 'lib'), { recursive: true });
  for (const file of readdirSync(libDir)) link(join(libDir, file), join(deps, 'lib', file));
  link(join(libDir, 'libtensorflow_cc.so.2'), join(deps, 'lib', 'libtensorflow.so'));
  link(join(libDir, 'libtensorflow_framework.so.2'), join(deps, 'lib', 'libtensorflow_framework.so'));
  link(join(libDir, 'libtensorflow_cc.so.2'), join(deps, 'lib', 'libtensorflow.so.2.9.1'));
  link(includeDir, join(deps, 'include'));
}

/** npm's own node-gyp (npm sets npm_config_node_gyp for scripts), else the one beside this Node's npm. */
function nodeGyp(): string {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found) throw new BackendError('node-gyp not found (it ships with npm): run this through `npm run setup:native`');
  return found;
}

/** Node's own headers when they are installed beside it (distribution packages): node-gyp then needs no download. */
function nodeHeaders(): string | undefined {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

/**
 * Compiles the addon into the path the package loads it from. `linkFlags` go to the linker (LDFLAGS), e.g. the
 * CUDA libraries the GPU addon must load with it.
 */
export async function buildAddon(pkg: NativePackageLocation, logFile: string, linkFlags: readonly string[] = []): Promise<void> {
  const nodedir = nodeHeaders();
  const args = [
    nodeGyp(),
    'rebuild',
    `--module_name=tfjs_binding`,
    `--module_path=${dirname(pkg.addon)}`,
    `--napi_build_version=${pkg.napiVersion}`,
    ...(nodedir ? [`--nodedir=${nodedir}`] : []),
  ];
  const env = { ...process.env, LDFLAGS: [process.env.LDFLAGS ?? '', ...linkFlags].join(' ').trim() };
  const code = await runLogged(process.execPath, args, pkg.dir, logFile, env);
  if (code !== 0 || !existsSync(pkg.addon))
    throw new BackendError(
      `building ${pkg.dir}'s addon failed: ${lastError(logFile)} (full log: ${logFile}; it needs g++, make and python3` +
        `${nodedir ? '' : ", and Node's headers: set npm_config_nodedir to a Node install with include/node"})`,
    );
}

/** Copies a file into place through a temporary name, so a reader never sees half of it. */
export function copyAtomic(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, `${to}.partial`);
  renameSync(`${to}.partial`, to);
}

/** What a fresh process reports after loading the package. */
export interface AddonCheck {
  /** libtensorflow's version (TF_Version). */
  tensorflow: string;
  /** Whether TensorFlow found a CUDA device. */
  gpu: boolean;
}

/** Loads the package in a new Node process and reads back TensorFlow's version: the proof the build works. */
export async function checkAddon(spec: string, root: string): Promise<AddonCheck> {
  const script = `
    const tf = require(require.resolve(${JSON.stringify(spec)}, { paths: [${JSON.stringify(root)}] }));
    const b = tf.backend();
    process.stdout.write(JSON.stringify({ tensorflow: b.binding.TF_Version, gpu: b.isUsingGpuDevice === true }) + '\\n');`;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' } });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('exit', (code) => {
      const line = out.trim().split('\n').at(-1) ?? '';
      try {
        if (code === 0) return done(JSON.parse(line) as AddonCheck);
      } catch {
        /* reported below */
      }
      const reason = err.split('\n').find((l) => /Error|error/.test(l)) ?? err.trim().split('\n').at(-1) ?? `exit ${code}`;
      fail(new BackendError(`${spec} was built but does not load: ${reason.trim()}`));
    });
  });
}
