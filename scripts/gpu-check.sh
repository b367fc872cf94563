#!/usr/bin/env bash
# On a GPU machine: builds ddactor with CUDA against the PyTorch installed there (its LibTorch:
# torch/share/cmake) and the Debian packages of scripts/make-gpu-bundle.sh (unpacked with
# `dpkg -x`, nothing installed), runs the CUDA tests, then the GPU benchmarks: ddactor's training
# step (bench/gpu_step_bench.cpp) against the same model in Python PyTorch eager
# (bench/gpu/pytorch_step.py) on the same GPU, fp32 and bf16, DiT-B/2 on 256 px latents and the
# SD 1.5 UNet at 64 x 64 latents, with the ratio, peak memory and GPU utilisation while each runs;
# then two ddactor peers on the GPU averaging gradients with averaging.overlap, and the GPU's
# utilisation while they train and average.
#
#   scripts/gpu-check.sh [BUNDLE_DIR] [OUT_DIR]     (defaults .gpu-bundle and gpu-check-out)
#
# Environment: BATCH_DIT (32), BATCH_UNET (8), STEPS (20), JOBS (all cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bundle=$(cd "${1:-$root/.gpu-bundle}" && pwd)
out=${2:-$root/gpu-check-out}
mkdir -p "$out"
deps=/tmp/ddactor-gpu-deps
build=/tmp/ddactor-gpu-build
jobs=${JOBS:-$(nproc)}

echo "== the machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
            "devices", torch.cuda.device_count())'

