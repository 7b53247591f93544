/**
 * `hwa launch` jobs of two nodes for tests: both launchers started as a cluster would (node 1 first, so its
 * workers wait for the coordinator), optionally each through a prefix such as `ip netns exec ns` (a node in a
 * network namespace of its own), and what tests compare afterwards.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runHwa, type CliRun } from './cli.js';

export interface TwoNodes {
  node0: CliRun;
  node1: CliRun;
}

export interface TwoNodeOptions {
  port: number;
  /** Where node 1 reaches node 0. */
  masterAddr: string;
  /** Node 0's run folder. */
  out: string;
  /** Node 1's folder (default: the same, as on a shared file system). */
  node1Out?: string;
  /** Workers per node. */
  perNode: number;
  /** Training options and anything else both launchers get (e.g. --no-node-average). */
  args: string[];
  /** Commands each node's launcher runs through, e.g. ['ip', 'netns', 'exec', 'ns0']. */
  prefixes?: [string[], string[]];
}

export function launchTwoNodes(o: TwoNodeOptions): TwoNodes {
  const node = (rank: number) =>
    runHwa(
      [
        'launch', '--nnodes', '2', '--node-rank', String(rank), '--nproc-per-node', String(o.perNode), '--master-addr', o.masterAddr,
        '--master-port', String(o.port), '--out-dir', rank === 0 ? o.out : (o.node1Out ?? o.out), ...o.args,
      ],
      {},
      o.prefixes?.[rank] ?? [],
    );
  const node1 = node(1);
  const node0 = node(0);
  return { node0, node1 };
}

/** Totals of a finished run's run.json. */
export function runTotals(dir: string): { rounds: number; bytes: number; crossNodeBytes: number | null } {
  return (JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { totals: { rounds: number; bytes: number; crossNodeBytes: number | null } }).totals;
}

