#!/bin/sh
# Writes a learner's copy of the repository in which the marked exercises of
# the chosen chapters throw "exercise N.M: ..." instead of running (README,
# "Exercises"). Run by `make exercise CH=05`, `make exercises` and the check
# (tests/exercises/check.sh).
#
#   tests/exercises/make_copy.sh [--force] DEST SELECTION...
#     SELECTION: chapters (05, 5), single exercises (7.2), or "all".
#     DEST must not exist yet, unless --force: then every file of DEST that
#     differs from a fresh copy is overwritten (a learner's work there is
#     lost) and the others are left alone, so that make rebuilds only those.
set -eu

force=0
if [ "${1:-}" = "--force" ]; then
  force=1
  shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--force] DEST CHAPTER|EXERCISE|all..." >&2
  exit 2
fi
dest=$1
shift
selection="$*"

root=$(cd "$(dirname "$0")/../.." && pwd)
strip="$root/tests/exercises/strip_exercises.awk"

case "$dest" in
  /*) ;;
  *) dest="$(pwd)/$dest" ;;
esac
if [ -e "$dest" ] && [ "$force" -eq 0 ]; then
  echo "$dest already exists (your exercises may be in it): remove it, or run" >&2
  echo "  make exercise CH=NN RESET=1   to overwrite every file you changed there" >&2
  exit 1
fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [ "$dest" = "$root" ]; then
  echo "the copy cannot be the repository itself" >&2
  exit 1
fi

cd "$root"
docs=$(ls docs/[0-9][0-9]-*.md 2>/dev/null | tr '\n' ' ')
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# What a learner needs: the top level of the repository (build outputs and
# generated files are not copied).
files=$(find Makefile README.md .gitignore .ci docs include src tests tutorials -type f \
          -not -path '*/__pycache__/*' 2>/dev/null | sort)
changed=0
for f in $files; do
  case "$f" in
    *.cpp | *.hpp | *.cu | *.h)
      awk -v select="$selection" -v docs="$docs" -f "$strip" "$f" > "$tmp" ;;
    *)
      cp "$f" "$tmp" ;;
  esac
  if ! cmp -s "$tmp" "$dest/$f"; then
    mkdir -p "$dest/$(dirname "$f")"
    cp "$tmp" "$dest/$f"
    [ -x "$f" ] && chmod +x "$dest/$f"
    changed=$((changed + 1))
  fi
done

# EXERCISES.md at the top of the copy: what to write, and how to start over.
# (Its presence also tells the Makefile that this is a learner's copy.)
# (Listed from the copy, whose line numbers differ below a stripped region.)
selected=$(cd "$dest" && awk -v list=1 -f "$strip" $(printf '%s\n' $files | grep -E '\.(cpp|hpp|cu|h)$') |
  awk -F '\t' -v select="$selection" '
    BEGIN { n = split(select, s, " "); for (i = 1; i <= n; ++i) {
              x = s[i]; if (x != "all") { split(x, p, "."); x = (p[1] + 0) (x ~ /\./ ? "." (p[2] + 0) : "") }
              want[x] = 1 } }
    { chapter = $1; sub(/\..*$/, "", chapter)
      if (want["all"] || (chapter in want) || ($1 in want)) print }' |
  sort -t . -k1,1n -k2,2n)
{
  echo "# Exercises: a learner's copy of Attend"
  echo
  echo "Made by \`make exercise\` from $root for: $selection."
  echo "Each exercise below throws \`attend::Error(\"exercise N.M: ...\")\` until you"
  echo "write it, between its two marks (\`// exercise N.M begin\` ... \`end\`). Its"
  echo "chapter text (docs/NN-*.md, section \"Exercises\") says what to compute and"
  echo "which tests grade it. Check your work with \`make test CH=NN\`: the failures"
  echo "name the exercises still to write."
  echo
  echo "| exercise | where | what to write |"
  echo "|---|---|---|"
  printf '%s\n' "$selected" | awk -F '\t' 'NF == 3 { print "| " $1 " | " $2 " | " $3 " |" }'
  echo
  echo "Start over: \`make exercise CH=NN RESET=1\` in the repository you made this"
  echo "copy from (it overwrites every file that differs from a fresh copy, your"
  echo "answers included), or delete this folder and run \`make exercise CH=NN\` again."
  echo "To keep your answers first, copy the files you changed elsewhere, or make"
  echo "this folder a git repository (\`git init && git add -A && git commit -m start\`)"
  echo "before you begin, and use \`git diff\` / \`git checkout FILE\`."
} > "$tmp"
if ! cmp -s "$tmp" "$dest/EXERCISES.md"; then cp "$tmp" "$dest/EXERCISES.md"; fi

count=$(printf '%s\n' "$selected" | grep -c . || true)
echo "$dest: $count exercises to write ($selection), $changed files written; see $dest/EXERCISES.md"
