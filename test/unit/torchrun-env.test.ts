/** torchrun's variables as hwa reads them (packages/cli/src/torchrun.ts), and `hwa launch`'s world (checks.ts). */
import { describe, expect, it } from 'vitest';
import { makeRunConfig } from '@hwa/core';
import { crossCheck } from '../../packages/cli/src/checks.js';
import { nodeRanks } from '../../packages/cli/src/commands/launch.js';
import { MASTER_PAIR, deviceForLocalRank, localRankEnv, localThreads, torchrunEnv } from '../../packages/cli/src/torchrun.js';

describe('torchrunEnv', () => {
  it('gives a worker its coordinator from MASTER_ADDR and MASTER_PORT, IPv6 in brackets', () => {
    expect(torchrunEnv('worker', { MASTER_ADDR: 'n0', MASTER_PORT: '29500' }).env[MASTER_PAIR]).toBe('tcp://n0:29500');
    expect(torchrunEnv('worker', { MASTER_ADDR: 'fd00::1', MASTER_PORT: '1' }).env[MASTER_PAIR]).toBe('tcp://[fd00::1]:1');
    expect(torchrunEnv('worker', { MASTER_ADDR: 'n0' }).env[MASTER_PAIR]).toBeUndefined();
    expect(torchrunEnv('worker', {}).aliases).toEqual({ WORLD_SIZE: 'workers', RANK: 'rank', [MASTER_PAIR]: 'connect' });
  });
  it('reads nothing of torchrun for hwa train', () => {
    expect(torchrunEnv('train', { WORLD_SIZE: '4' }).aliases).toEqual({});
  });
});

describe('LOCAL_RANK and LOCAL_WORLD_SIZE', () => {
  it('pick the LOCAL_RANK-th visible GPU, keep a single pinned one, and refuse one out of range', () => {
    expect(deviceForLocalRank(1, undefined)).toBe('1');
    expect(deviceForLocalRank(1, '4,5,6')).toBe('5');
    expect(deviceForLocalRank(1, '7')).toBe('7');
    expect(() => deviceForLocalRank(3, '4,5')).toThrow(/LOCAL_RANK 3 is out of range for CUDA_VISIBLE_DEVICES=4,5/);
  });
  it('share the cores among the local workers unless --threads is given', () => {
    expect(localThreads(0, 2)).toBeGreaterThanOrEqual(1);
    expect(localThreads(3, 2)).toBe(3);
    expect(localThreads(0, undefined)).toBe(0);
    expect(() => localRankEnv({ LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2' })).toThrow(/LOCAL_RANK 2 is out of range/);
    expect(() => localRankEnv({ LOCAL_RANK: 'x' })).toThrow(/LOCAL_RANK: must be a whole number/);
  });
});

describe('hwa launch world', () => {
  const launch = (o: object) => crossCheck('launch', { ...makeRunConfig(), ...o } as ReturnType<typeof makeRunConfig>) as { workers?: number; nprocPerNode?: number };
  it('is nnodes × nproc-per-node, nproc-per-node defaulting to the number of GPUs', () => {
    expect(launch({ nnodes: 3, nodeRank: 2, nprocPerNode: 2 }).workers).toBe(6);
    expect(launch({ nnodes: 2, nodeRank: 0, gpus: [0, 1, 2, 3] })).toMatchObject({ workers: 8, nprocPerNode: 4 });
    expect(nodeRanks(2, 4)).toEqual([8, 9, 10, 11]);
  });
  it('names the options that disagree', () => {
    expect(() => launch({ nnodes: 2, nodeRank: 2 })).toThrow(/--node-rank 2 is out of range for --nnodes 2/);
    expect(() => launch({ nnodes: 2, nodeRank: 0, nprocPerNode: 2, gpus: [0] })).toThrow(/--nproc-per-node 2 and --gpus 0 disagree/);
    expect(() => launch({ nnodes: 2, nodeRank: 0, workers: 3 })).toThrow(/--workers 3 disagrees with --nnodes 2 × --nproc-per-node 1 = 2/);
    expect(() => launch({ nnodes: 2, nodeRank: 0, mode: 'sgd' })).toThrow(/does not fit --mode sgd/);
  });
});
