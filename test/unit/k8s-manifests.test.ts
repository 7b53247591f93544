/**
 * deploy/k8s/ without a cluster: every manifest is valid against the Kubernetes API schema (kubernetes-models),
 * and the objects describe one consistent world — the headless Service selects the Job's pods and is their
 * subdomain, MASTER_ADDR is pod 0's DNS name, the node count is the Job's completions, one worker per requested
 * GPU, the ConfigMap and the PVC the pod mounts exist, and the options file is one hwa reads.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveRunConfig } from '../../packages/cli/src/options.js';
import { launchSchema } from '../../packages/cli/src/commands/launch.js';
import { torchrunEnv } from '../../packages/cli/src/torchrun.js';
import { COMPLETION_INDEX, only, podEnv, readManifests, unknownFields, validateManifest, type IConfigMap, type IJob, type IPersistentVolumeClaim, type IService } from '../helpers/k8s.js';

const manifests = readManifests();

describe('deploy/k8s manifests', () => {
  it.each(manifests.map((m) => [`${m.file}: ${m.doc.kind} ${m.doc.metadata?.name}`, m] as const))('%s is valid against the Kubernetes API schema', (_, m) => {
    expect(validateManifest(m.doc)).toEqual([]);
  });

  it('hold no field the API does not have', () => {
    // One type-check (a few seconds) for all of them, and a copy of the Job with a field containers lack.
    const job = structuredClone(manifests.find((m) => m.doc.kind === 'Job')!);
    ((job.doc.spec as Record<string, unknown>).template as { spec: { containers: Record<string, unknown>[] } }).spec.containers[0].gpus = 1;
    const found = unknownFields([...manifests, job]);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^job\.yaml \(Job\): .*'"?gpus"?' does not exist in type 'IContainer'/);
  }, 60_000);

  it('the validator refuses what the API server would (it is not a no-op)', () => {
    const job = structuredClone(only<IJob>(manifests, 'Job'));
    (job.spec as unknown as Record<string, unknown>).completions = 'two';
    expect(validateManifest(job as never).join('\n')).toMatch(/completions/);
    const service = structuredClone(only<IService>(manifests, 'Service'));
    (service.spec!.ports![0] as unknown as Record<string, unknown>).port = 'http';
    expect(validateManifest(service as never).join('\n')).toMatch(/port/);
  });

  it('describe one world: Service, Indexed Job, GPUs, options and run folder agree', () => {
    const job = only<IJob>(manifests, 'Job');
    const service = only<IService>(manifests, 'Service');
    const configMap = only<IConfigMap>(manifests, 'ConfigMap');
    const pvc = only<IPersistentVolumeClaim>(manifests, 'PersistentVolumeClaim');
    const spec = job.spec!;
    const pod = spec.template.spec!;
    const container = pod.containers[0];

    expect(spec.completionMode).toBe('Indexed');
    expect(spec.parallelism).toBe(spec.completions);
    expect(service.spec!.clusterIP).toBe('None');
    // Kubernetes labels every pod of a Job with job-name: <job>.
    expect(service.spec!.selector).toEqual({ 'job-name': job.metadata!.name });
    expect(pod.subdomain).toBe(service.metadata!.name);
    expect(pod.restartPolicy).toBe('Never');

    const env = podEnv(job, 0);
    expect(container.env!.find((e) => e.name === 'HWA_NODE_RANK')?.valueFrom?.fieldRef?.fieldPath).toBe(COMPLETION_INDEX);
    expect(Number(env.HWA_NNODES)).toBe(spec.completions);
    expect(env.MASTER_ADDR).toBe(`${job.metadata!.name}-0.${service.metadata!.name}`);
    expect(Number(env.MASTER_PORT)).toBe(service.spec!.ports![0].port);
    expect(container.ports!.map((p) => p.containerPort)).toContain(Number(env.MASTER_PORT));
    const gpus = Number(container.resources!.limits!['nvidia.com/gpu']);
    expect(Number(env.HWA_NPROC_PER_NODE)).toBe(gpus);
    expect(env.HWA_GPUS.split(',').map(Number)).toEqual(Array.from({ length: gpus }, (_, i) => i));

    // The options file the container reads is the ConfigMap's, and the run folder is on the claimed volume.
    const args = container.args!;
    const mount = (volume: string) => container.volumeMounts!.find((v) => v.name === volume)!.mountPath;
    const options = pod.volumes!.find((v) => v.configMap)!;
    expect(options.configMap!.name).toBe(configMap.metadata!.name);
    const configFile = args[args.indexOf('--config') + 1];
    expect(configFile.startsWith(`${mount(options.name)}/`)).toBe(true);
    expect(Object.keys(configMap.data!)).toContain(configFile.slice(mount(options.name).length + 1));
    const runs = pod.volumes!.find((v) => v.persistentVolumeClaim)!;
    expect(runs.persistentVolumeClaim!.claimName).toBe(pvc.metadata!.name);
    expect(pvc.spec!.accessModes).toContain('ReadWriteMany');
    expect(args[args.indexOf('--out-dir') + 1].startsWith(`${mount(runs.name)}/`)).toBe(true);
  });

  it("the ConfigMap's options file is one hwa launch reads", () => {
    const configMap = only<IConfigMap>(manifests, 'ConfigMap');
    const dir = mkdtempSync(join(tmpdir(), 'hwa-k8s-'));
    try {
      for (const [name, text] of Object.entries(configMap.data!)) {
        writeFileSync(join(dir, name), text);
        // As main.ts resolves `hwa launch`: MASTER_ADDR and MASTER_PORT are torchrun's (torchrun.ts).
        const { env, aliases } = torchrunEnv('launch', podEnv(only<IJob>(manifests, 'Job'), 1));
        const { config } = resolveRunConfig({ schema: launchSchema, configFile: join(dir, name), env, envAliases: aliases });
        expect(config).toMatchObject({ nnodes: 2, nodeRank: 1, nprocPerNode: 1, gpus: [0], masterAddr: 'hwa-0.hwa', masterPort: 29500, joinTimeout: 900 });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
