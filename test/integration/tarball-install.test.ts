/**
 * The published package: `npm run pack` makes the hwa tarball, a fresh project installs it with npm alone
 * and offline (`npm ci --offline`: every dependency from npm's cache, none from the workspace), and a script
 * there trains with `import { train } from 'hwa'` — 2 worker processes of the installed package — while the
 * installed `hwa` command runs too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { killAll, runNode } from '../helpers/cli.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hwa-tarball-'));
});
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const script = `
import { train, tf } from 'hwa';
const rows = (n, o) => {
  const xs = [], ys = [];
  for (let i = 0; i < n; i++) { const x = [Math.sin(i + o), Math.cos(i * 0.7 + o)]; xs.push(x); ys.push([x[0] - 2 * x[1]]); }
  return { xs, ys };
};
const result = await train({
  model: (t) => t.sequential({ layers: [t.layers.dense({ inputShape: [2], units: 1, kernelInitializer: t.initializers.zeros() })] }),
  data: { train: rows(64, 0), test: rows(16, 9) },
  loss: 'mse',
  optimizer: { name: 'sgd', lr: 0.1, momentum: 0.5 },
  hwa: { workers: 2, syncPeriod: 2, window: 2 },
  batchSize: 8,
  epochs: 2,
  outDir: 'run',
});
const w = result.offline.getWeights()[0].dataSync();
console.log(JSON.stringify({ loss: result.evals.at(-1).offline.loss, kernel: Array.from(w), isTensor: result.offline.predict(tf.zeros([1, 2])) instanceof tf.Tensor }));
`;

it('installs offline into an empty project and trains with 2 worker processes', async () => {
  const project = join(dir, 'project');
  execFileSync(process.execPath, [join(repo, 'scripts/pack.mjs'), '--out', join(dir, 'pack'), '--consumer', project], { stdio: 'pipe' });
  const manifest = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  expect(Object.keys(manifest.dependencies)).toEqual(['hwa']);
  execFileSync('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--loglevel', 'error'], { cwd: project, stdio: 'pipe', timeout: 200_000 });
  // The installed package holds its own @hwa/* packages; nothing links back to the workspace.
  expect(existsSync(join(project, 'node_modules/hwa/node_modules/@hwa/engine/dist/index.js'))).toBe(true);
  expect(existsSync(join(project, 'node_modules/@hwa'))).toBe(false);
  const version = execFileSync(join(project, 'node_modules/.bin/hwa'), ['--version'], { encoding: 'utf8' }).trim();
  expect(version).toBe(JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version);

  writeFileSync(join(project, 'train.mjs'), script);
  const run = runNode(['train.mjs'], {}, project);
  const { code, output, stdout } = await run.done;
  expect(code, output).toBe(0);
  expect(output).toMatch(/worker 1 started, pid \d+/);
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { loss: number; kernel: number[]; isTensor: boolean };
  expect(result.isTensor).toBe(true);
  // y = x0 − 2·x1 is learnable exactly by the one linear layer: the kernel heads for (1, −2) from zeros.
  expect(result.kernel[0]).toBeGreaterThan(0.2);
  expect(result.kernel[1]).toBeLessThan(-0.4);
  expect(result.loss).toBeLessThan(1);
  // npm ci unpacks ~100 packages (tfjs among them): ~25 s on an idle 2-core machine, whatever the test does.
}, 240_000);
