"""PyTorch gloo all-reduce of N float32 across K processes on this machine: the peer figure `hwa bench comm`
is compared with (docs/measurements.md#moving-weights; what PeriodicModelAverager does each period).

    /usr/bin/python3 bench/comm-gloo-allreduce.py --floats 25000000 --procs 2 --rounds 10 --warmup 2

Prints one JSON line: {"floats", "procs", "rounds", "ms": [...], "median_ms", "min_ms", "max_ms", "torch"}.
Needs torch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, args, init_file, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=args.procs)
    x = torch.full((args.floats,), float(rank + 1), dtype=torch.float32)
    times = []
    for r in range(args.warmup + args.rounds):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(x)  # sum; PeriodicModelAverager then divides by K (not timed, O(N) local)
        t1 = time.perf_counter()
        if r >= args.warmup:
            times.append((t1 - t0) * 1000)
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--floats", type=int, default=25_000_000)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    init_file = os.path.join(tempfile.mkdtemp(), "gloo-init")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, args, init_file, queue)) for r in range(args.procs)]
    for pr in procs:
        pr.start()
    times = queue.get()
    for pr in procs:
        pr.join()
    print(json.dumps({
        "floats": args.floats, "procs": args.procs, "rounds": args.rounds, "ms": [round(t, 2) for t in times],
        "median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2), "max_ms": round(max(times), 2),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
