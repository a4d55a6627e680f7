#!/usr/bin/env bash
# fuzz.sh BUILD SECONDS [TARGET...] -- `make fuzz`: runs each libFuzzer
# target of BUILD (the PX_FUZZ configuration) for SECONDS, starting from
# the checked-in corpus plus what earlier runs found (BUILD/fuzz-corpus),
# and prints executions, coverage and findings per target. Crashing
# inputs land in BUILD/fuzz-findings/TARGET/; a finding is fixed by
# fixing the code and adding the input to tests/fuzz/corpus/TARGET/.
# FUZZ_JOBS targets run at once (default: the number of CPUs). A target
# with a TARGET.runs file runs that many executions instead of SECONDS.
set -uo pipefail

build=${1:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
seconds=${2:?usage: fuzz.sh BUILD SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)/tests/fuzz
bin=$build/tests/fuzz
jobs=${FUZZ_JOBS:-$(nproc)}
if [ $# -eq 0 ]; then
  set -- $(sed -n 's/^set(PX_FUZZ_TARGETS \(.*\))$/\1/p' "$src/CMakeLists.txt")
fi

run_one() {
  local t=$1 work=$build/fuzz-corpus/$1 found=$build/fuzz-findings/$1
  rm -rf "$found" # this run's findings only
  mkdir -p "$work" "$found"
  # A target with TARGET.runs runs that many inputs instead of SECONDS
  # (hostile: the whole upload path per input, a million of them).
  local budget=(-max_total_time="$seconds")
  [ -f "$src/$t.runs" ] && budget=(-runs="$(cat "$src/$t.runs")")
  local args=("${budget[@]}" -timeout=20 -rss_limit_mb=2048
              -print_final_stats=1 -artifact_prefix="$found/")
  [ -f "$src/$t.dict" ] && args+=(-dict="$src/$t.dict")
  [ -f "$src/$t.options" ] && read -r -a more <"$src/$t.options" && args+=("${more[@]}")
  "$bin/fuzz_$t" "${args[@]}" "$work" "$src/corpus/$t" >"$build/fuzz-$t.log" 2>&1
  echo "$t $?"
}
export -f run_one
export build seconds src bin

echo "fuzz: ${#@} targets, ${seconds}s each, $jobs at a time (logs: $build/fuzz-TARGET.log)"
printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'run_one {}' >/dev/null

printf '\n%-16s %12s %8s %9s %6s %7s %16s %s\n' target executions seconds exec/s cov ft corpus findings
status=0
for t in "$@"; do
  log=$build/fuzz-$t.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  n=$(find "$build/fuzz-findings/$t" -type f | wc -l)
  [ -n "$secs" ] && [ "$secs" -gt 0 ] && rate=$(( ${runs:-0} / secs )) || rate=-
  printf '%-16s %12s %8s %9s %6s %7s %16s %s\n' "$t" "${runs:--}" "${secs:--}" "$rate" \
    "${cov:--}" "${ft:--}" "${corp:--}" "$n"
  if [ "$n" -gt 0 ]; then
    status=1
    find "$build/fuzz-findings/$t" -type f | sed 's/^/    /'
    grep -m1 -E 'invariant broken|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$log" |
      sed 's/^/    /'
  fi
done
exit $status
