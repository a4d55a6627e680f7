#!/usr/bin/env bash
# soak.sh BUILD_DIR [TEST...] -- the load and fault tests of tests/load at
# full size (PX_SOAK=1): 1,000 concurrent clients, hostile clients for a
# minute, 20 kill -9 cycles (px-loadgen, and real agents in
# tests/cli/test_collector_crash.py), a 20,000-target agent soak: the same
# tests that `make check` runs small. Figures go to BUILD_DIR/soak/figures.jsonl
# (one JSON object per test; docs/reliability.md quotes them) and a short
# summary is printed at the end.
#
# The loopback test world (tests/peers) is started here, in BUILD_DIR/soak/
# peers; only one can run on a host, so while another is up this waits for
# it (up to an hour) instead of disturbing it.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:?usage: soak.sh BUILD_DIR [TEST...]}" && pwd)
shift
TESTS=("$@")
[ ${#TESTS[@]} -gt 0 ] || TESTS=(test_collector_connections test_collector_load
                                 test_collector_hostile test_collector_kill9
                                 test_collector_crash test_agent_disk_full test_agent_soak)
OUT=$BUILD/soak
PEERS=$OUT/peers
mkdir -p "$OUT"
: > "$OUT/figures.jsonl"

for bin in parallax parallax-collector tests/px-loadgen; do
  [ -x "$BUILD/$bin" ] || { echo "soak: $BUILD/$bin is missing (build first)" >&2; exit 1; }
done

waited=0
until "$SRC/tests/peers/peers.sh" start "$PEERS" >"$OUT/peers-start.log" 2>&1; do
  if ! grep -q "already running\|already in use" "$OUT/peers-start.log"; then
    cat "$OUT/peers-start.log" >&2
    exit 1
  fi
  [ $waited -ge 3600 ] && { echo "soak: the test world stayed busy for an hour" >&2; exit 1; }
  [ $waited -eq 0 ] && echo "soak: another test world is running; waiting for it" >&2
  sleep 20
  waited=$((waited + 20))
done
trap '"$SRC/tests/peers/peers.sh" stop "$PEERS" >/dev/null 2>&1' EXIT

export PX_SOAK=1 PX_REPORT=$OUT/figures.jsonl
export PX_PEERS_DIR=$PEERS PX_PEERS_ENV=$SRC/tests/peers/peers.env PX_SOURCE_DIR=$SRC
export PX_BIN=$BUILD/parallax PX_COLLECTOR_BIN=$BUILD/parallax-collector
export PX_LOADGEN_BIN=$BUILD/tests/px-loadgen PX_SANITIZE=0
grep -q "PX_SANITIZE:BOOL=ON" "$BUILD/CMakeCache.txt" 2>/dev/null && export PX_SANITIZE=1

failed=()
for t in "${TESTS[@]}"; do
  echo "== $t ($(date -u +%H:%M:%S))"
  start=$(date +%s)
  file=$HERE/$t.py
  [ -f "$file" ] || file=$SRC/tests/cli/$t.py   # test_collector_crash: agents, 20 kills
  /usr/bin/python3 "$file" >"$OUT/$t.log" 2>&1
  rc=$?
  echo "   exit $rc after $(( $(date +%s) - start )) s (log: $OUT/$t.log)"
  case $rc in 0|77) ;; *) failed+=("$t"); tail -30 "$OUT/$t.log" ;; esac
done

/usr/bin/python3 - "$OUT/figures.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    t = d.pop("test")
    keep = {k: v for k, v in d.items() if k not in ("soak", "table", "mix", "per_kill", "stderr")}
    print(f"{t}: {json.dumps(keep, sort_keys=True)}")
EOF
if [ ${#failed[@]} -gt 0 ]; then
  echo "soak: FAILED: ${failed[*]}"
  exit 1
fi
echo "soak: all passed; figures in $OUT/figures.jsonl"
