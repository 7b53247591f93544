/**
 * The CLI as a user meets it: every command has --help, and every bad input is one line naming the problem
 * (never a stack trace) with a non-zero exit code.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { hasTerminalRunner, killAll, runHwa, runHwaOnTerminal } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'hwa-cli-'));
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function hwa(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runHwa(args, env).done;
}

/** The last non-empty line (the one the user reads). */
const lastLine = (text: string) => text.trim().split('\n').at(-1) ?? '';
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);
/** The flags a command's --help offers. */
const flagsOf = (help: string) => [...help.matchAll(/^\s+(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]);

describe('help', () => {
  it.each(['--help', 'train --help', 'coordinator --help', 'worker --help', 'data download --help'])(
    'hwa %s exits 0 and describes the options',
    async (args) => {
      const { code, output } = await hwa(args.split(' '));
      expect(code).toBe(0);
      expect(output).toMatch(/Usage: hwa/);
    },
  );

  it('hwa --version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../packages/cli/package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const { code, output } = await hwa([flag]);
      expect(code).toBe(0);
      expect(output.trim()).toBe(version);
    }
  });

  it('worker --help offers only what a worker reads, each option with one env name', async () => {
    const { output } = await hwa(['worker', '--help']);
    const flags = flagsOf(output);
    for (const flag of ['--connect', '--rank', '--receive-timeout', '--sync-period', '--backend', '--out-dir', '--curve-keys']) expect(flags).toContain(flag);
    for (const flag of ['--in-process', '--gpus', '--progress', '--progress-every', '--json', '--transport', '--resume', '--progress-timeout', '--tensorboard'])
      expect(flags).not.toContain(flag);
    expect(output).toMatch(/env\s+HWA_COORDINATOR\)/);
    expect(output).not.toContain('HWA_CONNECT');
    expect(output).toMatch(/env\s+HWA_WORLD_SIZE\)/);
    expect(output).not.toContain('HWA_WORKERS');
    expect(output.match(/\benv\s+HWA_\w+/g)?.length).toBe(flags.filter((f) => !['--help', '--config', '--dry-run'].includes(f) && !f.startsWith('--no-')).length);
  });

  it('coordinator --help offers no launcher options', async () => {
    const flags = flagsOf((await hwa(['coordinator', '--help'])).output);
    for (const flag of ['--bind', '--progress', '--progress-every', '--json', '--resume', '--transport']) expect(flags).toContain(flag);
    for (const flag of ['--in-process', '--gpus', '--connect', '--rank']) expect(flags).not.toContain(flag);
  });

  it('train --help lists every schema option with its env variable', async () => {
    const { output } = await hwa(['train', '--help']);
    for (const flag of ['--sync-period', '--window', '--restart', '--momentum-sync', '--bn', '--data-split', '--backend', '--gpus', '--wire-dtype'])
      expect(output).toContain(flag);
    expect(output).toContain('HWA_SYNC_PERIOD');
  });
});

describe('bad input is one clear line', () => {
  it.each([
    [['train', '--mode', 'hwx'], /--mode: 'hwx' is not one of hwa, sgd, localsgd, swa, lawa, ema/],
    [['train', '--sync-period', '0'], /--sync-period: must be a whole number ≥ 1, got 0/],
    [['train', '--lr', 'abc'], /--lr: 'abc' is not a number/],
    [['train', '--mode', 'sgd', '--workers', '3'], /--workers 3 does not fit --mode sgd/],
    [['train', '--workers', '3', '--gpus', '0,1'], /--workers 3 and --gpus 0,1 disagree/],
    [['train', '--config', join(dir, 'missing.yaml')], /missing\.yaml/],
    [['train', '--config', join(dir, 'config.txt')], /\.yaml, \.yml or \.json|config\.txt/],
  ])('%j', async (args, message) => {
    writeFileSync(join(dir, 'config.txt'), 'x');
    const { code, output } = await hwa(args);
    expect(code).toBe(2);
    expect(lastLine(output)).toMatch(message);
    expect(lastLine(output)).toMatch(/^hwa: /);
    noStack(output);
  });

  it('a bad env variable is named as such', async () => {
    const { code, output } = await hwa(['train', '--dry-run'], { HWA_SYNC_PERIOD: '-1' });
    expect(code).toBe(2);
    expect(output).toMatch(/HWA_SYNC_PERIOD: must be a whole number ≥ 1, got -1/);
  });

  it('--on-worker-failure respawn is refused where no worker is started here, naming what can be done', async () => {
    for (const role of ['coordinator', 'launch']) {
      const { code, output } = await hwa([role, '--on-worker-failure', 'respawn', '--dry-run']);
      expect(code).toBe(2);
      expect(output).toMatch(new RegExp(`hwa: --on-worker-failure respawn needs hwa train, which starts the workers itself; hwa ${role} can continue`));
      noStack(output);
    }
    const { code } = await hwa(['train', '--on-worker-failure', 'respawn', '--dry-run']);
    expect(code).toBe(0);
  });

  it('an unknown key in a config file names the file and suggests the right key', async () => {
    writeFileSync(join(dir, 'bad.yaml'), 'mode: hwa\nsync-perod: 4\n');
    const { code, output } = await hwa(['train', '--config', join(dir, 'bad.yaml')]);
    expect(code).toBe(2);
    expect(output).toMatch(/unknown option 'sync-perod' in .*bad\.yaml \(line 2\); did you mean 'sync-period'\?/);
  });

  it('an unavailable backend says which and why', async () => {
    const { code, output } = await hwa(['train', '--backend', 'tensorflow-gpu', '--dataset', 'synthetic', '--out-dir', join(dir, 'gpu')]);
    expect(code).toBe(1);
    expect(lastLine(output)).toMatch(/^hwa: .*tensorflow-gpu/);
    noStack(output);
  });

  it('download without network fails with the host named and what to do', async () => {
    // A mirror on a loopback port nothing listens on, so the test never leaves this machine.
    const { code, output } = await hwa(['data', 'download', 'mnist', '--dir', join(dir, 'mnist'), '--mirror', 'http://127.0.0.1:9/']);
    expect(code).toBe(1);
    expect(output).toMatch(/could not reach/);
    noStack(output);
  });

  it('--dry-run prints the resolved options with their sources', async () => {
    const { code, output } = await hwa(['train', '--dry-run', '--window', '5'], { HWA_SYNC_PERIOD: '8' });
    expect(code).toBe(0);
    expect(output).toMatch(/window\s+5\s+flag/);
    expect(output).toMatch(/sync-period\s+8\s+env HWA_SYNC_PERIOD/);
    expect(output).toMatch(/mode\s+hwa\s+default/);
  });
});

