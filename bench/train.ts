/**
 * npm run bench:train — throughput of distributed HWA against single-process SGD of the same model, and
 * where a sync round's time goes. Runs the real CLI (`hwa train`) as users do and reads each run's run.json.
 *
 *   npm run bench:train                              # mlp, K=2 H=16 vs sgd, 1 epoch of MNIST
 *   npm run bench:train -- --model cnn --epochs 0.2  # any `hwa train` flags are passed through
 *
 * Prints a table and writes bench/results/train.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunTotals } from '../packages/cli/src/report.js';

const MAIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const passThrough = process.argv.slice(2);
const common = ['--model', 'mlp', '--epochs', '1', '--progress', 'off', ...passThrough];


function run(label: string, args: string[]): { label: string; args: string[]; totals: RunTotals } {
  const out = mkdtempSync(join(tmpdir(), 'hwa-bench-train-'));
  const started = Date.now();
  const result = spawnSync(process.execPath, [MAIN, 'train', ...common, ...args, '--out-dir', out], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${label} failed (exit ${result.status}):\n${result.stderr}`);
  const { totals } = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { totals: RunTotals };
  process.stderr.write(`${label}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return { label, args, totals };
}

const runs = [
  run('sgd, 1 process', ['--mode', 'sgd', '--in-process', '--sync-period', '16']),
  run('hwa K=2 H=16, 2 worker processes', ['--mode', 'hwa', '--workers', '2', '--sync-period', '16']),
];

const pct = (ms: number, t: RunTotals) => `${((ms / t.roundMs) * 100).toFixed(1)}%`;
const rows = runs.map(({ label, totals: t }) => ({
  run: label,
  'samples/s': Math.round(t.samplesPerSecond).toString(),
  rounds: String(t.rounds),
  compute: pct(t.computeMs, t),
  send: pct(t.sendMs, t),
  wait: pct(t.waitMs, t),
  average: pct(t.averageMs, t),
  'sync overhead': pct(t.commMs, t),
  MB: (t.bytes / 1e6).toFixed(1),
  'offline acc': t.final ? `${(t.final.offline.accuracy * 100).toFixed(2)}%` : '-',
}));
const columns = Object.keys(rows[0]) as (keyof (typeof rows)[number])[];
const width = columns.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i])).join('  ');
console.log(line(columns));
for (const r of rows) console.log(line(columns.map((c) => r[c])));
const speedup = runs[1].totals.samplesPerSecond / runs[0].totals.samplesPerSecond;
console.log(`\nK=2 throughput / single-process SGD throughput: ${speedup.toFixed(2)}×`);

const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'train.json'), JSON.stringify({ date: new Date().toISOString(), args: passThrough, runs, speedup }, null, 2) + '\n');
