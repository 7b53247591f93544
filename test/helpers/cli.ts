/**
 * Runs the real `hwa` CLI (the built dist/, as users do) as a child process. Every process started here is
 * killed in `killAll()`, which tests call from afterEach, so a failing test leaves nothing behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

const started = new Set<ChildProcess>();

export interface CliRun {
  child: ChildProcess;
  /** Everything printed so far. */
  output(): string;
  /** Resolves with the exit code (or the signal), all output, and stdout alone (e.g. `--json` events). */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string; stdout: string }>;
  /** Resolves when the output matches `pattern` (rejects after `timeoutMs`). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/**
 * Starts `hwa args…`. `prefix` runs it through another command first, e.g. `['ip', 'netns', 'exec', 'ns1']`
 * (which execs node in place, so the child is still the hwa process).
 */
export function runHwa(args: string[], env: NodeJS.ProcessEnv = {}, prefix: string[] = []): CliRun {
  return runProcess([...prefix, process.execPath, MAIN, ...args], env);
}

/** Starts `node args…` (a user's script, say) the same way, in `cwd` (default: this process's). */
export function runNode(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): CliRun {
  return runProcess([process.execPath, ...args], env, cwd);
}

/** True where {@link runHwaOnTerminal} can work: util-linux `script` is installed. */
export function hasTerminalRunner(): boolean {
  return spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Starts `hwa args…` on a pseudo-terminal (util-linux `script`), as a person at a terminal runs it: stdout and
 * stderr are TTYs, `columns` wide. The output comes back with the terminal's `\r\n` line ends and colour codes.
 */
export function runHwaOnTerminal(args: string[], env: NodeJS.ProcessEnv = {}, columns = 80): CliRun {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = `stty cols ${columns} rows 40; ${[process.execPath, MAIN, ...args].map(quote).join(' ')}`;
  return runProcess(['script', '-qfec', command, '/dev/null'], env);
}

function runProcess(argv: string[], env: NodeJS.ProcessEnv, cwd?: string): CliRun {
  const [command, ...rest] = argv;
  const child = spawn(command, rest, {
    cwd,
    // Tests run on wasm unless they say otherwise (a flag beats the env): one worker thread, the same bits on
    // every machine, and no libtensorflow to load in each of their processes where setup:native has run.
    env: { ...process.env, FORCE_COLOR: '0', HWA_BACKEND: process.env.HWA_BACKEND ?? 'wasm', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let text = '';
  let stdout = '';
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    text += chunk.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    onData(chunk);
  });
  child.stderr?.on('data', onData);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string; stdout: string }>((resolve) => {
    child.on('close', (code, signal) => {
      started.delete(child);
      resolve({ code, signal, output: text, stdout });
    });
  });
  return {
    child,
    output: () => text,
    done,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.match(pattern);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; output so far:\n${text}`));
        }, timeoutMs);
        listeners.add(check);
        void done.then(() => {
          if (listeners.has(check)) {
            check();
            if (listeners.has(check)) {
              listeners.delete(check);
              clearTimeout(timer);
              reject(new Error(`process exited before printing ${pattern}; output:\n${text}`));
            }
          }
        });
        check();
      });
    },
  };
}

/** Kills every CLI process a test started that is still running (and waits for them). */
export async function killAll(): Promise<void> {
  const live = [...started];
  for (const child of live) child.kill('SIGKILL');
  await Promise.all(live.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('close', r)))));
}

/** True if a process with this PID exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True if the process runs: it exists and is not a zombie waiting for its parent to reap it. */
export function isRunning(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    // /proc/<pid>/stat: "pid (comm) S ..." — the state letter follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls `condition` every 100 ms until it holds; throws `what` after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The JSON lines of a pino log file. */
export function readJsonLines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** θ̄ and θ_HWA saved at the end of a run. */
export function readCheckpoint(dir: string): { round: number; online: Float32Array; offline: Float32Array } {
  const meta = JSON.parse(readFileSync(`${dir}/checkpoint.json`, 'utf8')) as { round: number; onlineFloats: number; offlineFloats: number; file?: string };
  // Version 3 manifests name their data file (checkpoint-<round>.bin); version 2 always used checkpoint.bin.
  const bytes = readFileSync(`${dir}/${meta.file ?? 'checkpoint.bin'}`);
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { round: meta.round, online: floats.subarray(0, meta.onlineFloats), offline: floats.subarray(meta.onlineFloats, meta.onlineFloats + meta.offlineFloats) };
}

/** Every weight of a model exported to `dir` (tfjs layers format, float32 shards), concatenated. */
export function readModelWeights(dir: string): Float32Array {
  const manifest = JSON.parse(readFileSync(`${dir}/model.json`, 'utf8')) as { weightsManifest: { paths: string[] }[] };
  const shards = manifest.weightsManifest.flatMap((group) => group.paths.map((p) => readFileSync(`${dir}/${p}`)));
  const bytes = Buffer.concat(shards);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** The round and eval lines of a run's metrics.jsonl. */
export function readMetrics(dir: string): Record<string, unknown>[] {
  return readJsonLines(`${dir}/metrics.jsonl`);
}
