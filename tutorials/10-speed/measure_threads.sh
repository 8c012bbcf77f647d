#!/bin/bash
# Attend's training step on 1 and 2 threads, with OpenMP's passive and active
# wait policies, on an idle machine and beside a competing process (chapter
# 10, docs/10-speed.md, "OpenMP's wait policy"). Run from the repository
# root on an otherwise idle machine:
#
#   tutorials/10-speed/measure_threads.sh        (STEPS=200, ROUNDS=3 by default)
#
# Each line is one `attend train` run of the default toy-French model timed
# by compare_pytorch.py (ms/step between the progress lines of step 50 and
# of the last step, peak resident memory). A round runs 1 thread, then 2;
# the rounds alternate them because a virtual machine's speed drifts by 10%
# to 25% within minutes, and the summary line gives the medians over the
# rounds and their ratio.
#
# Last, on the idle machine: 1 against 2 threads within one run (tutorial
# 10's --training-steps: blocks of 5 steps alternated, with the time a cache
# line takes between the two threads and how much slower one CPU is than
# the other; docs/10-speed.md, "Measuring 1 against 2 threads"), the way to
# compare them while the machine drifts.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -j"$(nproc)" build/attend build/tutorials/10-speed >/dev/null
work="$(mktemp -d)"
competitor=""
trap '[[ -n "$competitor" ]] && kill "$competitor" 2>/dev/null; rm -rf "$work"' EXIT
build/attend data --split train --n 200000 --seed 1 > "$work/toy_train.tsv"
run() {
  for ((round = 1; round <= ${ROUNDS:-3}; round++)); do
    OMP_WAIT_POLICY="$1" python3 tutorials/10-speed/compare_pytorch.py --config toy --data "$work/toy_train.tsv" \
      --steps "${STEPS:-200}" --torch-threads none --attend-threads 1,2 | grep -E "^attend  "
  done | tee "$work/runs.txt"
  # ms/step is the 4th column; the median of each thread count's runs.
  median() { grep -E "^attend +$1 threads" "$work/runs.txt" | awk '{print $4}' | sort -n |
             awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  local one two
  one=$(median 1)
  two=$(median 2)
  awk -v a="$one" -v b="$two" 'BEGIN {printf "medians: 1 thread %.1f ms, 2 threads %.1f ms: %.2fx\n", a, b, a / b}'
}
for load in idle busy; do
  if [[ "$load" == busy ]]; then
    yes > /dev/null &   # one core taken by another program
    competitor=$!
  fi
  for policy in passive active; do
    echo "== $load machine, OMP_WAIT_POLICY=$policy"
    run "$policy"
  done
done
kill "$competitor" 2>/dev/null || true
competitor=""
echo "== idle machine, 1 against 2 threads in one run (blocks of 5 steps, ${STEPS:-200} steps)"
build/tutorials/10-speed --training-steps 2 "${STEPS:-200}" 5 | tail -1
