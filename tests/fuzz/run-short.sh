#!/bin/sh
# run-short.sh FUZZER SRCDIR WORKDIR TARGET RUNS -- the ctest entry of one
# fuzz target: RUNS executions starting from the checked-in corpus (every
# earlier crash is in it), with the target's dictionary, a fixed seed, and
# new inputs written to WORKDIR, never into the source tree.
set -eu
fuzzer=$1 src=$2 work=$3 target=$4 runs=$5
corpus=$src/corpus/$target
out=$work/$target
rm -rf "$out"
mkdir -p "$out/new" "$out/artifacts"
set -- -runs="$runs" -seed=1 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$out/artifacts/"
[ -f "$src/$target.dict" ] && set -- "$@" -dict="$src/$target.dict"
[ -f "$src/$target.options" ] && set -- "$@" $(cat "$src/$target.options")
exec "$fuzzer" "$@" "$out/new" "$corpus"
