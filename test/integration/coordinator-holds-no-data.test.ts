/**
 * A coordinator plans and runs the rounds without reading one example: here its data folder holds MNIST's
 * four IDX files with valid image headers, blank (sparse) pixels and empty label files, which no worker could
 * train on, while its workers read the real files. The run finishes and exports.
 */
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { IDX_FILES } from '@hwa/engine';
import { freePort } from '../helpers/addresses.js';
import { killAll, readJsonLines, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-no-data-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** An IDX image file of `count` 28×28 images: a valid header, then zeros that take no disk (a sparse file). */
function blankImages(file: string, count: number): void {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x803, 0);
  header.writeUInt32BE(count, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  const fd = openSync(file, 'w');
  writeSync(fd, header);
  closeSync(fd);
  truncateSync(file, 16 + count * 28 * 28);
}

it('a coordinator whose data folder has headers only runs a whole 2-worker run; the workers read the data', async () => {
  const headersOnly = mkdtempSync(join(root, 'headers-'));
  blankImages(join(headersOnly, IDX_FILES.trainImages), 60_000);
  blankImages(join(headersOnly, IDX_FILES.testImages), 10_000);
  writeFileSync(join(headersOnly, IDX_FILES.trainLabels), '');
  writeFileSync(join(headersOnly, IDX_FILES.testLabels), '');
  const out = join(root, 'run');
  const connect = `tcp://127.0.0.1:${await freePort()}`;
  const job = ['--dataset', 'mnist', '--model', 'mlp', '--train-limit', '512', '--test-limit', '128', '--batch-size', '32', '--epochs', '1', '--sync-period', '4', '--workers', '2', '--progress', 'off'];

  // The same folder is useless to a worker: it names the empty labels file.
  const refused = await runHwa(['worker', ...job, '--data-dir', headersOnly, '--rank', '0', '--connect', connect]).done;
  expect(refused.code).not.toBe(0);
  expect(refused.output).toMatch(new RegExp(`${IDX_FILES.trainLabels}: truncated`));

  const coordinator = runHwa(['coordinator', ...job, '--data-dir', headersOnly, '--bind', connect, '--out-dir', out]);
  await coordinator.waitFor(/listening on/, 60_000);
  const workers = [0, 1].map((rank) => runHwa(['worker', ...job, '--rank', String(rank), '--connect', connect]));
  const [done, ...workersDone] = await Promise.all([coordinator.done, ...workers.map((w) => w.done)]);
  expect(done.code, done.output).toBe(0);
  expect(workersDone.map((w) => w.code)).toEqual([0, 0]);

  const events = readJsonLines(join(out, 'coordinator.log')).map((e) => e.event);
  expect(events).toContain('data.sized');
  expect(events).not.toContain('data.loaded');
  expect(events).not.toContain('data.loading');
  expect(done.output).toMatch(/mnist: 512 training examples \(sized, not loaded: the workers load the data\)/);
  expect(done.output).toMatch(/offline \(HWA\) model exported/);
}, 180_000);
