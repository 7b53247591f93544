/**
 * deploy/k8s/'s Indexed Job run as processes over loopback tcp (no cluster here), like docker-topology.test.ts
 * does for compose: one process per completion index with the pod's own args and environment — the index
 * where the downward API puts it — and only what the cluster would provide mapped to this machine: the
 * ConfigMap's files in a folder for its mount, the PVC a temp folder shared by all "pods", pod 0's DNS name
 * (MASTER_ADDR) 127.0.0.1 and the master port a free one. The same HWA_* variables shorten the job in every
 * process alike. The run must finish with one exported model in the shared run folder.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, runHwa } from '../helpers/cli.js';
import { only, podEnv, readManifests, type IConfigMap, type IJob } from '../helpers/k8s.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-k8s-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The same for every pod: a short job on the CPU (HWA_* env overrides the options file). */
const SHORT = {
  HWA_DATASET: 'synthetic',
  HWA_TRAIN_LIMIT: '192',
  HWA_TEST_LIMIT: '64',
  HWA_BATCH_SIZE: '16',
  HWA_EPOCHS: '1',
  HWA_BACKEND: 'wasm',
  HWA_PROGRESS: 'off',
};

it('the Indexed Job, run as one process per completion index over tcp, trains and exports the model', async () => {
  const manifests = readManifests();
  const job = only<IJob>(manifests, 'Job');
  const configMap = only<IConfigMap>(manifests, 'ConfigMap');
  const container = job.spec!.template.spec!.containers[0];
  const volumes = job.spec!.template.spec!.volumes!;
  // Each mount of the pod becomes a folder here: the ConfigMap's files in one, the PVC (shared by all pods) another.
  const mounts = container.volumeMounts!.map((m) => {
    const local = join(root, m.name);
    mkdirSync(local, { recursive: true });
    const volume = volumes.find((v) => v.name === m.name)!;
    if (volume.configMap) for (const [file, text] of Object.entries(configMap.data!)) writeFileSync(join(local, file), text);
    return { path: m.mountPath, local };
  });
  const port = await freePort();
  const map = (text: string) => {
    const mount = mounts.find((m) => text === m.path || text.startsWith(`${m.path}/`));
    return mount ? mount.local + text.slice(mount.path.length) : text;
  };
  const pods = Array.from({ length: job.spec!.completions! }, (_, index) => {
    const env = podEnv(job, index);
    const local = { ...env, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
    // The image's entrypoint is hwa (docker/Dockerfile*): the args are hwa's.
    expect(container.command).toBeUndefined();
    return { index, run: runHwa(container.args!.map(map), { ...local, ...SHORT }) };
  });
  const results = await Promise.all(pods.map(async ({ index, run }) => ({ index, ...(await run.done) })));
  for (const r of results) expect(r.code, `pod ${r.index}:\n${r.output}`).toBe(0);

  const args = container.args!;
  const out = map(args[args.indexOf('--out-dir') + 1]);
  expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
  const summary = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { plan: { workers: number } };
  expect(summary.plan.workers).toBe(job.spec!.completions! * Number(podEnv(job, 0).HWA_NPROC_PER_NODE));
  expect(results[0].output).toMatch(/worker 1 joined/);
  expect(results[1].output).toMatch(/node 1: worker 1 started/);
  for (const rank of [0, 1]) expect(readFileSync(join(out, `worker-${rank}.log`), 'utf8')).toMatch(/"event":"worker\.done"/);
}, 120_000);
