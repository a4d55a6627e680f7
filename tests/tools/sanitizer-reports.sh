#!/bin/sh
# The sanitizer build's reports, collected from every process a test
# started, whatever the test did with its exit status or its stderr.
#
#   sanitizer-reports.sh clear DIR   before the tests: an empty DIR
#   sanitizer-reports.sh check DIR   after them: print every report, exit 1
#                                    if there is one
#
# tests/CMakeLists.txt points each test's LSAN_OPTIONS at DIR/<test> with
# log_path (a common flag, so ASan's and UBSan's reports go there too). A
# leak found when a process exits (the collector after SIGTERM, an agent
# command that expects to fail, the signer's child) then fails the run even
# when the test only looked at the output.
set -eu
what=$1
dir=$2
case $what in
  clear)
    rm -rf "$dir"
    mkdir -p "$dir"
    ;;
  check)
    n=0
    for f in "$dir"/*; do
      [ -s "$f" ] || continue
      n=$((n + 1))
      # DIR/<test>.<pid>: the test is the name up to the pid.
      echo "==== sanitizer report of test ${f##*/} (pid after the last dot)"
      cat "$f"
    done
    if [ "$n" -gt 0 ]; then
      echo "sanitizer-reports: $n report(s) in $dir" >&2
      exit 1
    fi
    echo "sanitizer-reports: none"
    ;;
  *)
    echo "usage: $0 clear|check DIR" >&2
    exit 2
    ;;
esac
