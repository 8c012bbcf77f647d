#!/bin/bash
# Attend against PyTorch on both model configs of docs/10-speed.md, one after
# the other (chapter 10). Run it from the repository root on an idle machine:
#
#   tutorials/10-speed/compare_pytorch.sh [REAL_PAIRS.tsv [MAX_PAIRS]]
#
# STEPS=400 (default 200) trains longer; VERBOSE=1 echoes the programs' output.
# 1. builds attend and tutorial 10, 2. the toy-French model on 200,000
# generated pairs, 3. the d_model 256, 3+3 model on REAL_PAIRS.tsv (its first
# MAX_PAIRS lines, default 9800; skipped without a file), 4. matmul at the
# models' shapes: torch.mm, then Attend's kernels (tutorial 10).
# Needs: apt-get install python3-torch libopenblas0-pthread
set -euo pipefail
cd "$(dirname "$0")/../.."

real_pairs="${1:-}"
max_pairs="${2:-9800}"
extra=(--steps "${STEPS:-200}")
[[ -n "${VERBOSE:-}" ]] && extra+=(--verbose)

make -j"$(nproc)" build/attend build/tutorials/10-speed >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== toy French, the default model"
build/attend data --split train --n 200000 --seed 1 > "$work/toy_train.tsv"
/usr/bin/python3 tutorials/10-speed/compare_pytorch.py --config toy --data "$work/toy_train.tsv" "${extra[@]}"

if [[ -n "$real_pairs" ]]; then
  echo
  echo "== real pairs, d_model 256, 4 heads, 3+3 layers, feed-forward 512"
  /usr/bin/python3 tutorials/10-speed/compare_pytorch.py --config d256 --data "$real_pairs" \
    --max-pairs "$max_pairs" "${extra[@]}"
fi

echo
echo "== matmul: torch.mm"
/usr/bin/python3 tutorials/10-speed/compare_pytorch.py --matmul
echo
echo "== matmul: Attend (the 'new' column; 'avx2' and 'portable' force those micro-kernels)"
build/tutorials/10-speed --quick
