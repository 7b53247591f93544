/**
 * `hwa setup native [--gpu]` (npm run setup:native): the native TensorFlow backend, built from registry parts.
 *
 *   1. @tensorflow/tfjs-node (or -gpu) installed without its install script
 *   2. TensorFlow's C libraries and headers from the pinned pip wheel (GPU: plus the nvidia-*-cu12 wheels its
 *      `and-cuda` extra lists), extracted once into a cache folder shared by every checkout
 *   3. the package's deps/ pointed at that cache
 *   4. the addon compiled with npm's node-gyp (or the cached build for this Node and package version reused)
 *   5. proof: a fresh process loads it and reports TensorFlow's version
 *
 * Idempotent: a second run finds each step done and only re-checks; `--force` redoes everything. Every failure
 * is one line naming the step and what to do, and hwa keeps training on wasm meanwhile.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BackendError } from '@hwa/core';
import { NATIVE_PACKAGES, type NativeFlavour } from '@hwa/engine';
import { buildAddon, checkAddon, copyAtomic, ensurePackage, installRoot, wireDeps } from '../native/addon.js';
import { HEADER_PREFIXES, TENSORFLOW_LIBRARIES, TENSORFLOW_WHEELS, TENSORFLOW_VERSION } from '../native/pins.js';
import { extraRequirements, extractFromWheel, pipDownload, readWheelText, sha256File } from '../native/wheel.js';

export interface SetupNativeOptions {
  /** Build @tensorflow/tfjs-node-gpu against TensorFlow with CUDA 12 instead of tfjs-node for the CPU. */
  gpu: boolean;
  /** Cache folder for the extracted libraries and built addons (default HWA_NATIVE_CACHE or ~/.cache/hwa/native). */
  cache?: string;
  /** Redo every step even when its result is cached. */
  force: boolean;
}

/** What the cache folder records about the libraries it holds. */
interface Stamp {
  tensorflow: string;
  wheels: { file: string; sha256: string }[];
  libraries: string[];
}

/** The CUDA libraries TensorFlow opens by name at run time, which the GPU addon loads with itself. */
const CUDA_LIBRARIES = /^lib(cudart|cublas|cublasLt|cufft|cusolver|cusparse|cudnn|nccl|nvJitLink|cupti|curand)\.so\.\d+$/;

/** Files of an nvidia-*-cu12 wheel that are shared libraries (nvidia/<part>/lib/lib*.so*). */
const NVIDIA_LIBRARY = /^nvidia\/[^/]+\/lib\/(lib[^/]+\.so(\.\d+)*)$/;

export function defaultCache(): string {
  return process.env.HWA_NATIVE_CACHE || join(homedir(), '.cache', 'hwa', 'native');
}

/** Linker flags that make the GPU addon load the CUDA libraries of `libDir` itself (found through deps/lib). */
export function cudaLinkFlags(libDir: string, files: readonly string[]): string[] {
  const cuda = files.filter((f) => CUDA_LIBRARIES.test(f)).sort();
  if (cuda.length === 0) return [];
  return [`-L${libDir}`, '-Wl,--no-as-needed', ...cuda.map((f) => `-l:${f}`)];
}

function megabytes(dir: string): number {
  let bytes = 0;
  for (const f of readdirSync(dir, { recursive: true }) as string[]) {
    const s = statSync(join(dir, f), { throwIfNoEntry: false });
    if (s?.isFile()) bytes += s.size;
  }
  return Math.round(bytes / 2 ** 20);
}

