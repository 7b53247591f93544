"""PyTorch's time per training step for the models of `npm run bench:step`, at given thread counts: the peer
figure the native and wasm backends are compared with, measured in the same run on the same machine.

    /usr/bin/python3 bench/step-pytorch.py --models mlp,cnn --threads 1,2 --batch 64

Same networks as packages/engine/src/model.ts (mlp 784-256-128-10; cnn conv32-pool-conv64-pool-dense128, 3x3
valid convolutions, 2x2 max pooling, ReLU), same step (softmax cross-entropy, SGD with momentum 0.9 and weight
decay 5e-4, batch 64 of random 28x28x1 inputs). Prints one line `RESULTS [...]` in bench/step.ts's format.
Needs torch (Debian: apt-get install python3-torch libopenblas0-pthread; without OpenBLAS, Debian's torch falls
back to the reference BLAS, ten times slower).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn

STEPS = {"mlp": (20, 200), "cnn": (5, 40)}  # warm-up, timed: as bench/step.ts


def build(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def time_model(name, threads, batch):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = build(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    batches = [(torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))) for _ in range(4)]
    warmup, steps = STEPS[name]
    wall = []
    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad()  # 1.13 default: zero in place (set_to_none would re-allocate, and first-touch, every step)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            wall.append((time.perf_counter() - t0) * 1000)
    wall.sort()
    median = statistics.median(wall)
    return {
        "backend": f"pytorch ×{threads}", "model": name, "status": "ok", "warmup": warmup, "steps": steps,
        "msMedian": median, "msMin": wall[0], "msP90": wall[min(len(wall) - 1, int(0.9 * len(wall)))],
        "samplesPerSec": batch / median * 1000, "torch": torch.__version__,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    results = [time_model(m, int(t), a.batch) for t in a.threads.split(",") for m in a.models.split(",")]
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
