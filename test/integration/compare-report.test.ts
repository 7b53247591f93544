/**
 * `hwa compare` from the real CLI: 2 modes × 2 seeds through `hwa train`, stopped and resumed; its results
 * table checked against the runs' own run.json; report.html of the comparison and of a run opened in headless
 * Chromium (every plot drawn with the runs' data, no console error); `hwa report --png`; and the `run.failed`
 * event of a run that fails.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { trainingPart, type RunConfig } from '@hwa/core';
import { withReportPage } from '../../packages/cli/src/report-png.js';
import { chromium, chromiumSkipReason, drawnPlots } from '../helpers/chromium.js';
import { killAll, readJsonLines, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-compare-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// 256 images, batch 16: 16 steps an epoch; H=2: 8 rounds; an evaluation every 4 steps: 4 of them.
const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--eval-every', '0.25epoch', '--progress', 'off'];
const EVALS = 4;
const dir = join(root, 'cmp');
const RUNS = ['sgd-seed0', 'hwa-seed0', 'sgd-seed1', 'hwa-seed1'];

/** The markdown table's rows (cells trimmed), by mode. */
function tableRows(stdout: string): Map<string, string[]> {
  const rows = stdout.split('\n').filter((l) => /^\| (sgd|hwa) /.test(l));
  return new Map(rows.map((l) => l.split('|').slice(1, -1).map((c) => c.trim())).map((cells) => [cells[0], cells]));
}

/** mean ± sample std in percent, as the table prints it. */
function percentSpread(values: number[]): string {
  const mean = values.reduce((a, x) => a + x, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, x) => a + (x - mean) ** 2, 0) / (values.length - 1));
  return `${(mean * 100).toFixed(2)} ± ${(std * 100).toFixed(2)}`;
}

