/**
 * npm run bench:train — throughput of distributed HWA against single-process SGD of the same model, and
 * where a sync round's time goes, on each backend. Runs the real CLI (`hwa train`) as users do and reads each
 * run's run.json. On native TensorFlow, SGD runs with 1 thread and with 2 (all cores here), and the K=2 workers
 * with the cores shared (1 each); wasm always uses one thread per process.
 *
 *   npm run bench:train                              # mlp, K=2 H=16 vs sgd, 1 epoch of MNIST, native and wasm
 *   npm run bench:train -- --backends wasm           # one backend
 *   npm run bench:train -- --model cnn --epochs 0.2  # any other `hwa train` flags are passed through
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
const argv = process.argv.slice(2);
const backendsAt = argv.indexOf('--backends');
const backends = backendsAt >= 0 ? argv[backendsAt + 1].split(',') : ['tensorflow', 'wasm'];
const passThrough = backendsAt >= 0 ? argv.filter((_, i) => i !== backendsAt && i !== backendsAt + 1) : argv;
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

/** The runs of one backend: SGD (native: at 1 and 2 threads) and HWA K=2; the first is the speed-up's base. */
function plan(backend: string): [string, string[]][] {
  const b = ['--backend', backend];
  const sgd = ['--mode', 'sgd', '--in-process', '--sync-period', '16', ...b];
  const hwa: [string, string[]] = [`${backend}: hwa K=2 H=16, 2 worker processes`, ['--mode', 'hwa', '--workers', '2', '--sync-period', '16', ...b]];
  if (backend.startsWith('tensorflow'))
    return [[`${backend}: sgd, 1 process, 2 threads`, [...sgd, '--threads', '2']], [`${backend}: sgd, 1 process, 1 thread`, [...sgd, '--threads', '1']], hwa];
  return [[`${backend}: sgd, 1 process`, sgd], hwa];
}

const runs: ReturnType<typeof run>[] = [];
const speedups: Record<string, number> = {};
for (const backend of backends) {
  let these: ReturnType<typeof run>[];
  try {
    these = plan(backend).map(([label, args]) => run(label, args));
  } catch (err) {
    // A backend this machine cannot load (e.g. native without `npm run setup:native`): say so and go on.
    console.log(`${backend}: skipped: ${String((err as Error).message).split('\n').find((l) => l.startsWith('hwa:')) ?? (err as Error).message}`);
    continue;
  }
  runs.push(...these);
  speedups[backend] = these.at(-1)!.totals.samplesPerSecond / these[0].totals.samplesPerSecond;
}

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
console.log('');
for (const [backend, speedup] of Object.entries(speedups))
  console.log(`${backend}: K=2 throughput / single-process SGD throughput (SGD with all cores): ${speedup.toFixed(2)}×`);

const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'train.json'), JSON.stringify({ date: new Date().toISOString(), args: passThrough, backends, runs, speedups }, null, 2) + '\n');
