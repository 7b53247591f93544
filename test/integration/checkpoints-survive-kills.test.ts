/**
 * Checkpoints survive anything (docs/processes.md#checkpoints-and---resume). Written atomically (temp file,
 * fsync, rename) with one manifest naming the data file's round, size and SHA-256, the last two kept: a
 * process killed with SIGKILL while writing leaves the previous checkpoint loadable (a plain overwrite was
 * destroyed by 3 kills in 3), a torn or mixed pair is refused with a clear error, and a coordinator killed
 * outright is resumed from its periodic checkpoint (without one, nothing would exist until the run ended or
 * was stopped).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32, type AveragerState } from '@hwa/core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readCheckpointState, writeCheckpoint } from '../../packages/cli/src/run-folder.js';
import { isRunning, killAll, readCheckpoint, runHwa, waitUntil } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-ckpt-'));
const children = new Set<ChildProcess>();
afterEach(async () => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  await killAll();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A checkpoint state of `floats` floats whose every value says its round. */
function stateOf(round: number, floats: number): { state: AveragerState; offline: Float32Array; configHash: string } {
  const online = new Float32Array(floats).fill(round);
  const window = [new Float32Array(floats).fill(round - 0.5), new Float32Array(floats).fill(round)];
  return { state: { round, online, offline: { kind: 'window', count: 2, vectors: window } }, offline: new Float32Array(floats).fill(round - 0.25), configHash: 'test' };
}

describe('checkpoint files', () => {
  it('keep the last two, each manifest naming its data file with round, size and checksum', () => {
    const dir = mkdtempSync(join(root, 'two-'));
    for (let round = 1; round <= 4; round++) writeCheckpoint(dir, stateOf(round, 100));
    expect(readdirSync(dir).filter((f) => f.endsWith('.bin')).sort()).toEqual(['checkpoint-000003.bin', 'checkpoint-000004.bin']);
    const meta = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8')) as Record<string, unknown>;
    expect(meta).toMatchObject({ version: 3, round: 4, file: 'checkpoint-000004.bin', bytes: 100 * 4 * 4 });
    expect(meta.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(readFileSync(join(dir, 'checkpoint.previous.json'), 'utf8'))).toMatchObject({ round: 3, file: 'checkpoint-000003.bin' });
    expect(readCheckpointState(dir).state.online[0]).toBe(4);
  });

  it('a torn data file or a mixed pair is refused, naming both files and the intact previous checkpoint', () => {
    const dir = mkdtempSync(join(root, 'torn-'));
    writeCheckpoint(dir, stateOf(1, 100));
    writeCheckpoint(dir, stateOf(2, 100));
    const current = join(dir, 'checkpoint-000002.bin');
    const saved = readFileSync(current);
    truncateSync(current, 1000);
    expect(() => readCheckpointState(dir)).toThrow(
      /checkpoint-000002\.bin does not match .*checkpoint\.json \(round 2, 1600 bytes, .*the file has 1000 bytes.*\): a torn or mixed checkpoint is never loaded; the checkpoint before it is intact: to resume from it, rename .*checkpoint\.previous\.json to checkpoint\.json/,
    );
    // Mixed: the right size, another round's bytes.
    copyFileSync(join(dir, 'checkpoint-000001.bin'), current);
    expect(() => readCheckpointState(dir)).toThrow(/a torn or mixed checkpoint is never loaded/);
    rmSync(current);
    expect(() => readCheckpointState(dir)).toThrow(/names .*checkpoint-000002\.bin, which is missing/);
    // The previous one, as the message says.
    copyFileSync(join(dir, 'checkpoint.previous.json'), join(dir, 'checkpoint.json'));
    expect(readCheckpointState(dir).state.round).toBe(1);
    expect(saved.length).toBe(1600);
  });

  it('SIGKILL at random moments of a rewrite never loses the previous checkpoint', async () => {
    const dir = mkdtempSync(join(root, 'kill-'));
    const module = fileURLToPath(new URL('../../packages/cli/dist/run-folder.js', import.meta.url));
    // A writer that rewrites 2 × 24 MB checkpoints as fast as it can and says which rounds are complete.
    const script = `
      import { writeCheckpoint } from ${JSON.stringify(module)};
      const n = 1_500_000;
      for (let round = Number(process.argv[1]); ; round++) {
        const online = new Float32Array(n).fill(round);
        writeCheckpoint(process.argv[2], { state: { round, online, offline: { kind: 'window', count: 1, vectors: [online, online] } }, offline: online, configHash: 'kill' });
        process.stdout.write('done ' + round + '\\n');
      }`;
    const random = mulberry32(9);
    let next = 1;
    for (let trial = 0; trial < 6; trial++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, String(next), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.add(child);
      let text = '';
      child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
      // Wait for at least one complete write, then kill at a random moment of a later one.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no checkpoint written within 30 s: ${text}`)), 30_000);
        child.stdout?.on('data', () => {
          if (/done \d+/.test(text)) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      await new Promise((r) => setTimeout(r, Math.floor(random() * 150)));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      children.delete(child);
      const done = [...text.matchAll(/done (\d+)/g)].map((m) => Number(m[1]));
      const last = done.at(-1) as number;
      // The manifest names a whole checkpoint: the last one reported complete, or the one after it if the
      // kill came between its rename and its report.
      const { state } = readCheckpointState(dir);
      expect([last, last + 1]).toContain(state.round);
      expect(state.online[0]).toBe(state.round);
      next = state.round + 1;
    }
    // The writers' temporary files are cleaned up by the next write.
    writeCheckpoint(dir, stateOf(next, 10));
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('a coordinator killed with SIGKILL', () => {
  it('is resumed from its periodic checkpoint, losing at most --checkpoint-every rounds; its socket file is removed at the next start', async () => {
    const out = join(root, 'killed');
    const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '4', '--sync-period', '2', '--workers', '2', '--backend', 'wasm', '--progress', 'off', '--transport', 'ipc'];
    const first = runHwa(['train', ...job, '--checkpoint-every', '3', '--out-dir', out]);
    await first.waitFor(/checkpoint of round 6 written/);
    const socket = /listening on ipc:\/\/(\S+)/.exec(first.output())?.[1] as string;
    const workerPids = [...first.output().matchAll(/worker \d started, pid (\d+)/g)].map((m) => Number(m[1]));
    expect(workerPids).toHaveLength(2);
    first.child.kill('SIGKILL');
    await first.done;
    // Orphaned, the workers see the launcher's IPC channel close and stop by themselves.
    await waitUntil(() => !workerPids.some(isRunning), 'the killed launcher\'s workers have exited');
    const written = [...first.output().matchAll(/checkpoint of round (\d+) written/g)].map((m) => Number(m[1]));
    const at = readCheckpoint(out).round;
    expect(at).toBe(written.at(-1));
    expect(at % 3).toBe(0);
    expect(existsSync(socket)).toBe(true); // SIGKILL: nobody removed it

    const second = await runHwa(['train', '--resume', out, '--backend', 'wasm', '--progress', 'off', '--transport', 'ipc']).done;
    expect(second.code, second.output).toBe(0);
    expect(second.output).toMatch(new RegExp(`resuming after round ${at} of 32`));
    expect(readCheckpoint(out).round).toBe(32);
    expect(existsSync(socket)).toBe(false);
    const rounds = readFileSync(join(out, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"kind":"round"')).map((l) => (JSON.parse(l) as { round: number }).round);
    // Rounds the killed run did after its checkpoint are done again, and recorded once.
    expect(rounds).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
  });
});