echo "== dependencies from $bundle (dpkg -x into $deps)"
rm -rf "$deps" && mkdir -p "$deps"
for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" "$deps"; done
multiarch=$deps/usr/lib/x86_64-linux-gnu
export CPATH=$deps/usr/include${CPATH:+:$CPATH}
export LIBRARY_PATH=$multiarch${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
torch_cmake=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
# The wheel's libraries (libtorch_cuda, NCCL, cuDNN) are found beside it at run time.
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$torch_lib:$LD_LIBRARY_PATH

echo "== configure and build (DDACTOR_CUDA=ON, LibTorch of $torch_cmake)"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDDACTOR_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_cmake;$deps/usr;$multiarch/cmake" \
  -DCMAKE_INCLUDE_PATH="$deps/usr/include" -DCMAKE_LIBRARY_PATH="$multiarch" \
  -DDDACTOR_SD1_FIXTURES="$bundle" > "$out/configure.log" 2>&1 \
  || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j "$jobs" --target ddactor ddactor_torch_tests ddactor_gpu_step_bench \
  > "$out/build.log" 2>&1 || { grep -m 20 -E "error|Error" "$out/build.log"; exit 1; }

echo "== CUDA tests"
"$build/tests/ddactor_torch_tests" \
  --gtest_filter='cuda_training*:device_memory_metrics*:device_transfer*:loss_scaling*:node_reducer*:mixed_precision*' \
  2>&1 | tee "$out/tests.log" | grep -E "^\[  (PASSED|FAILED|SKIPPED)|FAILED  \]|OK \]" || true

echo "== benchmarks (samples/s; ratio = ddactor / PyTorch eager)"
utilisation() {  # utilisation LOG: samples GPU utilisation every 200 ms until killed
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$1" 2>/dev/null
}
mean_of() { awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n; else printf "?" }' "$1"; }
run_pair() {  # run_pair MODEL PRECISION BATCH [EXTRA...]
  local model=$1 precision=$2 batch=$3; shift 3
  local steps=${STEPS:-20}
  local common=(--model "$model" --device cuda:0 --precision "$precision" --batch "$batch"
                --warmup 3 --steps "$steps" "$@")
  utilisation "$out/util_ddactor_${model}_$precision.txt" & local sampler=$!
  "$build/bench/ddactor_gpu_step_bench" "${common[@]}" > "$out/ddactor_${model}_$precision.json" \
    || echo '{"failed": true}' > "$out/ddactor_${model}_$precision.json"
  kill $sampler 2>/dev/null || true
  utilisation "$out/util_pytorch_${model}_$precision.txt" & sampler=$!
  PYTHONUNBUFFERED=1 python3 "$root/bench/gpu/pytorch_step.py" "${common[@]}" \
    > "$out/pytorch_${model}_$precision.json" \
    || echo '{"failed": true}' > "$out/pytorch_${model}_$precision.json"
  kill $sampler 2>/dev/null || true
  python3 - "$out/ddactor_${model}_$precision.json" "$out/pytorch_${model}_$precision.json" \
    "$(mean_of "$out/util_ddactor_${model}_$precision.txt")" \
    "$(mean_of "$out/util_pytorch_${model}_$precision.txt")" <<'PY'
import json, sys
ours, theirs = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
if ours.get("failed") or theirs.get("failed") or "skipped" in theirs:
    print(f"  {ours.get('model', '?')}: ddactor {ours}, pytorch {theirs}")
    sys.exit(0)
ratio = ours["samples_per_second"] / theirs["samples_per_second"]
print(f"  {ours['model']:9} {ours['precision']} batch {ours['batch']}: ddactor "
      f"{ours['samples_per_second']:.1f}, pytorch {theirs['samples_per_second']:.1f} samples/s, "
      f"ratio {ratio:.2f}; peak memory {ours['peak_memory_bytes'] / 2**30:.1f} vs "
      f"{theirs['peak_memory_bytes'] / 2**30:.1f} GiB; GPU busy {sys.argv[3]}% vs {sys.argv[4]}%")
PY
}
for precision in fp32 bf16; do
  run_pair dit-b2 "$precision" "${BATCH_DIT:-32}"
  if [ -f "$bundle/sd15_unet_config.json" ]; then
    run_pair sd15-unet "$precision" "${BATCH_UNET:-8}" --unet-config "$bundle/sd15_unet_config.json"
  fi
done
echo "== a swarm of two peers on cuda:0 (gradients, averaging.overlap), GPU utilisation"
swarm=/tmp/ddactor-gpu-swarm
rm -rf "$swarm" && mkdir -p "$swarm"
"$build/ddactor" keys --new-swarm-key "$swarm/swarm.key" > /dev/null
port=$((20000 + RANDOM % 20000))
cat > "$swarm/run.toml" <<TOML
[run]
name = "gpu-swarm"
device = "cuda:0"
[model]
preset = "B/4"
[data]
source = "fashion-mnist"
path = "$deps/usr/share/datasets/fashion-mnist"
batch_size = 256
[train]
steps = ${SWARM_EPOCHS:-40}
target_batch_size = 1024
log_every = 1
checkpoint_every = 1000
sample_every = 0
[network]
wait_for_peers = 2
swarm_key_file = "$swarm/swarm.key"
[averaging]
overlap = true
TOML
utilisation "$out/util_swarm.txt" & sampler=$!
"$build/ddactor" --config "$swarm/run.toml" --set "run.dir=\"$swarm/peer0\"" \
  --set "network.listen=\"127.0.0.1:$port\"" > "$out/swarm_peer0.log" 2>&1 & first=$!
sleep 2
"$build/ddactor" --config "$swarm/run.toml" --set "run.dir=\"$swarm/peer1\"" \
  --set "network.listen=\"127.0.0.1:0\"" \
  --set "network.initial_peers=[\"127.0.0.1:$port\"]" > "$out/swarm_peer1.log" 2>&1
wait $first || true
kill $sampler 2>/dev/null || true
echo "  GPU busy $(mean_of "$out/util_swarm.txt")% on average while two peers trained and averaged"
grep -h "samples/s" "$out/swarm_peer0.log" | tail -2 | sed 's/^/  peer 0: /'
echo "== done; logs and JSON in $out"
