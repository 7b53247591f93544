/**
 * The docker files for real: docker/Dockerfile is built unchanged with podman (on stand-in base images, since no
 * registry can be reached: scripts/containers-local.sh) and docker/compose.yaml runs with docker-compose through
 * podman's Docker API, as a Docker user would run it: a coordinator and two workers on the compose network over
 * tcp train to a finished run whose exported model is read back from the `runs` volume and scored here. Then the
 * same with the CURVE override, and with a worker killed mid-run (dropped; the run goes on).
 *
 * Needs root, podman, docker-compose and the base images (`bash scripts/containers-local.sh up`); skips with
 * the reason where they are missing, and fails instead where HWA_REQUIRE_CONTAINERS=1 (CI).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateRange, loadDataset, loadLayersModelFromDir, selectBackend } from '@hwa/engine';
import { MAIN } from '../helpers/cli.js';
import { ROOT } from '../helpers/compose.js';

const SOCKET = '/run/podman/podman.sock';
const env = { ...process.env, DOCKER_HOST: `unix://${SOCKET}`, COMPOSE_HTTP_TIMEOUT: '300' };
const project = `hwaci${process.pid}`;
const work = mkdtempSync(join(tmpdir(), 'hwa-containers-'));

/** Why containers cannot run here, or null. */
function missing(): string | null {
  for (const tool of ['podman', 'docker-compose'])
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0) return `${tool} is not installed (bash scripts/containers-local.sh up)`;
  if (!existsSync(SOCKET)) return `no podman service on ${SOCKET} (bash scripts/containers-local.sh up)`;
  // A service that died leaves its socket file behind: ask it.
  if (spawnSync('curl', ['-fsS', '--max-time', '10', '--unix-socket', SOCKET, 'http://d/_ping'], { stdio: 'ignore' }).status !== 0)
    return `the podman service on ${SOCKET} does not answer (bash scripts/containers-local.sh up)`;
  if (spawnSync('podman', ['image', 'exists', 'docker.io/library/node:20-bookworm']).status !== 0) return 'no node:20-bookworm base image (bash scripts/containers-local.sh up)';
  return null;
}

