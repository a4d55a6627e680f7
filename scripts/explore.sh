#!/usr/bin/env bash
# make explore: the collector's pages and API over the database `make demo`
# left behind (BUILD/demo/collector.sqlite), on 127.0.0.1:8080, until
# Ctrl-C. The demo's own collector lives in a network namespace that is
# gone when the demo ends; this one runs on the host's loopback, read by a
# browser on this machine. PX_EXPLORE_LISTEN and PX_EXPLORE_DB override
# the address and the database.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=$BUILD/demo
LISTEN=${PX_EXPLORE_LISTEN:-127.0.0.1:8080}
DB=${PX_EXPLORE_DB:-$OUT/collector.sqlite}

if [ ! -f "$DB" ]; then
  echo "explore: no demo database at $DB: run \`make demo\` first (as root: the" >&2
  echo "         loopback demo without root keeps no collector database)." >&2
  exit 2
fi
case $LISTEN in
  127.*|localhost:*|\[::1\]:*) ;;
  *) echo "explore: $LISTEN is not a loopback address: the demo's data stays on this machine" >&2
     exit 2 ;;
esac
args=(--listen "$LISTEN" --db "sqlite:$DB" --allow-nonpublic-addresses)
# The demo world's trust anchors and targets, where the demo left them:
# the collector re-judges chains with the same roots the agents used.
[ -f "$OUT/world/pki/ca.pem" ] && args+=(--ca-file "$OUT/world/pki/ca.pem")
[ -f "$OUT/targets.txt" ] && args+=(--targets "$OUT/targets.txt")
echo "explore: http://$LISTEN/ (the overview), http://$LISTEN/?domain=www.icloud.com;"
echo "         Ctrl-C stops it."
exec "$BUILD/parallax-collector" "${args[@]}"
