/**
 * docker/compose.yaml's services run as plain processes over loopback tcp (no Docker engine here): each
 * service's command and environment exactly as the file gives them, with only what a container would provide
 * mapped to this machine — /hwa/ is the repository, /runs/ a temp folder, the service name `coordinator`
 * 127.0.0.1 and its port a free one. The same HWA_* variables shorten the job in every process alike (so
 * their training options still hash the same). The run must finish with an exported model.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, runHwa } from '../helpers/cli.js';
import { ROOT, readCompose } from '../helpers/compose.js';

const runs = mkdtempSync(join(tmpdir(), 'hwa-compose-'));
afterEach(killAll);
afterAll(() => rmSync(runs, { recursive: true, force: true }));

/** The same for every process: a short job (HWA_* env overrides the config file). */
const SHORT = { HWA_EPOCHS: '0.05', HWA_TEST_LIMIT: '500', HWA_PROGRESS: 'off' };

it('the compose services, run as processes over tcp, train and export the model', async () => {
  const file = readCompose('compose.yaml');
  const port = await freePort();
  const map = (arg: string) =>
    arg
      .replace(/^\/hwa\//, ROOT)
      .replace(/^\/runs\//, `${runs}/`)
      .replace(/^tcp:\/\/0\.0\.0\.0:\d+$/, `tcp://127.0.0.1:${port}`)
      .replace(/^tcp:\/\/coordinator:\d+$/, `tcp://127.0.0.1:${port}`);
  const processes = Object.entries(file.services).map(([name, service]) => {
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, map(String(v))]));
    return { name, run: runHwa((service.command ?? []).map(map), { ...env, ...SHORT }) };
  });
  const results = await Promise.all(processes.map(async ({ name, run }) => ({ name, ...(await run.done) })));
  for (const r of results) expect(r.code, `${r.name}:\n${r.output}`).toBe(0);

  const coordinator = join(runs, 'coordinator');
  expect(existsSync(join(coordinator, 'model', 'model.json'))).toBe(true);
  const summary = JSON.parse(readFileSync(join(coordinator, 'run.json'), 'utf8')) as { plan: { workers: number } };
  expect(summary.plan.workers).toBe(2);
  const coordinatorLog = results.find((r) => r.name === 'coordinator')?.output ?? '';
  expect(coordinatorLog).toMatch(/worker 0 joined/);
  expect(coordinatorLog).toMatch(/worker 1 joined/);
  // Standalone workers keep their own log in their --out-dir (the volume), as `docker logs` would show it.
  for (const rank of [0, 1]) {
    const log = readFileSync(join(runs, `worker-${rank}`, `worker-${rank}.log`), 'utf8');
    expect(log).toMatch(/"event":"worker\.done"/);
  }
});
