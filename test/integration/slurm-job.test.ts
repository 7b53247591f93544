/**
 * deploy/slurm/hwa.sbatch on a real Slurm: a one-node cluster on this machine (scripts/slurm-local.sh), a job of
 * two srun tasks submitted with sbatch, the exported model read back.
 *
 * Two tasks on one node rather than one task with two workers: each task is a `hwa launch` "node" of its own
 * (task 0 the coordinator and rank 0, task 1 rank 1 over tcp to MASTER_ADDR), so the job exercises what a
 * multi-node job does — MASTER_ADDR from the node list, the rank mapping, two launchers meeting over the
 * network — where one task with two workers would run `hwa launch`'s single-node path only.
 *
 * Skips, saying why, where Slurm or root is missing; CI sets HWA_REQUIRE_SLURM=1, which makes that a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadLayersModelFromDir, selectBackend, WeightLayout } from '@hwa/engine';
import { MAIN, readCheckpoint } from '../helpers/cli.js';
import { ROOT } from '../helpers/compose.js';

const SCRIPT = join(ROOT, 'scripts', 'slurm-local.sh');
const dir = mkdtempSync(join(tmpdir(), 'hwa-slurm-'));
// A cluster folder of its own, so that a cluster someone runs by hand in /tmp/hwa-slurm is left alone.
const clusterDir = join(dir, 'cluster');
const env = { ...process.env, HWA_SLURM_DIR: clusterDir, SLURM_CONF: join(clusterDir, 'slurm.conf'), HWA_CMD: `${process.execPath} ${MAIN}` };

/** Why this machine cannot run the test, or null. */
function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root (slurmd and munged need it)';
  const absent = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'scontrol'].filter((bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0);
  return absent.length ? `${absent.join(', ')} not installed (apt-get install -y slurm-wlm munge)` : null;
}
const why = missing();
const required = process.env.HWA_REQUIRE_SLURM === '1';

let up = false;
const started = new Set<ChildProcess>();

/** Runs a command to its end; resolves with its exit code and output. */
function run(command: string, args: string[], cwd = ROOT): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    child.on('close', (code) => {
      started.delete(child);
      resolve({ code, output });
    });
  });
}

/**
 * One test cluster on the machine at a time: its daemons take fixed ports and share munged, and two test runs
 * may overlap (developers sharing a machine). flock(1) holds the lock while its `cat` reads this process's pipe,
 * so the lock goes when the test ends, and also when the test process dies outright.
 */
let lock: ChildProcess | undefined;
function lockCluster(): Promise<void> {
  return new Promise((resolve, reject) => {
    lock = spawn('flock', ['-w', '500', '/tmp/hwa-slurm-test.lock', 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let text = '';
    lock.stdout!.on('data', (b: Buffer) => {
      text += b.toString();
      if (text.includes('locked')) resolve();
    });
    lock.stderr!.on('data', (b: Buffer) => (text += b.toString()));
    lock.on('close', (code) => reject(new Error(`flock on /tmp/hwa-slurm-test.lock ended (code ${code}): ${text}`)));
  });
}

beforeAll(async () => {
  if (why) return;
  await lockCluster();
  const result = await run('bash', [SCRIPT, 'up']);
  expect(result.code, result.output).toBe(0);
  up = true;
}, 600_000);

afterAll(async () => {
  for (const child of started) child.kill('SIGKILL');
  // Cancels the job if it still runs, then stops slurmd, slurmctld and the munged it started.
  if (up) await run('bash', [SCRIPT, 'down']);
  lock?.stdin?.end();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

it('an sbatch job of two srun tasks trains HWA across them and exports the model', async (ctx) => {
  if (why && required) throw new Error(`HWA_REQUIRE_SLURM=1, but Slurm cannot run here: ${why}`);
  if (why) {
    console.warn(`slurm-job.test.ts skipped: ${why}`);
    ctx.skip();
  }
  const out = join(dir, 'run');
  const submitted = await run(
    'sbatch',
    [
      ...['--parsable', '--nodes=1', '--ntasks=2', '--ntasks-per-node=2', `--chdir=${dir}`, `--output=${join(dir, 'job-%j.out')}`],
      join(ROOT, 'deploy', 'slurm', 'hwa.sbatch'),
      ...['--dataset', 'synthetic', '--train-limit', '192', '--test-limit', '64', '--batch-size', '16', '--epochs', '1'],
      ...['--sync-period', '2', '--window', '3', '--backend', 'wasm', '--out-dir', out],
    ],
    dir,
  );
  expect(submitted.code, submitted.output).toBe(0);
  const id = submitted.output.trim().split(/[;\s]/)[0];
  const file = join(dir, `job-${id}.out`);
  const jobLog = () => (existsSync(file) ? readFileSync(file, 'utf8') : '(no job output yet)');
  const job = { state: '', exit: '', log: '' };
  // scontrol rather than `sbatch --wait`, which polls at growing intervals (up to 30 s here): the job's end is
  // seen within a second, and a job that overruns fails the test with its own output.
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    const shown = await run('scontrol', ['show', 'job', '-o', id]);
    job.state = /JobState=(\S+)/.exec(shown.output)?.[1] ?? '';
    job.exit = /ExitCode=(\S+)/.exec(shown.output)?.[1] ?? '';
    if (!['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', ''].includes(job.state)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  job.log = jobLog();
  expect(`${job.state} ${job.exit}`, `job ${id}:\n${job.log}`).toBe('COMPLETED 0:0');
  expect(job.log).toMatch(/hwa: 2 node\(s\) of job \d+ on \S+; coordinator at \S+:\d+/);

  // Task 1 started rank 1 on its "node"; the coordinator (task 0) heard both ranks and exported θ_HWA.
  expect(job.log).toMatch(/node 1: worker 1 started/);
  expect(job.log).toMatch(/worker 1 joined/);
  const summary = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { plan: { workers: number } };
  expect(summary.plan.workers).toBe(2);
  await selectBackend('wasm');
  const model = await loadLayersModelFromDir(join(out, 'model'));
  const weights = new WeightLayout(model).snapshot();
  const { offline } = readCheckpoint(out);
  expect(weights.length).toBe(offline.length);
  expect(Array.from(weights)).toEqual(Array.from(offline));
  model.dispose();
}, 240_000);
