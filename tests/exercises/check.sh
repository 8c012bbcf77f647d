#!/bin/sh
# `make check-exercises [CH=NN]`: proves for every exercise (README,
# "Exercises") that its chapter's tests grade it. For each chapter it makes a
# copy of the repository with that chapter's exercises stripped (each region
# one `throw`, tests/exercises/make_copy.sh) in build/exercise-check/ and
# checks that
#   1. the copy compiles (tests and the attend program),
#   2. the chapter's tests fail there, and
#   3. every exercise of the chapter is named by a failing test of the chapter
#      (an exercise hidden behind another one's failure is then stripped
#      alone and checked again).
# That the tests pass with the solutions in place is what `make test` checks
# on the repository itself. The copy is kept between chapters and runs, so
# make recompiles only the files that changed.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
copy=${EXERCISE_CHECK_DIR:-$root/build/exercise-check}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
strip=tests/exercises/strip_exercises.awk
logs="$copy.logs"
mkdir -p "$logs"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# id <TAB> file:line <TAB> what, for every exercise, in order.
all=$(awk -v list=1 -f "$strip" $(find src include tests tutorials \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' \) | sort) |
  sort -t . -k1,1n -k2,2n) || { echo "check-exercises: the marks are malformed (above)"; exit 1; }
chapters=$(printf '%s\n' "$all" | cut -f1 | cut -d. -f1 | sort -nu)
# `make check-exercises CH="01 08"`: only those chapters.
if [ -n "${1:-}" ]; then chapters=$(for c in $*; do expr "$c" + 0; done); fi

started=$(date +%s)
failures=0
fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}

# Builds the copy with `selection` stripped and runs [chNN]; leaves in
# $logs/run.txt one "exercise <TAB> test case" line per failing test case
# that names an exercise. Returns 1 if the copy does not build, 2 if the
# tests pass.
run_stripped() {
  selection=$1
  tag=$2
  sh tests/exercises/make_copy.sh --force "$copy" "$selection" > /dev/null || return 1
  if ! (cd "$copy" && make --no-print-directory -j"$jobs" tests) > "$logs/build.txt" 2>&1; then
    tail -n 30 "$logs/build.txt"
    return 1
  fi
  # (At most 10 minutes: a test that waits for a program that has already
  # failed would otherwise hold the check up.)
  (cd "$copy" && timeout 600 ./build/tests/attend_tests "$tag" -r xml) > "$logs/tests.xml" 2>&1
  status=$?
  if [ "$status" -ge 124 ]; then
    echo "  (the tests of $selection stopped with status $status: a timeout, or std::terminate from an"
    echo "   exception thrown before main(), in a destructor or inside an OpenMP region; see $logs/tests.xml)"
  fi
  # The test case each message appears in (Catch2's XML: <TestCase name="...">).
  awk '
    function unescape(s) {
      gsub(/&quot;/, "\"", s); gsub(/&apos;/, "'"'"'", s); gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s)
      gsub(/&amp;/, "\\&", s); return s }
    /<TestCase / { name = $0; sub(/.*<TestCase name="/, "", name); sub(/".*/, "", name); name = unescape(name) }
    { line = $0
      while (match(line, /exercise [0-9]+\.[0-9]+:/)) {
        print substr(line, RSTART + 9, RLENGTH - 10) "\t" name
        line = substr(line, RSTART + RLENGTH) } }' "$logs/tests.xml" | sort -u > "$logs/run.txt"
  [ "$status" -ne 0 ] || return 2
  return 0
}

# The failing test cases that name exercise $1, from a list made by run_stripped.
tests_naming() {
  awk -F '\t' -v id="$1" '$1 == id { print $2 }' "$2"
}

report=""
for ch in $chapters; do
  tag=$(printf '[ch%02d]' "$ch")
  ids=$(printf '%s\n' "$all" | awk -F '\t' -v ch="$ch" '{ split($1, p, "."); if (p[1] + 0 == ch + 0) print $1 }')
  if [ -z "$ids" ]; then
    fail "chapter $ch has no exercises"
    continue
  fi
  echo "=== chapter $ch: $(echo $ids) $(date -u +%H:%M:%S)"
  run_stripped "$ch" "$tag"
  case $? in
    1) fail "chapter $ch: the copy with its exercises stripped does not compile"; continue ;;
    2) fail "chapter $ch: its tests $tag pass with every exercise stripped" ;;
  esac
  cp "$logs/run.txt" "$logs/chapter.txt"
  chapter_log=$(printf '%s/ch%02d.txt' "$logs" "$ch")
  rm -f "$chapter_log.new"
  for id in $ids; do
    if [ -z "$(tests_naming "$id" "$logs/chapter.txt")" ]; then
      # Hidden behind another exercise's failure? Strip it alone.
      run_stripped "$id" "$tag"
      code=$?
      [ "$code" -eq 1 ] && { fail "exercise $id: the copy with it stripped does not compile"; continue; }
      awk -F '\t' -v id="$id" '$1 == id' "$logs/run.txt" >> "$logs/chapter.txt"
    fi
    tests=$(tests_naming "$id" "$logs/chapter.txt")
    printf '%s\n' "$tests" | sed "s/^/$id	/" >> "$chapter_log.new"
    where=$(printf '%s\n' "$all" | awk -F '\t' -v id="$id" '$1 == id { print $2 }')
    if [ -z "$tests" ]; then
      fail "exercise $id ($where): no $tag test fails without it: add one"
    else
      count=$(printf '%s\n' "$tests" | grep -c .)
      line="  $id $where: $count failing test case(s), e.g. \"$(printf '%s\n' "$tests" | head -n 1)\""
      echo "$line"
      report="$report$line
"
    fi
  done
  # Every failing test case that names each exercise: $logs/chNN.txt.
  [ -f "$chapter_log.new" ] && mv "$chapter_log.new" "$chapter_log"
done

# Leave the copy solved, so that a later run starts from the usual build.
sh tests/exercises/make_copy.sh --force "$copy" "" > /dev/null
elapsed=$(( $(date +%s) - started ))
echo
printf '%s' "$report" | sort -t . -k1,1n -k2,2n > "$logs/summary.txt"
echo "check-exercises: $(grep -c . "$logs/summary.txt") exercises graded by their chapter's tests," \
  "$failures problem(s), $elapsed s (logs: $logs)"
[ "$failures" -eq 0 ]
