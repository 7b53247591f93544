/**
 * The CLI as a user meets it: every command has --help, and every bad input is one line naming the problem
 * (never a stack trace) with a non-zero exit code.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAll, runHwa } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'hwa-cli-'));
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function hwa(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runHwa(args, env).done;
}

/** The last non-empty line (the one the user reads). */
const lastLine = (text: string) => text.trim().split('\n').at(-1) ?? '';
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);

describe('help', () => {
  it.each(['--help', 'train --help', 'coordinator --help', 'worker --help', 'data download --help'])(
    'hwa %s exits 0 and describes the options',
    async (args) => {
      const { code, output } = await hwa(args.split(' '));
      expect(code).toBe(0);
      expect(output).toMatch(/Usage: hwa/);
    },
  );

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
