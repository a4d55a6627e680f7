#!/usr/bin/env bash
# Static analysis of parallax's own C sources: cppcheck and clang-tidy over
# every translation unit of a build's compile_commands.json.
#
#   tests/static/run.sh [all|cppcheck|clang-tidy] [BUILD_DIR]
#
# BUILD_DIR (default: build) must be configured; CMake writes the
# compilation database there (CMAKE_EXPORT_COMPILE_COMMANDS), so both tools
# see the exact -D and -I of the build. Only agent/, collector/,
# collector-client/, common/, probes/ and tests/ are analysed: not the
# generated header, not third-party headers. Any finding exits 1; a missing
# tool or database exits 2. JOBS (default 2) sets the parallelism.
# Configuration: .clang-tidy files (root, collector/, tests/),
# tests/static/cppcheck.supp, tests/static/jansson.cfg; the reasons are in
# docs/reliability.md ("Static analysis and sanitizers").
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
what=${1:-all}
build=${2:-$root/build}
jobs=${JOBS:-2}

case $what in
  all | cppcheck | clang-tidy) ;;
  *) echo "usage: $0 [all|cppcheck|clang-tidy] [BUILD_DIR]" >&2; exit 2 ;;
esac
build=$(cd "$build" 2>/dev/null && pwd) || { echo "static: no build directory $2" >&2; exit 2; }
if [ ! -f "$build/compile_commands.json" ]; then
  echo "static: $build/compile_commands.json missing (configure with cmake first)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The database restricted to our sources (the fuzzers' and load driver's
# included: they are ours too).
python3 - "$build/compile_commands.json" "$root" "$work/compile_commands.json" <<'EOF'
import json, os, sys
db, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
dirs = ("agent", "collector", "collector-client", "common", "probes", "tests")
keep = []
for e in json.load(open(db)):
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    rel = os.path.relpath(f, root)
    if rel.split(os.sep)[0] in dirs and f.endswith(".c"):
        keep.append(e)
if not keep:
    sys.exit("static: no sources of ours in " + db)
json.dump(keep, open(out, "w"), indent=1)
print(f"static: {len(keep)} translation units", file=sys.stderr)
EOF

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "static: $1 not found (scripts/install-deps.sh installs it)" >&2
  exit 2
}

rc=0

run_cppcheck() {
  need cppcheck
  local t0=$SECONDS out="$work/cppcheck.txt"
  # posix and gnu: the build defines _GNU_SOURCE. openssl, libcurl and
  # sqlite3 teach it those APIs' allocation and resource rules; jansson.cfg
  # its iteration macros.
  if ! cppcheck --project="$work/compile_commands.json" --std=c11 \
      --enable=warning,style,performance,portability --inline-suppr \
      --library=posix --library=gnu --library=openssl --library=libcurl \
      --library=sqlite3 --library="$here/jansson.cfg" \
      --suppressions-list="$here/cppcheck.supp" \
      --error-exitcode=1 -j"$jobs" --quiet \
      --template='{file}:{line}:{column}: {severity}: {message} [{id}]' 2>"$out"; then
    rc=1
  fi
  # A finding with the exit status still 0 (e.g. a configuration problem
  # cppcheck reports as "information") is a finding too.
  if [ -s "$out" ]; then
    sed "s#^$root/##" "$out"
    rc=1
  fi
  echo "static: cppcheck $(cppcheck --version | cut -d' ' -f2): $(grep -c . "$out" || true) findings in $((SECONDS - t0)) s" >&2
}

run_clang_tidy() {
  local runner=""
  for r in run-clang-tidy-14 run-clang-tidy; do
    if command -v "$r" >/dev/null 2>&1; then runner=$r; break; fi
  done
  [ -n "$runner" ] || need run-clang-tidy
  need clang-tidy
  local t0=$SECONDS out="$work/clang-tidy.txt" status=0
  # .clang-tidy makes every warning an error, so a finding fails the
  # file and run-clang-tidy's status; the diagnostics are printed too.
  "$runner" -p "$work" -j "$jobs" -quiet \
      -header-filter="^$root/(agent|collector|collector-client|common|probes|tests)/" \
      >"$out" 2>"$work/clang-tidy.err" || status=$?
  sed 's/\x1b\[[0-9;]*m//g' "$out" "$work/clang-tidy.err" |
    grep -v -e '^clang-tidy' -e 'warnings generated\.$' -e '^Suppressed [0-9]* warnings' \
            -e '^Use -header-filter' -e '^Error while processing' -e '^Found compiler error' \
            -e '^Running clang-tidy' -e '^$' >"$work/clang-tidy.clean" || true
  local n
  n=$(grep -cE ': (warning|error): ' "$work/clang-tidy.clean" || true)
  if [ "$status" -ne 0 ] || [ "$n" -ne 0 ]; then
    sed "s#^$root/##" "$work/clang-tidy.clean"
    rc=1
  fi
  echo "static: clang-tidy $(clang-tidy --version | sed -n 's/.*LLVM version \([0-9.]*\).*/\1/p'): $n findings in $((SECONDS - t0)) s" >&2
}

case $what in
  cppcheck) run_cppcheck ;;
  clang-tidy) run_clang_tidy ;;
  all) run_cppcheck; run_clang_tidy ;;
esac
exit $rc
