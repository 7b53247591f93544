/**
 * Disk and network errors are one line naming the file or endpoint, with exit code 2 (the option is wrong) or
 * 1 (the machine is), and nothing already written is damaged; no socket file or /dev/shm folder outlives a run
 * (docs/processes.md#signals-and-failures). What each test guards against: `unexpected error: ENOSPC` with a
 * stack and a truncated checkpoint, `Address already in use` without the endpoint, `--out-dir` under /proc
 * hanging, and a /tmp/hwa-<pid>-*.sock left by every run. The full and read-only disks are small tmpfs mounts (root only,
 * as CI runs; skipped elsewhere).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readCheckpointState } from '../../packages/cli/src/run-folder.js';
import { freePort } from '../helpers/addresses.js';
import { killAll, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-io-'));
const mounts: string[] = [];
const servers: Server[] = [];
afterEach(async () => {
  await killAll();
  for (const s of servers.splice(0)) s.close();
  for (const m of mounts.splice(0)) execFileSync('umount', [m]);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--workers', '2', '--backend', 'wasm', '--progress', 'off'];

/** Whether a tmpfs can be mounted here (root, and a kernel that lets this container mount). */
function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(root, 'probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  }
}
const mountable = canMount();

function tmpfs(options: string): string {
  const dir = mkdtempSync(join(root, 'fs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

/** The last line the CLI printed (its error), and that no stack trace came with it. */
function lastLine(output: string): string {
  expect(output).not.toMatch(/^\s+at /m);
  expect(output).not.toMatch(/unexpected error/);
  return output.trim().split('\n').at(-1) as string;
}

describe('--out-dir', () => {
  it('that is a file: exit 2, one line naming it', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'keep me');
    const { code, output } = await runHwa(['train', ...job, '--out-dir', file]).done;
    expect(code).toBe(2);
    expect(output.trim()).toBe(`hwa: --out-dir ${file} is a file, not a folder`);
    const below = await runHwa(['train', ...job, '--out-dir', join(file, 'run')]).done;
    expect(below.code).toBe(1);
    expect(lastLine(below.output)).toBe(`hwa: cannot create the run folder ${join(file, 'run')}: a part of the path is a file, not a folder (ENOTDIR)`);
  });

  it('under /proc: exit 2 at once instead of hanging', async () => {
    const { code, output } = await runHwa(['train', ...job, '--out-dir', '/proc/self/hwa-run']).done;
    expect(code).toBe(2);
    expect(output.trim()).toBe('hwa: --out-dir /proc/self/hwa-run: that is a kernel file system (/proc, /sys or /dev), not a place for a run folder');
  });

  it.skipIf(!mountable)('on a read-only file system: exit 1, one line naming the folder', async () => {
    const ro = tmpfs('ro,size=64k');
    const { code, output } = await runHwa(['train', ...job, '--out-dir', join(ro, 'run')]).done;
    expect(code).toBe(1);
    expect(lastLine(output)).toBe(`hwa: cannot create the run folder ${join(ro, 'run')}: read-only file system (EROFS)`);
  });

  it.skipIf(!mountable)('on a disk that fills up: exit 1, one line naming the file, the last checkpoint intact, the resume command printed', async () => {
    // Room for the first checkpoint (2.8 MB) but not for it and the second (3.8 MB) together.
    const disk = tmpfs('size=5m');
    const out = join(disk, 'run');
    const { code, output } = await runHwa(['train', ...job, '--transport', 'ipc', '--checkpoint-every', '1', '--out-dir', out]).done;
    expect(code).toBe(1);
    expect(lastLine(output)).toBe(`hwa: cannot write ${join(out, 'checkpoint-000002.bin')}: no space left on the device (ENOSPC)`);
    expect(readCheckpointState(out).state.round).toBe(1);
    expect(readdirSync(out).filter((f) => f.includes('.tmp-'))).toEqual([]);
    expect(output).toContain(`continue this run with: hwa train --resume ${out} --backend wasm --transport ipc --checkpoint-every 1 --progress off`);
  });
});

describe('endpoints', () => {
  it('an address in use: exit 1, one line naming the endpoint', async () => {
    const port = await freePort();
    const server = createServer();
    servers.push(server);
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    const { code, output } = await runHwa(['coordinator', ...job, '--bind', `tcp://127.0.0.1:${port}`, '--out-dir', join(root, 'in-use')]).done;
    expect(code).toBe(1);
    expect(lastLine(output)).toBe(`hwa: cannot bind tcp://127.0.0.1:${port}: the address is already in use (another coordinator or service listens there; choose another port)`);
  });

  it('a malformed endpoint: exit 2, one line naming it, for --bind and --connect', async () => {
    const bind = await runHwa(['coordinator', ...job, '--bind', 'foo://bar', '--out-dir', join(root, 'bad-bind')]).done;
    expect(bind.code).toBe(2);
    expect(lastLine(bind.output)).toMatch(/^hwa: --bind foo:\/\/bar: not a usable ZeroMQ endpoint \(.*\); expected e\.g\. tcp:\/\/0\.0\.0\.0:5555/);
    const connect = await runHwa(['worker', ...job.filter((a, i, all) => a !== '--progress' && all[i - 1] !== '--progress'), '--rank', '0', '--connect', 'tcp://no-port']).done;
    expect(connect.code).toBe(2);
    expect(lastLine(connect.output)).toMatch(/^hwa: --connect tcp:\/\/no-port: not a usable ZeroMQ endpoint/);
  });
});

describe('leftovers', () => {
  it('a finished run leaves no socket file and no /dev/shm folder', async () => {
    const run = runHwa(['train', ...job, '--transport', 'shm', '--out-dir', join(root, 'clean')]);
    const pid = run.child.pid as number;
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    const mine = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(`hwa-${pid}-`)) : []);
    expect(mine(tmpdir())).toEqual([]);
    expect(mine('/dev/shm')).toEqual([]);
  });

  it('a dead run\'s socket file is removed by the next start', async () => {
    // pid 2^22 + 1 is above Linux's default pid_max: no process has it.
    const stale = join(tmpdir(), `hwa-${2 ** 22 + 1}-0123abcd.sock`);
    mkdirSync(tmpdir(), { recursive: true });
    writeFileSync(stale, '');
    const { code, output } = await runHwa(['train', ...job, '--epochs', '0.25', '--transport', 'ipc', '--out-dir', join(root, 'after-kill')]).done;
    expect(code, output).toBe(0);
    expect(existsSync(stale)).toBe(false);
  });
});
