/**
 * torchrun's environment contract, read where the HWA_* variables are not given (HWA_* win), so that a job
 * script written for torchrun (or a cluster that sets these, as Kubernetes operators and Slurm wrappers do)
 * starts hwa's roles unchanged:
 *
 *     MASTER_ADDR, MASTER_PORT   hwa worker: --connect tcp://MASTER_ADDR:MASTER_PORT
 *                                hwa coordinator: --bind tcp://0.0.0.0:MASTER_PORT
 *                                hwa launch: --master-addr, --master-port
 *     WORLD_SIZE, RANK           --workers (K) and --rank; the coordinator is not a rank, so WORLD_SIZE is K
 *     LOCAL_RANK                 hwa worker: the LOCAL_RANK-th visible GPU (torch.cuda.set_device(local_rank))
 *     LOCAL_WORLD_SIZE           hwa worker: the node's cores shared among that many workers (--threads 0)
 *
 * MASTER_ADDR and MASTER_PORT make one option together; where they are read, the source column of `--dry-run`
 * names the pair.
 */
import { ConfigError, parseWholeNumber } from '@hwa/core';
import { workerThreads } from './launcher.js';

/** The env name a worker's --connect is shown as coming from when MASTER_ADDR and MASTER_PORT give it. */
export const MASTER_PAIR = 'MASTER_ADDR:MASTER_PORT';
/** The same for a coordinator's --bind, given by MASTER_PORT. */
export const MASTER_PORT_BIND = 'MASTER_PORT (bind)';

/** What resolveRunConfig reads for one role: the env (with the derived pair) and the torchrun names as aliases. */
export function torchrunEnv(
  role: string,
  env: Readonly<Record<string, string | undefined>>,
): { env: Record<string, string | undefined>; aliases: Record<string, string> } {
  const out: Record<string, string | undefined> = { ...env };
  const addr = env.MASTER_ADDR ?? '';
  const port = env.MASTER_PORT ?? '';
  switch (role) {
    case 'worker':
      if (addr !== '' && port !== '') out[MASTER_PAIR] = `tcp://${addr.includes(':') ? `[${addr}]` : addr}:${port}`;
      return { env: out, aliases: { WORLD_SIZE: 'workers', RANK: 'rank', [MASTER_PAIR]: 'connect' } };
    case 'coordinator':
      // Derived under its own name, so that the raw MASTER_PORT stays what it is for every other reader.
      if (port !== '') out[MASTER_PORT_BIND] = `tcp://0.0.0.0:${port}`;
      return { env: out, aliases: { WORLD_SIZE: 'workers', [MASTER_PORT_BIND]: 'bind' } };
    case 'launch':
      return { env: out, aliases: { MASTER_ADDR: 'masterAddr', MASTER_PORT: 'masterPort' } };
    default:
      return { env: out, aliases: {} };
  }
}

/** LOCAL_RANK and LOCAL_WORLD_SIZE as numbers (undefined when unset), or a ConfigError naming the bad one. */
export function localRankEnv(env: Readonly<Record<string, string | undefined>>): { localRank?: number; localWorldSize?: number } {
  const read = (name: string, min: number): number | undefined => {
    const raw = env[name] ?? '';
    if (raw === '') return undefined;
    return parseWholeNumber(raw, name, min);
  };
  const localRank = read('LOCAL_RANK', 0);
  const localWorldSize = read('LOCAL_WORLD_SIZE', 1);
  if (localRank !== undefined && localWorldSize !== undefined && localRank >= localWorldSize)
    throw new ConfigError(`LOCAL_RANK ${localRank} is out of range for LOCAL_WORLD_SIZE ${localWorldSize}`);
  return { localRank, localWorldSize };
}

/**
 * The CUDA_VISIBLE_DEVICES a worker with this LOCAL_RANK runs with, as torchrun's one-GPU-per-process scripts
 * do: the LOCAL_RANK-th of the visible devices. A list of one (a launcher pinned this worker already) is kept;
 * unset means every device is visible, so the device is LOCAL_RANK itself.
 */
export function deviceForLocalRank(localRank: number, visible: string | undefined): string {
  if (visible === undefined || visible.trim() === '') return String(localRank);
  const devices = visible.split(',').map((d) => d.trim()).filter((d) => d !== '');
  if (devices.length <= 1) return visible;
  const device = devices[localRank];
  if (device === undefined)
    throw new ConfigError(`LOCAL_RANK ${localRank} is out of range for CUDA_VISIBLE_DEVICES=${visible} (${devices.length} devices)`);
  return device;
}

/** --threads for a standalone worker: with LOCAL_WORLD_SIZE, the node's cores shared among its workers. */
export function localThreads(threads: number, localWorldSize: number | undefined): number {
  return threads > 0 || localWorldSize === undefined ? threads : workerThreads(0, localWorldSize);
}
