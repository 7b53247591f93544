/**
 * Checks of one option against another, which no single option's schema can make. main.ts runs them right
 * after resolving the options, before `--dry-run` prints anything, so a dry run fails exactly as the real run
 * would, with the same line; the commands run them again for callers that skip main.ts.
 *
 *     hwa train --mode sgd --workers 4 --dry-run   →  hwa: --workers 4 does not fit --mode sgd, which trains one model copy; …
 */
import { ConfigError, resolveWorkers, type RunConfig } from '@hwa/core';

export type Role = 'train' | 'coordinator' | 'worker' | 'launch' | 'compare';

/**
 * The config with K fixed where another option decides it (`--gpus 0,1` means K=2), or a ConfigError naming
 * both options of the first pair that disagree.
 */
export function crossCheck<C extends Partial<RunConfig> & Pick<RunConfig, 'mode'>>(role: Role, config: C): C {
  let fixed = config;
  if (role === 'train') {
    if (config.resume && config.inProcess)
      throw new ConfigError('--resume continues a multi-process run; --in-process (the reference trainer) always starts at round 1');
    const gpus = config.gpus ?? [];
    if (gpus.length > 0) {
      if (config.workers !== undefined && config.workers !== gpus.length)
        throw new ConfigError(`--workers ${config.workers} and --gpus ${gpus.join(',')} disagree: one worker runs per listed GPU`);
      fixed = { ...config, workers: gpus.length };
    }
  }
  if (role === 'launch') fixed = launchWorld(fixed);
  // Only a launcher of all K workers can start one again: a standalone coordinator's workers run elsewhere.
  const policy = (config as { onWorkerFailure?: string }).onWorkerFailure;
  if (policy === 'respawn' && (role === 'coordinator' || role === 'launch'))
    throw new ConfigError(`--on-worker-failure respawn needs hwa train, which starts the workers itself; hwa ${role} can continue without a failed worker (continue, which welcomes it back when it is restarted) or stop (abort)`);
  // A resumed run takes mode and K from its folder's config.json, which was checked when it started.
  if (config.resume) return fixed;
  const workers = resolveWorkers(fixed);
  const rank = (config as { rank?: number }).rank;
  if (role === 'worker' && rank !== undefined && rank >= workers)
    throw new ConfigError(`--rank ${rank} is out of range for ${workers} workers (ranks 0..${workers - 1})`);
  return fixed;
}

/**
 * `hwa launch`: K = nnodes × nproc-per-node, and nproc-per-node is the number of --gpus when they are given
 * (one GPU per worker); a --workers or --gpus that disagrees is named.
 */
function launchWorld<C extends Partial<RunConfig>>(config: C): C {
  const c = config as C & { nnodes?: number; nodeRank?: number; nprocPerNode?: number };
  const nnodes = c.nnodes ?? 1;
  const nodeRank = c.nodeRank ?? 0;
  const gpus = c.gpus ?? [];
  if (nodeRank >= nnodes) throw new ConfigError(`--node-rank ${nodeRank} is out of range for --nnodes ${nnodes} (node ranks 0..${nnodes - 1})`);
  if (gpus.length > 0 && c.nprocPerNode !== undefined && c.nprocPerNode !== gpus.length)
    throw new ConfigError(`--nproc-per-node ${c.nprocPerNode} and --gpus ${gpus.join(',')} disagree: one worker runs per listed GPU of a node`);
  const perNode = c.nprocPerNode ?? (gpus.length || 1);
  const workers = nnodes * perNode;
  if (c.workers !== undefined && c.workers !== workers)
    throw new ConfigError(`--workers ${c.workers} disagrees with --nnodes ${nnodes} × --nproc-per-node ${perNode} = ${workers}; leave --workers out with hwa launch`);
  return { ...config, nprocPerNode: perNode, workers };
}
