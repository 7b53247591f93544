/**
 * `hwa setup native` takes TensorFlow's libraries from pip wheels. The CPU path runs for real in CI (the
 * native-backend tests need it); the GPU path needs wheels this machine cannot reach, so it runs here against
 * wheel-shaped fixtures: a `tensorflow` wheel with the layout and METADATA of the real one, nvidia-*-cu12 wheels
 * with their nvidia/<part>/lib/ folders, and a stand-in `python -m pip` that serves them and records how it was
 * called.
 */
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import yazl from 'yazl';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cudaLinkFlags, fetchLibraries } from '../../packages/cli/src/commands/setup-native.js';
import { extraRequirements } from '../../packages/cli/src/native/wheel.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-wheels-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => delete process.env.HWA_PYTHON);

const METADATA = `Metadata-Version: 2.1
Name: tensorflow
Version: 2.21.0
Requires-Dist: absl-py >=1.0.0
Requires-Dist: numpy >=1.26.0
Provides-Extra: and-cuda
Requires-Dist: nvidia-cublas-cu12 <13.0,>=12.5.3.2 ; extra == "and-cuda"
Requires-Dist: nvidia-cuda-runtime-cu12 <13.0,>=12.5.82 ; extra == "and-cuda"
Requires-Dist: nvidia-cudnn-cu12 <10.0,>=9.3.0.75 ; extra == "and-cuda"
Requires-Dist: tensorflow-io-gcs-filesystem >=0.23.1 ; python_version < "3.12"
`;

async function wheel(path: string, files: Record<string, string>): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const [name, text] of Object.entries(files)) zip.addBuffer(Buffer.from(text), name);
  zip.end();
  const out = createWriteStream(path);
  zip.outputStream.pipe(out);
  await once(out, 'close');
}

/** A `python` whose `-m pip download` copies the fixture wheel named by each requirement into -d DIR. */
function fakePython(wheels: string, calls: string): string {
  const script = join(root, 'python');
  writeFileSync(
    script,
    `#!${process.execPath}
const fs = require('fs'), path = require('path');
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(calls)}, JSON.stringify(args) + '\\n');
if (args.includes('--version')) { console.log('pip 99 (fake)'); process.exit(0); }
const dir = args[args.indexOf('-d') + 1];
let specs = args.filter((a, i) => !a.startsWith('-') && !args[i - 1]?.startsWith('-') && a !== 'pip' && a !== 'download');
const r = args.indexOf('-r');
if (r >= 0) specs = fs.readFileSync(args[r + 1], 'utf8').split('\\n').filter(Boolean).map((l) => l.split(' ')[0]);
for (const spec of specs) {
  const name = spec.split(/[<>=]/)[0].replace(/-/g, '_');
  const file = fs.readdirSync(${JSON.stringify(wheels)}).find((f) => f.startsWith(name + '-'));
  if (!file) { console.error('ERROR: No matching distribution found for ' + spec); process.exit(1); }
  fs.copyFileSync(path.join(${JSON.stringify(wheels)}, file), path.join(dir, file));
  console.log('Saved ' + path.join(dir, file));
}
`,
  );
  chmodSync(script, 0o755);
  return script;
}

