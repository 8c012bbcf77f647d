#!/usr/bin/env bash
# Chapter 11 on a real GPU, for a person with an NVIDIA GPU and nvcc: builds
# with `make CUDA=1` (sm_90 code plus PTX, so an H100 or anything newer), runs
# the [ch11] tests on the device, then tutorial 11 (each kernel checked) and
# its benchmark table (the SGEMM ladder, cuBLAS FP32 and the CPU in GFLOP/s).
# Takes a few minutes on an H100 machine. Extra arguments go to the benchmark:
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
make CUDA=1 -j"$jobs" lib tutorials || exit 1
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
# TF32 off everywhere: cuBLAS is measured in plain FP32, like the ladder.
export NVIDIA_TF32_OVERRIDE=0
build/cuda/tutorials/11-cuda || status=1
build/cuda/tutorials/11-cuda --bench "$@" || status=1
exit $status
