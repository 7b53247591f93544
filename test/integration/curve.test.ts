/**
 * CURVE (`--curve-keys`, @hwa/protocol curve.ts) with the real coordinator and worker loops over real tcp
 * sockets, and through the CLI: listed workers train to the same result as without CURVE; a worker whose key
 * is not listed, or that has no keys at all, stops at once with the reason while the coordinator logs the
 * refused key; the key folder is made by `hwa keys` and never overwritten.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@hwa/core';
import { coordinatorCurve, generateCurveKeys, workerCurve, z85Encode } from '@hwa/protocol';
import pino from 'pino';
import { Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { curveKeyPair } from 'zeromq';
import { killAll, readCheckpoint, runHwa } from '../helpers/cli.js';
import { bitsOf, runDistributed, type CommRun } from './comm-harness.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-curve-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const keys = join(root, 'keys');
generateCurveKeys(keys, 2);
const base: CommRun = { transport: 'tcp', syncSize: 3001, modelSize: 3000, workers: 2, dtype: 'float32', chunkFloats: 1000, restart: 'online', rounds: 3, roundsPerEpoch: 2, window: 2 };
const curve = () => ({ coordinator: coordinatorCurve(keys), workers: [workerCurve(keys, 0), workerCurve(keys, 1)] });

/** A pino logger whose lines are collected. */
function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, done) => (text.push(chunk.toString()), done()) });
  return { log: pino({ level: 'info' }, stream), lines: () => text.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('CURVE between the real coordinator and workers', () => {
  it('listed workers run to the same result as without CURVE', async () => {
    const plain = await runDistributed(base);
    const secured = await runDistributed({ ...base, curve: curve() });
    expect(bitsOf(secured.online)).toEqual(bitsOf(plain.online));
    expect(bitsOf(secured.offline)).toEqual(bitsOf(plain.offline));
  });

  it('a worker whose key is not listed stops with the reason; the coordinator logs the refused key', async () => {
    const stranger = curveKeyPair();
    const { log, lines } = capture();
    const c = curve();
    c.workers[1] = { ...c.workers[1], publicKey: stranger.publicKey, secretKey: stranger.secretKey };
    const started = performance.now();
    await expect(runDistributed({ ...base, curve: c, coordinatorLog: log, receiveTimeoutMs: 60_000 })).rejects.toThrow(
      /worker 1: the coordinator at tcp:\/\/127\.0\.0\.1:\d+ refused this worker's CURVE key .*is worker-1\.public in the coordinator's --curve-keys folder\?/,
    );
    expect(performance.now() - started).toBeLessThan(30_000); // not the 60 s receive timeout
    expect(lines()).toContainEqual(expect.objectContaining({ event: 'worker.unauthorized', publicKey: stranger.publicKey, mechanism: 'CURVE' }));
  });

  it('a worker without keys is told the coordinator uses --curve-keys', async () => {
    const c = curve();
    c.workers[0] = undefined;
    await expect(runDistributed({ ...base, curve: c, receiveTimeoutMs: 60_000 })).rejects.toThrow(
      /worker 0: the security handshake with .* failed .*the coordinator uses --curve-keys; give this worker its key folder too/,
    );
  });
});

describe('key folders', () => {
  it('hold Z85 keys that zeromq accepts; secret files are private; never overwritten', () => {
    const dir = join(root, 'made');
    const files = generateCurveKeys(dir, 3);
    expect(files).toHaveLength(8);
    expect(statSync(join(dir, 'worker-2.secret')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'coordinator.public'), 'utf8').trim()).toMatch(/^.{40}$/);
    expect(coordinatorCurve(dir).authorizedKeys).toHaveLength(3);
    expect(() => generateCurveKeys(dir, 1)).toThrow(/coordinator\.public already exists; hwa keys never overwrites keys/);
  });

  it('missing or damaged keys are named', () => {
    const dir = join(root, 'damaged');
    generateCurveKeys(dir, 1);
    expect(() => workerCurve(dir, 1)).toThrow(ConfigError);
    expect(() => workerCurve(dir, 1)).toThrow(/no worker-1\.public \(make the folder with `hwa keys --dir .* --workers K`\)/);
    rmSync(join(dir, 'coordinator.secret'));
    expect(() => coordinatorCurve(dir)).toThrow(/no coordinator\.secret/);
    const fresh = join(root, 'bad');
    generateCurveKeys(fresh, 1);
    rmSync(join(fresh, 'worker-0.public'));
    expect(() => coordinatorCurve(fresh)).toThrow(/no worker-<k>\.public, so no worker could join/);
  });

  it('z85Encode follows RFC 32 (its test vector)', () => {
    expect(z85Encode(Uint8Array.of(0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b))).toBe('HelloWorld');
  });
});

describe('through the CLI', () => {
  it('hwa keys, then hwa train --curve-keys over tcp', async () => {
    const dir = join(root, 'cli-keys');
    const made = await runHwa(['keys', '--dir', dir, '--workers', '2']).done;
    expect(made.code, made.output).toBe(0);
    expect(made.output).toMatch(/wrote 6 key files/);
    const out = join(root, 'cli-run');
    const job = ['--dataset', 'synthetic', '--train-limit', '128', '--test-limit', '32', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--progress', 'off'];
    const { code, output } = await runHwa(['train', ...job, '--workers', '2', '--transport', 'tcp', '--curve-keys', dir, '--out-dir', out]).done;
    expect(code, output).toBe(0);
    expect(output).toMatch(/CURVE on: 2 worker keys admitted/);
    expect(readCheckpoint(out).round).toBe(4);
  });

  it('a bad key folder is a one-line error naming the missing file', async () => {
    // --out-dir in the temp folder: a run folder under the repository's runs/ would outlive the test.
    const out = join(root, 'nowhere-run');
    const { code, output } = await runHwa(['coordinator', '--curve-keys', join(root, 'nowhere'), '--bind', 'tcp://127.0.0.1:0', '--dataset', 'synthetic', '--out-dir', out]).done;
    expect(code).toBe(2);
    expect(existsSync(out), 'the keys are checked before the run folder is made').toBe(false);
    expect(output).toMatch(/^hwa: --curve-keys .*nowhere: no coordinator\.secret/m);
  });
});