function sh(command: string, args: string[], timeout = 300_000): string {
  return execFileSync(command, args, { env, cwd: work, encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** docker-compose on the copied compose files, with the given overrides (relative to work/docker). */
function compose(files: string[], ...args: string[]): string {
  return sh('docker-compose', ['-p', project, ...files.flatMap((f) => ['-f', join(work, 'docker', f)]), ...args]);
}

/** The container's exit code once it has stopped. */
function waitExit(service: string, timeoutMs = 300_000): number {
  return Number(sh('podman', ['wait', `${project}_${service}_1`], timeoutMs).trim());
}

function logs(service: string): string {
  const run = spawnSync('podman', ['logs', `${project}_${service}_1`], { encoding: 'utf8' });
  return `${run.stdout}${run.stderr}`;
}

/** Rounds the coordinator has recorded in the run's metrics.jsonl so far. */
function roundsDone(): number {
  const file = join(runsVolume(), 'coordinator', 'metrics.jsonl');
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"kind":"round"')).length : 0;
}

/** Where the compose project's `runs` volume lives on this machine. */
function runsVolume(): string {
  return sh('podman', ['volume', 'inspect', '--format', '{{.Mountpoint}}', `${project}_runs`]).trim();
}

const reason = missing();
if (reason) console.warn(`skipping the container tests: ${reason}`);
const required = process.env.HWA_REQUIRE_CONTAINERS === '1';

describe.runIf(reason == null || required)('docker/Dockerfile and docker/compose.yaml, built and run with podman', () => {
  const timings: Record<string, number> = {};
  const timed = <T>(step: string, body: () => T): T => {
    const t0 = Date.now();
    try {
      return body();
    } finally {
      timings[step] = Math.round((Date.now() - t0) / 1000);
    }
  };

  beforeAll(async () => {
    if (reason) throw new Error(`containers required (HWA_REQUIRE_CONTAINERS=1) but unavailable: ${reason}`);
    await selectBackend('wasm');
    // The compose files as users have them, beside a keys folder of this test's own (compose.curve.yaml mounts ../keys).
    cpSync(join(ROOT, 'docker'), join(work, 'docker'), { recursive: true });
    // A short job: the demo's options with fewer epochs, for every service alike (so their hashes agree).
    writeFileSync(
      join(work, 'docker', 'short.yaml'),
      ['coordinator', 'worker-0', 'worker-1']
        .map((s) => `  ${s}:\n    environment:\n      HWA_EPOCHS: "0.3"\n      HWA_PROGRESS_TIMEOUT: "30"\n`)
        .join('')
        .replace(/^/, 'services:\n'),
    );
    timed('image build', () => execFileSync('podman', ['build', '--pull=never', '-f', 'docker/Dockerfile', '-t', 'hwa:latest', '.'], { cwd: ROOT, env, stdio: 'ignore', timeout: 900_000 }));
    const bytes = Number(sh('podman', ['image', 'inspect', '--format', '{{.Size}}', 'hwa:latest']).trim());
    console.log(`hwa image: ${(bytes / 1e6).toFixed(0)} MB, built in ${timings['image build']} s`);
  }, 900_000);

  afterAll(() => {
    spawnSync('docker-compose', ['-p', project, '-f', join(work, 'docker', 'compose.yaml'), 'down', '-v', '--timeout', '5'], { env, cwd: work, stdio: 'ignore' });
    rmSync(work, { recursive: true, force: true });
    // Each build of changed sources leaves the previous image's layers behind, untagged: drop them.
    spawnSync('podman', ['image', 'prune', '-f'], { stdio: 'ignore' });
    console.log(`container steps (s): ${JSON.stringify(timings)}`);
  }, 300_000);

  /** Runs the compose world to the end and checks the exported model against the run's own report. */
  async function runToEnd(label: string, files: string[]): Promise<string> {
    timed(label, () => {
      compose(files, 'up', '-d');
      expect(waitExit('coordinator'), logs('coordinator')).toBe(0);
      for (const worker of ['worker-0', 'worker-1']) expect(waitExit(worker), logs(worker)).toBe(0);
    });
    const runs = runsVolume();
    const run = JSON.parse(readFileSync(join(runs, 'coordinator', 'run.json'), 'utf8')) as { evals: { offline: { accuracy: number } }[] };
    const reported = run.evals.at(-1)!.offline.accuracy;
    expect(reported).toBeGreaterThan(0.9);
    const model = await loadLayersModelFromDir(join(runs, 'coordinator', 'model'));
    const data = await loadDataset('mnist', {});
    const tally = evaluateRange(model, data.test);
    expect(Math.abs(tally.correct - reported * tally.count)).toBeLessThanOrEqual(1);
    model.dispose();
    const coordinatorLog = logs('coordinator');
    compose(files, 'down', '-v', '--timeout', '5');
    return coordinatorLog;
  }

  it('a coordinator and two worker containers train over tcp to an exported model that scores what they report', async () => {
    const log = await runToEnd('compose run', ['compose.yaml', 'short.yaml']);
    expect(log).toMatch(/worker 1 joined|all 2 workers/);
  }, 600_000);

  it('the CURVE override encrypts the same run with keys from `hwa keys`', async () => {
    execFileSync(process.execPath, [MAIN, 'keys', '--dir', join(work, 'keys'), '--workers', '2'], { stdio: 'ignore' });
    // The image's user (uid 10001) reads the keys; secret files are 0600, so they must belong to it, as README says.
    sh('chown', ['-R', '10001:10001', join(work, 'keys')]);
    const log = await runToEnd('compose run, CURVE', ['compose.yaml', 'short.yaml', 'compose.curve.yaml']);
    expect(log).toMatch(/CURVE/i);
  }, 600_000);

  it('docker/Dockerfile.gpu builds the same way up to the step that needs the GPU wheels', () => {
    const build = timed('GPU image build (to the wheel step)', () =>
      spawnSync('podman', ['build', '--pull=never', '-f', 'docker/Dockerfile.gpu', '-t', 'hwa-gpu:latest', '.'], { cwd: ROOT, env, encoding: 'utf8', timeout: 900_000 }),
    );
    const out = `${build.stdout}${build.stderr}`;
    // Node copied in, system packages, npm ci and the TypeScript build all done in the CUDA-based stage…
    expect(out).toMatch(/STEP \d+\/\d+: RUN npm ci[\s\S]*STEP \d+\/\d+: RUN npm run build[\s\S]*STEP \d+\/\d+: RUN npm run setup:native -- --gpu/);
    // …then pip: a machine that reaches the GPU TensorFlow wheel builds the whole image; this one says why not.
    if (build.status !== 0) expect(out).toMatch(/hwa: pip could not download tensorflow==2\.21\.0: /);
  }, 900_000);

  it('a worker container killed mid-run is dropped after --heartbeat-timeout, and the run completes without it', () => {
    timed('compose run, worker killed', () => {
      compose(['compose.yaml', 'short.yaml'], 'up', '-d');
      const deadline = Date.now() + 240_000;
      while (roundsDone() < 3 && Date.now() < deadline) spawnSync('sleep', ['1']);
      sh('podman', ['kill', `${project}_worker-1_1`]);
      const code = waitExit('coordinator');
      const log = logs('coordinator');
      // A standalone coordinator's default is --on-worker-failure continue.
      expect(code, log).toBe(0);
      expect(log).toMatch(/dropped worker 1 from the run in round \d+: silent for/);
      expect(existsSync(join(runsVolume(), 'coordinator', 'model', 'model.json'))).toBe(true);
    });
    compose(['compose.yaml', 'short.yaml'], 'down', '-v', '--timeout', '5');
  }, 600_000);
});
