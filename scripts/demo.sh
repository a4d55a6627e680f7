#!/usr/bin/env bash
# make demo: a simulated internet of eleven countries (network namespaces,
# see tests/world): one intercepts www.icloud.com on the path (2014), one
# redirects a news site by DNS, one resets handshakes to a social network,
# one serves mail from a rogue intermediate (2015), one intercepts a bank
# with a state root its citizens were told to install, one black-holes
# handshakes to a video site, one injects forged DNS answers for a forum;
# a CDN legitimately serves different certificates in different regions.
# Agents in every country run real rounds against a real collector, and the
# comparison names the interference -- and only it. Nothing leaves the
# machine. Without root (namespaces), the loopback world of tests/peers is
# measured instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=$BUILD/demo
PX=$PWD/$BUILD/parallax
COLLECTOR_BIN=$PWD/$BUILD/parallax-collector
WORLD=tests/world/world.sh

rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

env_value() { sed -n "s/^$1=//p" tests/world/world.env; }

demo_world() {
  local W=$OUT/world URL cc asn domain
  # Expand W now: the trap runs after this function's locals are gone.
  trap "[ -n \"\${COLLECTOR_PID:-}\" ] && kill \"\$COLLECTOR_PID\" 2>/dev/null; \"$WORLD\" down \"$W\" >/dev/null 2>&1 || true" EXIT
  "$WORLD" up "$W"
  URL="http://$(env_value COLLECTOR_ADDR):$(env_value COLLECTOR_PORT)"
  printf '%s\n' www.icloud.com appleid.apple.com cdn.example.com news.example.com whoami.example.net \
    social.example.org down.example.net mail.example.net bank.example.net video.example.com \
    forum.example.org > "$OUT/targets.txt"
  "$WORLD" exec core -- "$COLLECTOR_BIN" --listen "${URL#http://}" \
    --db "sqlite:$OUT/collector.sqlite" --ca-file "$W/pki/ca.pem" \
    --targets "$OUT/targets.txt" --allow-nonpublic-addresses --sth-interval 5 \
    2>"$OUT/collector.log" &
  COLLECTOR_PID=$!
  for _ in $(seq 100); do
    "$WORLD" exec core -- curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done

  echo
  local n trust
  n=$(env_value WORLD_VANTAGES | wc -w)
  echo "== $n volunteers set up (consent, config, key), as \`parallax setup\` does"
  rm -rf "$OUT/agents"
  for cc in $(env_value WORLD_VANTAGES); do
    # KZ's volunteers were made to install the state root (TRUST_KZ).
    trust=$(env_value "TRUST_$cc")
    "$WORLD" exec "$cc" -- "$PX" setup --yes --config "$OUT/agents/$cc.conf" \
      --state-dir "$OUT/agents/$cc" --collector "$URL" \
      --resolver "$(env_value "RESOLVER_$cc")" --no-system-resolver \
      --ca-file "$W/pki/${trust:-ca.pem}" --probe-cc "$cc" --probe-asn "$(env_value "ASN_$cc")" \
      --allow-nonpublic-addresses --timeout 3000 > "$OUT/setup-$cc.log"
    echo "   $cc: $(grep 'key id:' "$OUT/setup-$cc.log" | sed 's/^ *//')"
  done
  echo
  echo "== Their timers fire: check in, measure, scrub, sign, upload (two rounds:"
  echo "   the second also probes the control addresses other countries saw verify)"
  for round in 1 2; do
    local pids=()
    for cc in $(env_value WORLD_VANTAGES); do
      "$WORLD" exec "$cc" -- "$PX" run --config "$OUT/agents/$cc.conf" \
        2>"$OUT/agent-$cc-$round.log" &
      pids+=($!)
    done
    wait "${pids[@]}"
    echo "   round $round: $(grep -h 'uploaded' "$OUT"/agent-*-"$round".log | wc -l) of $n agents uploaded;" \
         "$(grep -h 'kept on this machine' "$OUT"/agent-*-"$round".log | wc -l) kept whoami.example.net" \
         "(their own address) local"
  done

  for domain in www.icloud.com news.example.com social.example.org cdn.example.com \
                mail.example.net bank.example.net video.example.com forum.example.org; do
    echo
    echo "== parallax compare --domain $domain"
    "$WORLD" exec core -- "$PX" compare --collector "$URL" --domain "$domain" | sed 's/^/  /'
  done

  echo
  echo "== Anyone can check a measurement with OpenSSH alone"
  "$WORLD" exec core -- curl -fsS "$URL/api/v1/allowed_signers" > "$OUT/allowed_signers"
  "$WORLD" exec core -- curl -fsS "$URL/api/v1/export.jsonl?probe_cc=CN&domain=www.icloud.com" |
    tail -1 > "$OUT/cn-icloud.jsonl"
  /usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
line = json.loads(open(f"{out}/cn-icloud.jsonl").readline())
open(f"{out}/m.json", "w").write(line["content"])
open(f"{out}/m.json.sig", "w").write(line["signature"])
open(f"{out}/key_id", "w").write(line["key_id"])
PY
  KEY_ID=$(cat "$OUT/key_id")
  echo "  ssh-keygen -Y verify -f $OUT/allowed_signers -I '$KEY_ID' \\"
  echo "      -n parallax-measurement-v1 -s $OUT/m.json.sig < $OUT/m.json"
  ssh-keygen -Y verify -f "$OUT/allowed_signers" -I "$KEY_ID" -n parallax-measurement-v1 \
    -s "$OUT/m.json.sig" < "$OUT/m.json" | sed 's/^/  -> /'
  echo
  echo "== ...and that the collector kept every one: its signed log (docs/transparency.md)"
  echo "  parallax audit --collector $URL --since-sth $OUT/collector-sth.json --measurements"
  # A head covering every upload: the collector signs at most once a
  # minute, so wait for one that has them all.
  local stored=0 head=-1 tries=0
  stored=$(sqlite3 "$OUT/collector.sqlite" "SELECT count(*) FROM measurements")
  while [ "$head" != "$stored" ] && [ $tries -lt 70 ]; do
    head=$("$WORLD" exec core -- curl -fsS "$URL/api/v1/log/sth" | jq .tree_size)
    [ "$head" = "$stored" ] || sleep 1
    tries=$((tries + 1))
  done
  "$WORLD" exec core -- "$PX" audit --collector "$URL" --since-sth "$OUT/collector-sth.json" \
    --measurements | sed 's/^/  -> /'
  "$WORLD" exec core -- curl -fsS "$URL/api/v1/log/proof/inclusion?measurement_uid=$(
    jq -r .measurement_uid "$OUT/cn-icloud.jsonl")" |
    jq -c '{leaf_index, tree_size, root_hash, audit_path}' | sed 's/^/  inclusion proof of the CN measurement: /'
  echo
  echo "Data: the collector's database $OUT/collector.sqlite; agents' spools in $OUT/agents/."
  echo "To look at it in a browser: \`make explore\` serves it on http://127.0.0.1:8080/"
  echo "until Ctrl-C (this demo's collector goes with the world's namespaces)."
}

