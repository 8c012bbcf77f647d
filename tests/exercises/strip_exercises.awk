# The exercises (README, "Exercises"; each chapter text's section
# "Exercises"): replaces each marked region of a source file by one line that
# throws, for a learner's copy. Used by tests/exercises/make_copy.sh (`make
# exercise CH=05`) and tests/exercises/check.sh (`make check-exercises`). A
# region is marked in the real source by two comment lines:
#     // exercise 5.1 begin: attention weights = softmax(q k^T / sqrt(D)) ...
#     ... the code a learner writes ...
#     // exercise 5.1 end
#
#   awk -v select="5 7.2" -v docs="docs/01-tensors.md ..." -f strip_exercises.awk FILE
#       prints FILE with the regions of chapter 5 and exercise 7.2 stripped
#       ("all" selects every exercise, "" none); the marks themselves stay.
#   awk -v list=1 -f strip_exercises.awk FILES...
#       prints one line per exercise: id <TAB> file:line <TAB> what to write
# Either way a mark out of place (an end without its begin, a begin inside
# another exercise, an id used twice, a region left open) is an error naming
# the file and line.

function fail(message) {
  print FILENAME ":" FNR ": " message > "/dev/stderr"
  failed = 1
  exit 1
}

# "05" -> "5", "07.2" -> "7.2": numbers without leading zeros.
function normalize(id,    parts, n) {
  n = split(id, parts, ".")
  if (n == 1) return (parts[1] + 0) ""
  return (parts[1] + 0) "." (parts[2] + 0)
}

function c_string(text) {
  gsub(/\\/, "\\\\", text)
  gsub(/"/, "\\\"", text)
  return text
}

BEGIN {
  n = split(select, chosen, " ")
  for (i = 1; i <= n; ++i) wanted[chosen[i] == "all" ? "all" : normalize(chosen[i])] = 1
  n = split(docs, doc_files, " ")
  for (i = 1; i <= n; ++i) {
    chapter = doc_files[i]
    sub(/^.*\//, "", chapter)
    sub(/-.*$/, "", chapter)
    doc_of[chapter + 0] = doc_files[i]
  }
}

FNR == 1 && open != "" {
  fail("exercise " open " is not closed before the end of the file")
}

{
  text = $0
  sub(/^[ \t]+/, "", text)
  indent = substr($0, 1, length($0) - length(text))
}

text ~ /^\/\/ exercise [0-9]+\.[0-9]+ begin/ {
  if (open != "") fail("exercise begins inside exercise " open)
  id = text
  sub(/^\/\/ exercise /, "", id)
  sub(/ .*$/, "", id)
  if (id in place) fail("exercise " id " is marked twice (also at " place[id] ")")
  place[id] = FILENAME ":" FNR
  what = text
  sub(/^\/\/ exercise [0-9]+\.[0-9]+ begin:?[ ]*/, "", what)
  if (what == "") fail("exercise " id ": the begin mark must say what to write")
  open = id
  chapter = id
  sub(/\..*$/, "", chapter)
  if (list) {
    print id "\t" FILENAME ":" FNR "\t" what
    next
  }
  print
  stripping = wanted["all"] || (chapter "") in wanted || id in wanted
  if (stripping) {
    doc = (chapter + 0) in doc_of ? doc_of[chapter + 0] : "docs/"
    print indent "throw attend::Error(\"exercise " id ": " c_string(what) ", see " doc "#exercises\");"
  }
  next
}

text ~ /^\/\/ exercise [0-9]+\.[0-9]+ end/ {
  id = text
  sub(/^\/\/ exercise /, "", id)
  sub(/ .*$/, "", id)
  if (open == "") fail("exercise " id " ends but never began")
  if (id != open) fail("exercise " id " ends inside exercise " open)
  open = ""
  stripping = 0
  if (!list) print
  next
}

!list && !stripping { print }

END {
  if (!failed && open != "") fail("exercise " open " is not closed before the end of the file")
  if (failed) exit 1
}
