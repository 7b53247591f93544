/**
 * What `hwa setup native` builds against: one TensorFlow release, taken from its pip wheels. tfjs-node's own
 * install script downloads libtensorflow 2.9.1 (CUDA 11.2, cuDNN 8.1) from a host many machines cannot reach;
 * the pip wheels of a current TensorFlow carry the same C API (docs/backends.md) and, for the GPU, CUDA 12 and
 * cuDNN 9 as nvidia-*-cu12 wheels.
 */
import type { NativeFlavour } from '@hwa/engine';

export const TENSORFLOW_VERSION = '2.21.0';

/** The wheels are CPython-tagged though the C libraries inside are not: ask pip for this tag on any Python. */
export const WHEEL_TAGS = { python: '3.11', abi: 'cp311', platform: 'manylinux_2_27_x86_64' } as const;

/** One pinned wheel. */
export interface WheelPin {
  /** pip requirement name. */
  readonly name: string;
  readonly version: string;
  /**
   * sha256 of the wheel file: pip refuses any other file (`--require-hashes`). null where no machine of ours
   * has reached the wheel to pin it; pip then checks only the hash its index publishes, and the hash of what
   * arrived is printed and kept in the cache's stamp.
   */
  readonly sha256: string | null;
  /** The extra whose requirements are the CUDA library wheels (GPU only). */
  readonly cudaExtra: string | null;
}

export const TENSORFLOW_WHEELS: Record<NativeFlavour, WheelPin> = {
  cpu: {
    name: 'tensorflow-cpu',
    version: TENSORFLOW_VERSION,
    sha256: '2b847d217b02ee7731ed91431daf3250daa0196c3c94614d23be27232e6e5b6c',
    cudaExtra: null,
  },
  gpu: { name: 'tensorflow', version: TENSORFLOW_VERSION, sha256: null, cudaExtra: 'and-cuda' },
};

/** Files the addon links against, as the wheel holds them (tensorflow/<name>). */
export const TENSORFLOW_LIBRARIES = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'] as const;

/**
 * Header folders (under the wheel's tensorflow/include/) the binding compiles against: the C and eager C API,
 * and the `ctstring` headers they include from tensorflow/core/platform, tsl/platform and xla/tsl/c.
 */
export const HEADER_PREFIXES = [
  'tensorflow/c/',
  'tensorflow/core/platform/ctstring',
  'tsl/platform/ctstring',
  'xla/tsl/c/',
] as const;