describe('usage errors are one line', () => {
  it('an unknown flag names it and the nearest one, without the help', async () => {
    const { code, output } = await hwa(['train', '--sync-perod', '4']);
    expect(code).toBe(2);
    expect(output.trim()).toBe("hwa: unknown option '--sync-perod'; did you mean --sync-period?");
  });

  it('a flag of another role is named as ignored there, so one list of flags can serve every role', async () => {
    const { code, output } = await hwa(['worker', '--gpus', '0,1', '--progress', 'off', '--rank', '0', '--connect', 'tcp://127.0.0.1:9', '--dry-run']);
    expect(code).toBe(0);
    expect(output).toContain('hwa: --gpus, --progress mean nothing to hwa worker; ignored\n');
    const single = await hwa(['coordinator', '--in-process', '--dry-run']);
    expect(single.code).toBe(0);
    expect(single.output).toContain('hwa: --in-process means nothing to hwa coordinator; ignored\n');
  });

  it('an unknown command suggests the nearest one', async () => {
    const { code, output } = await hwa(['trian']);
    expect(code).toBe(2);
    expect(output.trim()).toBe("hwa: unknown command 'trian'; did you mean train?");
  });

  it("--gpus '' is refused, not taken as no GPUs", async () => {
    const { code, output } = await hwa(['train', '--gpus', '', '--dry-run']);
    expect(code).toBe(2);
    expect(output.trim()).toBe("hwa: --gpus: '' is an empty list; give values such as 0,1, or leave --gpus out");
  });
});

describe('--dry-run runs the checks between options', () => {
  it.each([
    [['train', '--mode', 'sgd', '--workers', '4'], /^hwa: --workers 4 does not fit --mode sgd/],
    [['train', '--gpus', '0,1', '--workers', '3'], /^hwa: --workers 3 and --gpus 0,1 disagree/],
    [['train', '--in-process', '--resume', 'somewhere'], /^hwa: --resume continues a multi-process run/],
    [['worker', '--rank', '2', '--workers', '2', '--connect', 'tcp://127.0.0.1:9'], /^hwa: --rank 2 is out of range for 2 workers/],
    [['coordinator', '--mode', 'ema', '--workers', '2'], /^hwa: --workers 2 does not fit --mode ema/],
  ])('%j fails the dry run with the real run\'s line', async (args, message) => {
    const out = join(dir, `dry-${args.join('-').replace(/\W/g, '')}`);
    const dry = await hwa([...args, '--dry-run', '--out-dir', out]);
    expect(dry.code, dry.output).toBe(2);
    expect(dry.output.trim()).toMatch(message);
    const real = await hwa([...args, '--out-dir', out, '--dataset', 'synthetic', '--backend', 'wasm']);
    expect(real.code, real.output).toBe(2);
    expect(lastLine(real.output)).toBe(dry.output.trim());
    expect(existsSync(out), 'no run folder for a run that cannot start').toBe(false);
  });

  it('--dry-run --json prints the resolved options as JSON', async () => {
    const { code, output } = await hwa(['train', '--dry-run', '--json', '--gpus', '0,1']);
    expect(code).toBe(0);
    const parsed = JSON.parse(output) as { config: { workers: number; gpus: number[] }; sources: Record<string, string> };
    expect(parsed.config).toMatchObject({ workers: 2, gpus: [0, 1] });
    expect(parsed.sources.gpus).toBe('flag');
  });
});

describe.skipIf(!hasTerminalRunner())('on a terminal', () => {
  it('a standalone worker prints pretty log lines, not JSON', async () => {
    const run = runHwaOnTerminal(['worker', '--connect', 'tcp://127.0.0.1:9', '--rank', '0', '--workers', '2', '--dataset', 'synthetic', '--backend', 'wasm', '--receive-timeout', '1']);
    const { output } = await run.done;
    expect(output).toMatch(/INFO.*worker 0 started, pid \d+/);
    expect(output).toMatch(/hwa: worker 0: no message from the coordinator/);
    expect(output).not.toMatch(/\{"level":/);
  }, 60_000);
});