describe('hwa compare', () => {
  it('runs every mode for every seed through hwa train, resumes where it stopped, and prints the results table', async () => {
    const first = runHwa(['compare', '--modes', 'sgd,hwa', '--seeds', '2', ...job, '--out-dir', dir, '--target', '0.5']);
    await first.waitFor(/run 2 of 4: hwa-seed0 starts/, 120_000);
    first.child.kill('SIGTERM');
    const stopped = await first.done;
    expect(stopped.code, stopped.output).toBe(130);
    expect(stopped.output).toContain(`during hwa-seed0 (run 2 of 4); continue with: hwa compare --resume ${dir}`);
    expect(existsSync(join(dir, 'sgd-seed0', 'run.json'))).toBe(true);
    expect(existsSync(join(dir, 'hwa-seed0', 'run.json'))).toBe(false);
    const keptAt = statSync(join(dir, 'sgd-seed0', 'run.json')).mtimeMs;

    const conflict = await runHwa(['compare', '--resume', dir, '--epochs', '2']).done;
    expect(conflict.code).toBe(2);
    expect(conflict.output).toMatch(/--resume takes the comparison's options from .*compare\.json; these differ: epochs: 2 ≠ saved 1/);

    const second = await runHwa(['compare', '--resume', dir, '--progress', 'off']).done;
    expect(second.code, second.output).toBe(0);
    expect(second.output).toContain('run 1 of 4: sgd-seed0 finished before, kept');
    expect(statSync(join(dir, 'sgd-seed0', 'run.json')).mtimeMs).toBe(keptAt);

    // Every run finished in its own folder, with the same options but for mode, seed and K.
    const configs = RUNS.map((r) => JSON.parse(readFileSync(join(dir, r, 'config.json'), 'utf8')) as RunConfig);
    expect(configs.map((c) => [c.mode, c.seed, c.workers])).toEqual([['sgd', 0, 1], ['hwa', 0, 2], ['sgd', 1, 1], ['hwa', 1, 2]]);
    const shared = (c: RunConfig) => ({ ...trainingPart(c), mode: undefined, seed: undefined, workers: undefined });
    for (const c of configs) expect(shared(c)).toEqual(shared(configs[0]));

    // The table against the runs' own records: final offline accuracy, mean ± std over the two seeds.
    const runJson = (r: string) => JSON.parse(readFileSync(join(dir, r, 'run.json'), 'utf8')) as { evals: { offline: { accuracy: number } }[]; totals: { samples: number } };
    const rows = tableRows(second.stdout);
    for (const mode of ['sgd', 'hwa']) {
      const finals = [0, 1].map((s) => runJson(`${mode}-seed${s}`).evals.at(-1)!.offline.accuracy);
      expect(rows.get(mode)?.[3], second.stdout).toBe(percentSpread(finals));
      expect(rows.get(mode)?.[7]).toBe(`${runJson(`${mode}-seed0`).totals.samples} ± 0`);
    }
    expect(rows.get('hwa')?.[1]).toBe('2');
    expect(readFileSync(join(dir, 'results.md'), 'utf8')).toContain(second.stdout.split('\n').find((l) => l.startsWith('| hwa'))!);
    for (const r of RUNS) expect(existsSync(join(dir, r, 'report.html')), r).toBe(true);
    expect(existsSync(join(dir, 'report.html'))).toBe(true);
  }, 300_000);

  const skip = chromiumSkipReason();
  if (skip) console.log(`skipping the Chromium tests of report.html: ${skip}`);

  describe.skipIf(skip !== null)('report.html in headless Chromium', () => {
    it('draws every plot of the comparison with the runs\' data, offline, with no console error', async () => {
      const plots = await withReportPage(join(dir, 'report.html'), chromium, async (page, problems) => {
        const drawn = await drawnPlots(page);
        expect(problems.errors).toEqual([]);
        return drawn;
      });
      expect(plots.map((p) => p.name)).toEqual(['accuracy-epoch', 'accuracy-wall', 'loss-epoch', 'loss-wall', 'hwa-online-offline', 'train-loss', 'lr', 'comm-share']);
      for (const p of plots) {
        expect(p.lines.length, p.name).toBeGreaterThan(0);
        for (const line of p.lines) expect(line.points, `${p.name} ${line.series}`).toBeGreaterThan(1);
      }
      // One line per mode, one point per evaluation in the runs' metrics.jsonl.
      const evals = readJsonLines(join(dir, 'hwa-seed0', 'metrics.jsonl')).filter((l) => l.kind === 'eval').length;
      expect(evals).toBe(EVALS);
      const accuracy = plots.find((p) => p.name === 'accuracy-epoch')!;
      expect(accuracy.lines).toEqual([{ series: 'sgd', points: EVALS }, { series: 'hwa', points: EVALS }]);
      const rounds = readJsonLines(join(dir, 'sgd-seed1', 'metrics.jsonl')).filter((l) => l.kind === 'round').length;
      expect(plots.find((p) => p.name === 'train-loss')!.lines.map((l) => l.points)).toEqual([rounds, rounds]);
    }, 120_000);

    it('draws a run\'s own report: online and offline model, training loss, lr, communication share', async () => {
      const plots = await withReportPage(join(dir, 'hwa-seed1', 'report.html'), chromium, async (page, problems) => {
        const drawn = await drawnPlots(page);
        expect(problems.errors).toEqual([]);
        return drawn;
      });
      expect(plots.map((p) => p.name)).toEqual(['accuracy-epoch', 'accuracy-wall', 'loss-epoch', 'loss-wall', 'train-loss', 'lr', 'comm-share']);
      expect(plots[0].lines).toEqual([{ series: 'online (θ̄)', points: EVALS }, { series: 'offline (θ_HWA)', points: EVALS }]);
    }, 120_000);

    it('hwa report DIR --png writes the page again and one PNG per plot', async () => {
      rmSync(join(dir, 'report.html'));
      const out = join(root, 'png');
      const run = await runHwa(['report', dir, '--png', out]).done;
      expect(run.code, run.output).toBe(0);
      expect(run.stdout).toMatch(/^\| mode /m);
      expect(existsSync(join(dir, 'report.html'))).toBe(true);
      const files = readdirSync(out).sort();
      expect(files).toEqual(['accuracy-epoch.png', 'accuracy-wall.png', 'comm-share.png', 'hwa-online-offline.png', 'loss-epoch.png', 'loss-wall.png', 'lr.png', 'train-loss.png']);
      for (const f of files) {
        const png = readFileSync(join(out, f));
        expect(png.subarray(1, 4).toString('latin1'), f).toBe('PNG');
        // IHDR width and height: the plot at scale 2, some hundreds of pixels each way.
        expect(png.readUInt32BE(16), f).toBeGreaterThan(400);
        expect(png.readUInt32BE(20), f).toBeGreaterThan(300);
      }
    }, 120_000);
  });
});

describe('hwa report', () => {
  it('names a folder that is neither a run nor a comparison', async () => {
    const empty = join(root, 'empty');
    mkdirSync(empty, { recursive: true });
    const run = await runHwa(['report', empty]).done;
    expect(run.code).toBe(2);
    expect(run.output.trim()).toBe(`hwa: ${empty} is neither a run folder (it has no config.json) nor a comparison folder (no compare.json)`);
  });
});

describe('run.failed', () => {
  const events = (stdout: string) => stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);

  it('ends --json output when a worker dies mid-run (--on-worker-failure abort), with the last round, and the run keeps a report', async () => {
    const out = join(root, 'failed');
    const run = runHwa(['train', ...job, '--epochs', '50', '--eval-every', '8', '--workers', '2', '--json', '--on-worker-failure', 'abort', '--out-dir', out]);
    const [, pid] = await run.waitFor(/worker 1 started, pid (\d+)/);
    await run.waitFor(/"event":"round"/);
    process.kill(Number(pid), 'SIGKILL');
    const done = await run.done;
    expect(done.code).toBe(1);
    const last = events(done.stdout).at(-1)!;
    expect(last).toMatchObject({ event: 'run.failed', dir: out, exitCode: 1 });
    expect(last.error).toMatch(/^worker 1 \(pid \d+\) exited with signal SIGKILL/);
    expect(last.round).toBeGreaterThanOrEqual(1);
    expect(existsSync(join(out, 'report.html'))).toBe(true);
  }, 120_000);

  it('is the one event of a run that fails before its first round', async () => {
    const out = join(root, 'no-data');
    const run = await runHwa(['train', '--dataset', 'mnist', '--data-dir', join(root, 'nothing-here'), '--json', '--out-dir', out]).done;
    expect(run.code).not.toBe(0);
    expect(events(run.stdout)).toEqual([expect.objectContaining({ event: 'run.failed', dir: out, round: 0 })]);
  }, 60_000);
});
