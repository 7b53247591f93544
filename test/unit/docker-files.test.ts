/**
 * The docker files, checked without a Docker engine (none runs here or in CI): the compose files are valid
 * Compose Specification documents and describe a consistent HWA world (ranks 0..K−1 once each, one K, workers
 * pointed at the coordinator's port); the Dockerfile copies every workspace manifest before `npm ci`, copies
 * only paths that exist, uses the Node major version package.json asks for, and starts the committed `hwa`
 * launcher. test/integration/docker-topology.test.ts runs the same services as processes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DOCKER, ROOT, composeValidator, flagValue, readCompose, workerServices } from '../helpers/compose.js';

const validate = composeValidator();

describe('compose files', () => {
  it.each(['compose.yaml', 'compose.gpu.yaml', 'compose.curve.yaml'])('%s is a valid Compose Specification document', (name) => {
    expect(validate(readCompose(name))).toEqual([]);
  });

  it('the validator catches what Compose would refuse', () => {
    const broken = readCompose('compose.yaml');
    (broken.services.coordinator as Record<string, unknown>).comand = ['coordinator'];
    (broken.services['worker-0'] as Record<string, unknown>).depends_on = 'coordinator';
    expect(validate(broken)).toEqual(
      expect.arrayContaining(['/services/coordinator must NOT have additional properties', '/services/worker-0/depends_on must be array']),
    );
  });

  it('describes one world: ranks 0..K−1 once each, the same K everywhere, workers at the coordinator\'s port', () => {
    const file = readCompose('compose.yaml');
    const coordinators = Object.entries(file.services).filter(([, s]) => s.command?.[0] === 'coordinator');
    expect(coordinators).toHaveLength(1);
    const [coordinatorName, coordinator] = coordinators[0];
    const bind = flagValue(coordinator.command ?? [], '--bind') ?? '';
    const port = /^tcp:\/\/0\.0\.0\.0:(\d+)$/.exec(bind)?.[1];
    expect(port, `coordinator binds ${bind}: expected tcp://0.0.0.0:PORT`).toBeDefined();
    expect(coordinator.expose).toContain(port);

    const workers = workerServices(file);
    const k = workers.length;
    expect(k).toBeGreaterThanOrEqual(2);
    expect(workers.map(([, s]) => Number(s.environment?.HWA_RANK))).toEqual(Array.from({ length: k }, (_, r) => r));
    for (const [, s] of [...workers, coordinators[0]]) expect(s.environment?.HWA_WORLD_SIZE).toBe(String(k));
    for (const [name, s] of workers) {
      expect(s.environment?.HWA_COORDINATOR, name).toBe(`tcp://${coordinatorName}:${port}`);
      expect(s.depends_on, name).toContain(coordinatorName);
    }
    // Every process reads the same options file, so their training options hash the same.
    const configs = new Set(Object.values(file.services).map((s) => flagValue(s.command ?? [], '--config')));
    expect(configs.size).toBe(1);
    const config = [...configs][0] ?? '';
    expect(config.startsWith('/hwa/') && existsSync(ROOT + config.slice('/hwa/'.length)), `${config} is not a file of the image`).toBe(true);
    // One run folder per process in the shared volume.
    const outDirs = Object.values(file.services).map((s) => flagValue(s.command ?? [], '--out-dir'));
    expect(new Set(outDirs).size).toBe(Object.keys(file.services).length);
    for (const s of Object.values(file.services)) expect(s.volumes).toContain('runs:/runs');
  });

  it('the CURVE override gives every service the key folder', () => {
    const curve = readCompose('compose.curve.yaml');
    expect(Object.keys(curve.services).sort()).toEqual(Object.keys(readCompose('compose.yaml').services).sort());
    for (const [name, s] of Object.entries(curve.services)) {
      expect(s.environment?.HWA_CURVE_KEYS, name).toBe('/keys');
      expect(s.volumes, name).toContain('../keys:/keys:ro');
    }
  });

  it('the GPU override gives each worker its own GPU', () => {
    const gpu = readCompose('compose.gpu.yaml');
    const workers = workerServices(readCompose('compose.yaml')).map(([name]) => name);
    expect(Object.keys(gpu.services).sort()).toEqual([...workers].sort());
    const ids = workers.map((name) => JSON.stringify(gpu.services[name].deploy));
    expect(new Set(ids).size).toBe(workers.length);
    workers.forEach((name, rank) => expect(ids[rank], name).toContain(`"device_ids":["${rank}"]`));
    // …and runs them on the GPU image, built from docker/Dockerfile.gpu.
    for (const name of workers) expect(gpu.services[name], name).toMatchObject({ image: 'hwa-gpu:latest', build: { dockerfile: 'docker/Dockerfile.gpu' } });
  });
});

describe.each(['Dockerfile', 'Dockerfile.gpu'])('%s', (name) => {
  const dockerfile = readFileSync(`${DOCKER}${name}`, 'utf8');
  const lines = dockerfile.split('\n').filter((l) => !l.startsWith('#'));
  const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { workspaces: string[]; engines: { node: string } };

  it('copies every workspace manifest before npm ci, and nothing else of the packages', () => {
    const ci = lines.findIndex((l) => /^RUN npm ci\b/.test(l));
    expect(ci).toBeGreaterThan(0);
    const manifests = lines
      .slice(0, ci)
      .map((l) => /^COPY (packages\/[^/]+)\/package\.json /.exec(l)?.[1])
      .filter((x): x is string => Boolean(x));
    expect(manifests.sort()).toEqual([...pkg.workspaces].sort());
  });

  it('copies only paths that exist in the repository', () => {
    const sources = lines
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.trim().split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThan(5);
    for (const source of sources) expect(existsSync(ROOT + source), `COPY ${source}`).toBe(true);
  });

  it('uses the Node major version package.json asks for, and starts the committed hwa launcher', () => {
    const major = /(\d+)/.exec(pkg.engines.node)?.[1];
    expect(dockerfile).toMatch(new RegExp(`^ARG NODE_VERSION=${major}$`, 'm'));
    const entry = /^ENTRYPOINT \["node", "\/hwa\/(.+)"\]$/m.exec(dockerfile)?.[1] ?? '';
    expect(existsSync(ROOT + entry), entry).toBe(true);
  });

  it('runs its roles as a user other than root, who owns the /runs volume', () => {
    const run = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const user = /^USER (\S+)$/m.exec(run)?.[1];
    expect(user).toBeTruthy();
    expect(user).not.toMatch(/^(root|0)$/);
    expect(run).toContain(`chown ${user}:${user} /runs`);
    expect(run.indexOf('\nUSER ')).toBeLessThan(run.indexOf('\nVOLUME'));
  });

  it('keeps host build output and data out of the build context', () => {
    const ignore = readFileSync(`${DOCKER}${name}.dockerignore`, 'utf8').split('\n');
    for (const pattern of ['**/node_modules', '**/dist', 'runs', '.git']) expect(ignore).toContain(pattern);
  });
});

describe('Dockerfile.gpu', () => {
  const dockerfile = readFileSync(`${DOCKER}Dockerfile.gpu`, 'utf8');

  it('builds on a CUDA 12 image and builds the GPU backend there, keeping its libraries in the run stage', () => {
    expect(dockerfile).toMatch(/^ARG CUDA_IMAGE=nvidia\/cuda:12\.[\d.]+-(base|runtime)-ubuntu[\d.]+$/m);
    expect(dockerfile.match(/^FROM \$\{CUDA_IMAGE\}/gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^RUN .*npm run setup:native -- --gpu/m);
    // setup:native links the addon's deps/ to the cache folder: the run stage needs that folder at the same path.
    const cache = /^ENV HWA_NATIVE_CACHE=(\S+)$/m.exec(dockerfile)?.[1];
    expect(cache).toBeTruthy();
    expect(dockerfile).toContain(`COPY --from=build ${cache} ${cache}`);
    // node-gyp builds against Node's headers, which the CUDA image lacks.
    expect(dockerfile).toMatch(/^COPY --from=node \/usr\/local\/include\/node /m);
  });
});
