/**
 * Where the native tfjs packages (@tensorflow/tfjs-node and -gpu) keep their compiled addon, and the
 * TensorFlow thread settings a process gives libtensorflow. Shared by backend selection (which must not import
 * a package whose addon is missing: its JS registers every `tensorflow` kernel before the addon fails to load,
 * and a second package then re-registers them all) and by `hwa setup native`, which builds the addon there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';

export const NATIVE_PACKAGES = { cpu: '@tensorflow/tfjs-node', gpu: '@tensorflow/tfjs-node-gpu' } as const;
export type NativeFlavour = keyof typeof NATIVE_PACKAGES;

/** Where a native package is installed and where its addon must be. */
export interface NativePackageLocation {
  /** The package folder (its package.json's directory). */
  readonly dir: string;
  /** Its version. */
  readonly version: string;
  /** The path node-pre-gyp's `find` (used by the package's index.js) loads the addon from. */
  readonly addon: string;
  /** The N-API version that path is for: the highest one both Node and the package support. */
  readonly napiVersion: number;
}

interface BinarySection {
  module_name: string;
  module_path: string;
  napi_versions?: number[];
}

/** The installed package `spec`, or null when it is not installed (npm drops it when its install script fails). */
export function locateNativePackage(spec: string, from: string = import.meta.url): NativePackageLocation | null {
  let manifest: string;
  try {
    manifest = createRequire(from).resolve(`${spec}/package.json`);
  } catch {
    return null;
  }
  const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string; binary: BinarySection };
  // node-pre-gyp picks the highest N-API version in `napi_versions` that this Node supports.
  const nodeNapi = Number(process.versions.napi);
  const napiVersion = Math.max(...(pkg.binary.napi_versions ?? [nodeNapi]).filter((v) => v <= nodeNapi));
  const dir = dirname(manifest);
  const folder = pkg.binary.module_path.replace('{napi_build_version}', String(napiVersion));
  return { dir, version: pkg.version, addon: resolve(dir, folder, `${pkg.binary.module_name}.node`), napiVersion };
}

/** Whether the package is installed with its addon built. */
export function nativeAddonBuilt(location: NativePackageLocation | null): boolean {
  return location != null && existsSync(location.addon);
}

/**
 * Sets libtensorflow's thread pools for this process (read once, when the native package loads): `threads`
 * intra-op threads (one op's parallel work) and as many inter-op threads (tfjs runs ops one at a time, so those
 * mostly idle). 0 leaves TensorFlow's default, one per core, or what the environment already says.
 */
export function setTensorflowThreads(threads: number): void {
  if (threads <= 0) return;
  process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  process.env.TF_NUM_INTEROP_THREADS = String(threads);
}

/** The intra-op thread count libtensorflow will use in this process (its default is one per core). */
export function tensorflowThreads(cores: number): number {
  const set = Number(process.env.TF_NUM_INTRAOP_THREADS);
  return Number.isInteger(set) && set > 0 ? set : cores;
}
