/**
 * User modules gone wrong, as a user meets them: each is one line naming the file and what was expected, with
 * no stack; and a worker whose --model file differs from the coordinator's is refused, the coordinator's log
 * naming the option and both content digests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, runHwa } from '../helpers/cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hwa-modules-'));
  const layer = `tf.layers.dense({ inputShape: [784], units: 10, kernelInitializer: tf.initializers.zeros() })`;
  writeFileSync(join(dir, 'throws.js'), `throw new Error('no GPU here');\n`);
  writeFileSync(join(dir, 'wrong-export.js'), `export function build(tf) { return null; }\n`);
  writeFileSync(join(dir, 'not-a-model.js'), `export default () => ({ layers: [] });\n`);
  writeFileSync(join(dir, 'bad-data.js'), `export default () => ({ train: [1, 2, 3] });\n`);
  writeFileSync(join(dir, 'a.js'), `export default (tf) => tf.sequential({ layers: [tf.layers.flatten({ inputShape: [28, 28, 1] }), ${layer.replace('inputShape: [784], ', '')}] });\n`);
  writeFileSync(join(dir, 'b.js'), `// another version\nexport default (tf) => tf.sequential({ layers: [tf.layers.flatten({ inputShape: [28, 28, 1] }), ${layer.replace('inputShape: [784], ', '')}] });\n`);
});
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const small = ['--dataset', 'synthetic', '--train-limit', '64', '--test-limit', '16', '--batch-size', '16', '--progress', 'off'];

describe('a bad user module is one line naming the file', () => {
  it.each([
    ['--model', 'throws.js', /^hwa: --model \S+throws\.js: the module failed to load: no GPU here$/m],
    ['--model', 'wrong-export.js', /^hwa: --model \S+wrong-export\.js: exports build; expected a default export \(or `model`\) that is a function \(tf\) => tf\.LayersModel$/m],
    ['--model', 'not-a-model.js', /^hwa: --model \S+not-a-model\.js: the model function returned object; expected a tf\.LayersModel/m],
    ['--dataset', 'bad-data.js', /^hwa: --dataset \S+bad-data\.js returned an object with keys train; expected \{ train, test, validation\? \}/m],
    ['--model', 'missing.js', /^hwa: --model \S+missing\.js: no such file \(ENOENT\)$/m],
  ])('%s %s', async (flag, file, message) => {
    // A later flag replaces an earlier one: --dataset FILE overrides small's synthetic.
    const { code, output } = await runHwa(['train', '--in-process', '--out-dir', join(dir, `run-${file}`), ...small, flag, join(dir, file)]).done;
    expect(code, output).not.toBe(0);
    expect(output).toMatch(message);
    expect(output).not.toMatch(/\n\s+at /);
  });
});

it('a worker with a different --model file is refused, the coordinator naming the option', async () => {
  const endpoint = `tcp://127.0.0.1:${await freePort()}`;
  const coordinator = runHwa(['coordinator', '--bind', endpoint, '--workers', '1', '--join-timeout', '60', '--model', join(dir, 'a.js'), '--out-dir', join(dir, 'coord'), ...small]);
  await coordinator.waitFor(/listening on/);
  const worker = runHwa(['worker', '--connect', endpoint, '--rank', '0', '--workers', '1', '--model', join(dir, 'b.js'), ...small.filter((a) => a !== '--progress' && a !== 'off')]);
  const refused = await worker.done;
  expect(refused.code).not.toBe(0);
  expect(refused.output).toMatch(/coordinator refused worker 0: training config differs/);
  const logged = await coordinator.waitFor(/model: "[^"]*a\.js#sha256=([0-9a-f]{16})" ≠ "[^"]*b\.js#sha256=([0-9a-f]{16})"/);
  expect(logged[1]).not.toBe(logged[2]);
});
