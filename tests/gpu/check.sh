#!/usr/bin/env bash
# Chapter 11 on a real GPU, for a person with an NVIDIA GPU and nvcc: builds
# with `make CUDA=1` (sm_90 code plus PTX, so an H100 or anything newer), runs
# the [ch11] tests on the device, trains the default toy-French model and a
# d_model 512, 3+3 layers one on the GPU and on the CPU for the same steps
# (time a step, tokens/s, the device memory peak), then tutorial 11 (each
# kernel checked) and its benchmark table (the SGEMM ladder, cuBLAS FP32 and
# the CPU in GFLOP/s). Under 8 minutes on an H100 machine with 16 cores
# (each training run has its own time limit, 5.5 minutes in all at worst).
# Extra arguments go to the benchmark:
#   tests/gpu/check.sh
#   tests/gpu/check.sh --repeats 3 --shape 4096x4096x4096
set -uo pipefail
cd "$(dirname "$0")/../.."

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
  echo "nvidia-smi not found: is there an NVIDIA GPU and driver?"
fi

jobs=$(nproc 2>/dev/null || echo 4)
make CUDA=1 -j"$jobs" lib cli tutorials || exit 1
status=0
# The tests need Catch2 (make says how to install it when it is missing).
if make CUDA=1 -j"$jobs" tests; then
  build/cuda/tests/attend_tests "[ch11]" || status=1
  # Chapter 12's tiled attention forward on the device against the CPU kernel.
  build/cuda/tests/attend_tests "attention_forward_device*" || status=1
else
  echo "could not build the tests: running the tutorial only"
  status=1
fi
# Training on the device beside the CPU (docs/11-cuda.md, "Training on the
# device"): the same seed, data and steps on both; each run prints its last
# line, "speed on DEVICE: ... ms a step, ... tokens/s" (the steps alone) and,
# on cuda, the caching allocator's peak. 20,000 generated pairs instead of
# 200,000 keep the setup short; no validation, one checkpoint at the end.
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
train_run() {  # LABEL DEVICE STEPS SECONDS [attend train flags...]
  local label=$1 device=$2 steps=$3 seconds=$4
  shift 4
  if timeout "$seconds" build/cuda/attend train --task toy-french --train-size 20000 --valid-size 10 \
      --eval-every 0 --checkpoint-every 0 --steps "$steps" --device "$device" \
      --out "$runs/model-$device.safetensors" "$@" 2> "$runs/log"; then
    printf '%-30s %s\n' "$label" "$(grep -o 'speed on .*' "$runs/log")"
  else
    printf '%-30s %s: FAILED or over %s s:\n' "$label" "$device" "$seconds"
    tail -n 3 "$runs/log"
    status=1
  fi
}
if [ -x build/cuda/attend ]; then
  echo
  echo "training, the same steps on the GPU and on the CPU ($(nproc) cores):"
  train_run "toy-French (d 128, 2+2)" cuda 200 60
  train_run "toy-French (d 128, 2+2)" cpu 200 90
  big="--d-model 512 --ff 2048 --heads 8 --layers 3"
  train_run "d 512, 3+3 layers" cuda 30 60 $big
  train_run "d 512, 3+3 layers" cpu 30 120 $big
fi
# TF32 off everywhere: cuBLAS is measured in plain FP32, like the ladder.
export NVIDIA_TF32_OVERRIDE=0
build/cuda/tutorials/11-cuda || status=1
build/cuda/tutorials/11-cuda --bench "$@" || status=1
exit $status