describe('GPU libraries from wheel-shaped fixtures', () => {
  it('reads the and-cuda extra of the TensorFlow wheel without its markers', () => {
    expect(extraRequirements(METADATA, 'and-cuda')).toEqual([
      'nvidia-cublas-cu12<13.0,>=12.5.3.2',
      'nvidia-cuda-runtime-cu12<13.0,>=12.5.82',
      'nvidia-cudnn-cu12<10.0,>=9.3.0.75',
    ]);
    expect(extraRequirements(METADATA, 'other')).toEqual([]);
  });

  it('extracts TensorFlow\'s two libraries, its C headers and every CUDA library into one folder, and links the CUDA ones', async () => {
    const wheels = join(root, 'index');
    mkdirSync(wheels);
    await wheel(join(wheels, 'tensorflow-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl'), {
      'tensorflow/libtensorflow_cc.so.2': 'cc',
      'tensorflow/libtensorflow_framework.so.2': 'framework',
      'tensorflow/include/tensorflow/c/c_api.h': '/* c api */',
      'tensorflow/include/tensorflow/c/eager/c_api.h': '/* eager */',
      'tensorflow/include/tensorflow/core/platform/ctstring.h': '/* ctstring */',
      'tensorflow/include/tensorflow/core/platform/env.h': '/* not needed */',
      'tensorflow/include/tsl/platform/ctstring_internal.h': '/* tsl */',
      'tensorflow/include/xla/tsl/c/tsl_status.h': '/* xla */',
      'tensorflow/python/_pywrap_tensorflow_internal.so': 'python only',
      'tensorflow-2.21.0.dist-info/METADATA': METADATA,
    });
    await wheel(join(wheels, 'nvidia_cublas_cu12-12.5.3.2-py3-none-manylinux2014_x86_64.whl'), {
      'nvidia/cublas/lib/libcublas.so.12': 'cublas',
      'nvidia/cublas/lib/libcublasLt.so.12': 'cublasLt',
      'nvidia/cublas/include/cublas.h': 'header',
    });
    await wheel(join(wheels, 'nvidia_cuda_runtime_cu12-12.5.82-py3-none-manylinux2014_x86_64.whl'), { 'nvidia/cuda_runtime/lib/libcudart.so.12': 'cudart' });
    await wheel(join(wheels, 'nvidia_cudnn_cu12-9.3.0.75-py3-none-manylinux2014_x86_64.whl'), {
      'nvidia/cudnn/lib/libcudnn.so.9': 'cudnn',
      'nvidia/cudnn/lib/libcudnn_ops.so.9': 'cudnn ops',
    });
    const calls = join(root, 'calls.jsonl');
    process.env.HWA_PYTHON = fakePython(wheels, calls);
    const dir = join(root, 'cache', 'tensorflow-gpu');
    const said: string[] = [];
    const stamp = await fetchLibraries('gpu', dir, false, (l) => said.push(l));

    const lib = join(dir, 'lib');
    expect(readdirSync(lib).sort()).toEqual(
      ['libcublas.so.12', 'libcublasLt.so.12', 'libcudart.so.12', 'libcudnn.so.9', 'libcudnn_ops.so.9', 'libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'].sort(),
    );
    expect(readFileSync(join(lib, 'libcudnn.so.9'), 'utf8')).toBe('cudnn');
    expect(readdirSync(join(dir, 'include'), { recursive: true }).filter((f) => String(f).endsWith('.h')).sort()).toEqual(
      ['tensorflow/c/c_api.h', 'tensorflow/c/eager/c_api.h', 'tensorflow/core/platform/ctstring.h', 'tsl/platform/ctstring_internal.h', 'xla/tsl/c/tsl_status.h'].sort(),
    );
    expect(stamp.wheels.map((w) => w.file)).toHaveLength(4);
    expect(existsSync(join(dir, 'wheels'))).toBe(false); // the wheels are deleted once extracted
    // pip was asked for the GPU wheel by the pinned CPython tag, then for the extra's requirements, no dependencies.
    const pip = readFileSync(calls, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[]).filter((a) => a.includes('download'));
    expect(pip[0]).toEqual(expect.arrayContaining(['--no-deps', '--only-binary=:all:', '--python-version', '3.11', '--abi', 'cp311', 'tensorflow==2.21.0']));
    expect(pip[1]).toEqual(expect.arrayContaining(['nvidia-cublas-cu12<13.0,>=12.5.3.2', 'nvidia-cudnn-cu12<10.0,>=9.3.0.75']));
    // The GPU addon loads the libraries TensorFlow opens by name; cudnn's own sub-libraries it finds itself.
    expect(cudaLinkFlags(lib, stamp.libraries)).toEqual([`-L${lib}`, '-Wl,--no-as-needed', '-l:libcublas.so.12', '-l:libcublasLt.so.12', '-l:libcudart.so.12', '-l:libcudnn.so.9']);

    // A second run finds the stamp and downloads nothing.
    writeFileSync(calls, '');
    await fetchLibraries('gpu', dir, false, (l) => said.push(l));
    expect(readFileSync(calls, 'utf8')).toBe('');
    expect(said.at(-1)).toMatch(/cached in/);
  });

  it('a missing pip is one line naming the fix', async () => {
    process.env.HWA_PYTHON = join(root, 'no-such-python');
    await expect(fetchLibraries('cpu', join(root, 'cache', 'nopip'), true, () => {})).rejects.toThrow(
      /^pip is needed to fetch the TensorFlow wheels and '.*no-such-python -m pip' does not run \(.*\): install Python 3 with pip/,
    );
  });

  it('a wheel that pip cannot find is one line with pip\'s reason', async () => {
    process.env.HWA_PYTHON = fakePython(join(root, 'empty-index'), join(root, 'calls2.jsonl'));
    mkdirSync(join(root, 'empty-index'), { recursive: true });
    await expect(fetchLibraries('gpu', join(root, 'cache', 'none'), true, () => {})).rejects.toThrow(
      /^pip could not download tensorflow==2\.21\.0: ERROR: No matching distribution found for tensorflow==2\.21\.0$/,
    );
  });
});