/** Downloads and extracts the libraries and headers into `dir` (lib/, include/), unless its stamp says done. */
export async function fetchLibraries(flavour: NativeFlavour, dir: string, force: boolean, say: (line: string) => void): Promise<Stamp> {
  const stampFile = join(dir, 'stamp.json');
  const libDir = join(dir, 'lib');
  if (!force && existsSync(stampFile)) {
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as Stamp;
    if (stamp.tensorflow === TENSORFLOW_VERSION && stamp.libraries.every((f) => existsSync(join(libDir, f)))) {
      say(`      cached in ${dir} (${stamp.libraries.length} libraries)`);
      return stamp;
    }
  }
  rmSync(dir, { recursive: true, force: true });
  const pin = TENSORFLOW_WHEELS[flavour];
  const wheels = join(dir, 'wheels');
  say(`      pip download ${pin.name}==${pin.version}${pin.sha256 ? ' (sha256 pinned)' : ''} …`);
  const [tfWheel] = (await pipDownload([{ spec: `${pin.name}==${pin.version}`, sha256: pin.sha256 }], wheels, (l) => say(`      pip: ${l}`))).filter(
    (w) => basename(w).startsWith(`${pin.name.replace(/-/g, '_')}-${pin.version}-`),
  );
  if (!tfWheel) throw new BackendError(`pip finished but no ${pin.name} ${pin.version} wheel is in ${wheels}`);
  const hash = await sha256File(tfWheel);
  if (pin.sha256 && hash !== pin.sha256) throw new BackendError(`${tfWheel} has sha256 ${hash}, expected ${pin.sha256}: delete it and run again`);
  say(`      ${basename(tfWheel)} sha256 ${hash}`);
  const include = join(dir, 'include');
  const fromTensorflow = await extractFromWheel(tfWheel, (name) => {
    const lib = TENSORFLOW_LIBRARIES.find((l) => name === `tensorflow/${l}`);
    if (lib) return join(libDir, lib);
    const header = name.startsWith('tensorflow/include/') ? name.slice('tensorflow/include/'.length) : null;
    return header && HEADER_PREFIXES.some((p) => header.startsWith(p)) ? join(include, header) : null;
  });
  const stamp: Stamp = { tensorflow: TENSORFLOW_VERSION, wheels: [{ file: basename(tfWheel), sha256: hash }], libraries: [...TENSORFLOW_LIBRARIES] };
  if (!TENSORFLOW_LIBRARIES.every((l) => existsSync(join(libDir, l))))
    throw new BackendError(`${basename(tfWheel)} does not hold ${TENSORFLOW_LIBRARIES.join(' and ')}: this TensorFlow wheel has another layout`);
  say(`      extracted ${fromTensorflow.length} files (2 libraries, headers)`);
  if (pin.cudaExtra) {
    const metadata = await readWheelText(tfWheel, (n) => /\.dist-info\/METADATA$/.test(n));
    const cuda = extraRequirements(metadata ?? '', pin.cudaExtra);
    if (cuda.length === 0) throw new BackendError(`${basename(tfWheel)} lists no requirements for its '${pin.cudaExtra}' extra`);
    say(`      pip download the ${cuda.length} CUDA wheels of ${pin.name}[${pin.cudaExtra}] …`);
    const all = await pipDownload(cuda.map((spec) => ({ spec })), wheels, (l) => say(`      pip: ${l}`));
    for (const wheel of all.filter((w) => w !== tfWheel)) {
      stamp.wheels.push({ file: basename(wheel), sha256: await sha256File(wheel) });
      const libs = await extractFromWheel(wheel, (name) => {
        const m = NVIDIA_LIBRARY.exec(name);
        return m ? join(libDir, m[1]) : null;
      });
      stamp.libraries.push(...libs.map((l) => basename(l)));
    }
    say(`      extracted ${stamp.libraries.length - TENSORFLOW_LIBRARIES.length} CUDA libraries`);
  }
  // Debug symbols are a quarter of libtensorflow_cc; nothing here uses them.
  const strip = spawnSync('strip', ['--strip-unneeded', ...TENSORFLOW_LIBRARIES.map((l) => join(libDir, l))], { stdio: 'ignore' });
  if (strip.status === 0) say('      stripped debug symbols');
  rmSync(wheels, { recursive: true, force: true });
  writeFileSync(stampFile, JSON.stringify(stamp, null, 2) + '\n');
  return stamp;
}

/** Runs the five steps, printing a line per step (and pip's own lines). */
export async function setupNative(options: SetupNativeOptions, say: (line: string) => void): Promise<void> {
  const started = performance.now();
  const flavour: NativeFlavour = options.gpu ? 'gpu' : 'cpu';
  const spec = NATIVE_PACKAGES[flavour];
  const cache = options.cache || defaultCache();
  const dir = join(cache, `tensorflow-${flavour}-${TENSORFLOW_VERSION}`);
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'setup.log');
  const root = installRoot();
  const seconds = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;

  say(`[1/5] ${spec}: installing its JavaScript (no install script) in ${root}`);
  const version = (JSON.parse(readFileSync(join(root, 'node_modules', '@tensorflow', 'tfjs', 'package.json'), 'utf8')) as { version: string }).version;
  const pkg = await ensurePackage(spec, version, root, log);
  say(`      ${spec}@${pkg.version} in ${pkg.dir}`);

  say(`[2/5] TensorFlow ${TENSORFLOW_VERSION} libraries (${TENSORFLOW_WHEELS[flavour].name} wheel${options.gpu ? ' + CUDA 12 wheels' : ''})`);
  const stamp = await fetchLibraries(flavour, dir, options.force, say);
  const libDir = join(dir, 'lib');

  say(`[3/5] ${pkg.dir}/deps → ${dir}`);
  wireDeps(pkg, libDir, join(dir, 'include'));

  const cached = join(dir, 'addon', `${basename(pkg.dir)}-${pkg.version}-napi${pkg.napiVersion}-node${process.versions.modules}.node`);
  if (!options.force && existsSync(cached)) {
    say(`[4/5] addon: reusing the build for this Node and package (${cached})`);
    copyAtomic(cached, pkg.addon);
  } else {
    say(`[4/5] addon: compiling with node-gyp (about a minute; log ${log})`);
    rmSync(pkg.addon, { force: true });
    await buildAddon(pkg, log, flavour === 'gpu' ? cudaLinkFlags(libDir, stamp.libraries) : []);
    copyAtomic(pkg.addon, cached);
  }

  say('[5/5] check: loading it in a new process');
  const check = await checkAddon(spec, root);
  if (flavour === 'gpu') {
    writeFileSync(join(dir, 'env.sh'), `# CUDA libraries of TensorFlow ${TENSORFLOW_VERSION}, for tools outside hwa\nexport LD_LIBRARY_PATH="${libDir}\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n`);
  }
  say(
    `      TensorFlow ${check.tensorflow} loads${flavour === 'gpu' ? (check.gpu ? ', CUDA GPU found' : ', but TensorFlow sees no CUDA GPU here (the backend works on the CPU; check nvidia-smi and the driver)') : ''}`,
  );
  say(`done in ${seconds()}: --backend ${flavour === 'gpu' ? 'tensorflow-gpu' : 'tensorflow'} (and auto) now use it; cache ${dir} (${megabytes(dir)} MB)`);
}