demo_loopback() {
  local PEERS=$OUT/peers
  trap "tests/peers/peers.sh stop \"$PEERS\" >/dev/null 2>&1 || true" EXIT
  tests/peers/peers.sh start "$PEERS"
  # shellcheck source=/dev/null
  . tests/peers/peers.env
  "$PX" measure --resolver "$PX_DNS_GOOD:$PX_DNS_PORT" --no-system-resolver \
    --port "$PX_TLS_PORT" --ca-file "$PEERS/pki/ca.pem" --allow-nonpublic-addresses \
    --timeout 2000 --summary --output "$OUT/world.jsonl" \
    www.example.test expired.example.test wronghost.example.test unknownroot.example.test \
    tls10.example.test www.icloud.com reset.example.test stall.example.test nx.example.test
  echo
  echo "The 2014 pattern, one vantage: the real address and an intercepting one"
  "$PX" measure --resolver "$PX_DNS_GOOD:$PX_DNS_PORT" --no-system-resolver \
    --port "$PX_TLS_PORT" --ca-file "$PEERS/pki/ca.pem" --allow-nonpublic-addresses \
    --address "$PX_TLS_MITM" --summary --output "$OUT/icloud.jsonl" www.icloud.com
  echo "JSON: $OUT/world.jsonl $OUT/icloud.jsonl"
}

if [ "$(id -u)" -eq 0 ]; then
  demo_world
else
  echo "demo: the six-country world needs root (network namespaces); measuring the"
  echo "      loopback world of tests/peers instead."
  demo_loopback
fi
