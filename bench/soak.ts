/**
 * npm run soak — kill trials of elastic workers (docs/processes.md#elastic-workers), with the real CLI on a
 * configuration (default examples/demo.yaml). Not part of `npm test`: it runs the whole configuration
 * 2 + --runs times.
 *
 * 1. One uninterrupted run: the reference accuracy (θ_HWA on the test set, from run.json).
 * 2. --runs worker-kill trials: `hwa train` (default --on-worker-failure respawn); at a random round of the first
 *    60% a random worker gets SIGKILL. Each must complete (exit 0) with a finite exported model whose offline
 *    accuracy is within --tolerance points of the reference.
 * 3. One coordinator-kill trial: `hwa train --checkpoint-every N` gets SIGKILL at a random round; the checkpoint
 *    left must be at most N rounds behind the last round reported, and `hwa train --resume` must complete.
 *
 *   npm run soak                                    # 20 worker kills on examples/demo.yaml
 *   npm run soak -- --runs 3 --seed 7               # fewer trials, other kill moments
 *   npm run soak -- --config job.yaml --checkpoint-every 5 --tolerance 1
 *
 * Prints a table (and one line per trial as it ends) and exits non-zero if any trial failed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../packages/core/src/rng.js';
import type { RunTotals } from '../packages/cli/src/report.js';

const MAIN = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : fallback);
const runs = Number(flag('--runs', '20'));
const seed = Number(flag('--seed', '1'));
const config = flag('--config', fileURLToPath(new URL('../examples/demo.yaml', import.meta.url)));
const every = Number(flag('--checkpoint-every', '10'));
const tolerance = Number(flag('--tolerance', '0.5'));
const random = mulberry32(seed);

interface Run {
  code: number | null;
  dir: string;
  /** Rounds reported so far (--json round events). */
  rounds: number;
  wallS: number;
}

/**
 * `hwa train --config <config> …` in a fresh folder; `onRound(round, pids)` sees each completed round with the
 * workers' pids and may kill something.
 */
function train(args: string[], onRound: (round: number, pids: Map<number, number>, run: { kill(signal: NodeJS.Signals): void }) => void = () => {}, dir = mkdtempSync(join(tmpdir(), 'hwa-soak-'))): Promise<Run> {
  const started = Date.now();
  const child = spawn(process.execPath, [MAIN, 'train', '--config', config, '--progress', 'off', '--json', ...args, ...(args.includes('--resume') ? [] : ['--out-dir', dir])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pids = new Map<number, number>();
  let rounds = 0;
  let rest = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    for (const m of text.matchAll(/worker (\d+) (?:started|started again), pid (\d+)/g)) pids.set(Number(m[1]), Number(m[2]));
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    const lines = (rest + text).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      const event = JSON.parse(line) as { event: string; round?: number };
      if (event.event !== 'round' || event.round === undefined) continue;
      rounds = event.round;
      onRound(event.round, pids, { kill: (signal) => child.kill(signal) });
    }
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, dir, rounds, wallS: (Date.now() - started) / 1000 })));
}

function totals(dir: string): RunTotals {
  return (JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { totals: RunTotals }).totals;
}

/** Every exported weight finite (tfjs layers format, float32 shards). */
function finiteModel(dir: string): boolean {
  const manifest = JSON.parse(readFileSync(join(dir, 'model', 'model.json'), 'utf8')) as { weightsManifest: { paths: string[] }[] };
  return manifest.weightsManifest.every((g) =>
    g.paths.every((p) => {
      const bytes = readFileSync(join(dir, 'model', p));
      return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)).every(Number.isFinite);
    }),
  );
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const rows: string[][] = [];
let failures = 0;
function row(cells: (string | number)[], ok: boolean): void {
  const line = [...cells.map(String), ok ? 'ok' : 'FAILED'];
  if (!ok) failures++;
  rows.push(line);
  process.stderr.write(`${line.join('  ')}\n`);
}

const base = await train([]);
if (base.code !== 0) throw new Error(`the uninterrupted run failed (exit ${base.code}); see ${base.dir}`);
const reference = totals(base.dir);
const planned = base.rounds;
const accuracy = reference.final?.offline.accuracy ?? NaN;
row(['reference', '-', '-', base.code ?? '-', `${reference.rounds}/${planned}`, '0/0', pct(accuracy), '-', String(finiteModel(base.dir)), base.wallS.toFixed(0)], finiteModel(base.dir));

for (let trial = 1; trial <= runs; trial++) {
  const rank = Math.floor(random() * 2);
  const at = 1 + Math.floor(random() * Math.max(1, Math.floor(planned * 0.6)));
  let killed = false;
  const run = await train([], (round, pids) => {
    const pid = pids.get(rank);
    if (killed || round < at || pid === undefined) return;
    killed = true;
    process.kill(pid, 'SIGKILL');
  });
  const t = run.code === 0 ? totals(run.dir) : null;
  const acc = t?.final?.offline.accuracy ?? NaN;
  const finite = run.code === 0 && finiteModel(run.dir);
  const delta = (acc - accuracy) * 100;
  const ok = run.code === 0 && killed && finite && Math.abs(delta) <= tolerance;
  row([`worker kill ${trial}`, `rank ${rank}`, `round ${at}`, run.code ?? '-', t ? `${t.rounds}/${planned}` : '-', t ? `${t.dropped}/${t.rejoined}` : '-', pct(acc), `${delta >= 0 ? '+' : ''}${delta.toFixed(2)}`, String(finite), run.wallS.toFixed(0)], ok);
}

// Coordinator kill: SIGKILL to `hwa train` itself at a random round, then --resume.
const at = Math.max(every + 1, 1 + Math.floor(random() * Math.floor(planned * 0.8)));
const killedRun = await train(['--checkpoint-every', String(every)], (round, _pids, run) => {
  if (round === at) run.kill('SIGKILL');
});
const checkpoint = (JSON.parse(readFileSync(join(killedRun.dir, 'checkpoint.json'), 'utf8')) as { round: number }).round;
const lost = killedRun.rounds - checkpoint;
const resumed = await train(['--resume', killedRun.dir], undefined, killedRun.dir);
const rt = resumed.code === 0 ? totals(resumed.dir) : null;
const racc = rt?.final?.offline.accuracy ?? NaN;
const rfinite = resumed.code === 0 && finiteModel(resumed.dir);
row(
  ['coordinator kill', `checkpoint ${checkpoint}`, `round ${killedRun.rounds}`, `resume ${resumed.code}`, rt ? `${rt.rounds}/${planned}` : '-', `lost ${lost} ≤ ${every}`, pct(racc), `${((racc - accuracy) * 100).toFixed(2)}`, String(rfinite), (killedRun.wallS + resumed.wallS).toFixed(0)],
  lost <= every && resumed.code === 0 && rfinite && Math.abs(racc - accuracy) * 100 <= tolerance,
);

const header = ['trial', 'killed', 'at', 'exit', 'rounds', 'dropped/rejoined', 'offline acc', 'Δ points', 'finite', 'wall s', 'result'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const format = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
process.stdout.write(
  [
    `soak: ${config}, ${runs} worker kills (seed ${seed}) and a coordinator kill (--checkpoint-every ${every}); tolerance ${tolerance} points`,
    format(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(format),
    `${rows.length - failures}/${rows.length} passed`,
  ].join('\n') + '\n',
);
process.exitCode = failures ? 1 : 0;
