#!/usr/bin/env bash
# The GPU backend on a machine with NVIDIA GPUs, end to end, as one command:
#   1. builds @tensorflow/tfjs-node-gpu against TensorFlow 2.21 + CUDA 12 + cuDNN 9 (npm run setup:native -- --gpu)
#      and the CPU backend beside it, for comparison;
#   2. times a training step of the mlp and cnn on the GPU and on the CPU (npm run bench:step);
#   3. trains HWA with one worker per GPU (two workers sharing GPU 0 when there is only one) and checks that
#      every worker ran on the GPU and the exported model scores above chance.
#
#   bash scripts/gpu-check.sh            # from the repository root; needs node 20, npm, python3 with pip,
#                                        # g++ and make, and pip access to the TensorFlow and nvidia wheels
#
# Prints "gpu-check: ok" last, or the first failure and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "gpu-check: FAILED: $*"; exit 1; }

command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this script needs an NVIDIA GPU and its driver"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader)
[ "${#gpus[@]}" -gt 0 ] || fail "nvidia-smi lists no GPU"

echo "== install and build"
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build
echo "== setup:native --gpu (GPU) and setup:native (CPU)"
npm run setup:native -- --gpu
npm run setup:native

echo "== step time, GPU vs CPU (batch 64)"
npm run bench:step -- --backends tensorflow-gpu,tensorflow --threads "$(nproc)" --out bench/results/gpu-step.json

# HWA needs K >= 2: one worker per GPU, or two on GPU 0 of a one-GPU machine.
if [ "${#gpus[@]}" -ge 2 ]; then list=$(IFS=,; echo "${gpus[*]}"); else list="${gpus[0]},${gpus[0]}"; fi
out=$(mktemp -d)/gpu-run
echo "== hwa train --gpus $list (cnn, MNIST, 1 epoch)"
node packages/cli/dist/main.js train --gpus "$list" --backend tensorflow-gpu --model cnn --epochs 1 \
  --progress off --out-dir "$out"
node -e '
  const fs = require("fs"), dir = process.argv[1];
  const run = JSON.parse(fs.readFileSync(`${dir}/run.json`, "utf8"));
  const logs = fs.readdirSync(dir).filter((f) => /^worker-\d+\.log$/.test(f));
  for (const f of logs) {
    const line = fs.readFileSync(`${dir}/${f}`, "utf8").split("\n").filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return {}; } })
      .find((l) => l.event === "backend.selected");
    if (!line || line.selected !== "tensorflow-gpu") { console.log(`gpu-check: FAILED: ${f} trained on ${line ? line.selected : "?"}`); process.exit(1); }
    console.log(`${f}: tensorflow-gpu, TensorFlow ${line.tensorflowVersion}, CUDA_VISIBLE_DEVICES=${line.cudaVisibleDevices}`);
  }
  const acc = run.totals.final.offline.accuracy;
  console.log(`offline accuracy ${(acc * 100).toFixed(2)}%, ${Math.round(run.totals.samplesPerSecond)} samples/s, wall ${(run.totals.wallMs / 1000).toFixed(1)} s`);
  if (!(acc > 0.9)) { console.log("gpu-check: FAILED: accuracy too low"); process.exit(1); }
' "$out"
echo "gpu-check: ok"
