#!/usr/bin/env bash
# make demo: measure a local test world (dnsmasq, nginx, gnutls-serv and
# misbehaving peers on loopback, see tests/peers) and show what parallax
# records. Nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=$BUILD/demo
PEERS=$OUT/peers
PX=$BUILD/parallax

COLLECTOR_PORT=${PX_DEMO_PORT:-18080}
COLLECTOR=http://127.0.0.1:$COLLECTOR_PORT

rm -rf "$OUT"
mkdir -p "$OUT"
cleanup() {
  [ -n "${COLLECTOR_PID:-}" ] && kill "$COLLECTOR_PID" 2>/dev/null && wait "$COLLECTOR_PID" 2>/dev/null
  tests/peers/peers.sh stop "$PEERS" >/dev/null 2>&1 || true
}
trap cleanup EXIT
tests/peers/peers.sh start "$PEERS"

# The collector, on SQLite, on loopback.
"$BUILD/parallax-collector" --listen "127.0.0.1:$COLLECTOR_PORT" \
  --db "sqlite:$OUT/collector.sqlite" 2>"$OUT/collector.log" &
COLLECTOR_PID=$!
for _ in $(seq 50); do
  curl -fsS "$COLLECTOR/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
# shellcheck source=/dev/null
. tests/peers/peers.env

common=(--resolver "$PX_DNS_GOOD:$PX_DNS_PORT" --no-system-resolver
        --port "$PX_TLS_PORT" --ca-file "$PEERS/pki/ca.pem"
        --allow-nonpublic-addresses --timeout 2000 --probe-cc ZZ
        --state-dir "$OUT/agent" --collector "$COLLECTOR")

echo
echo "== 1. A small world: valid chains, broken ones, old servers, hostile peers"
"$PX" measure "${common[@]}" --summary --output "$OUT/world.jsonl" \
  www.example.test alias2.example.test expired.example.test \
  wronghost.example.test unknownroot.example.test tls10.example.test \
  noreneg.example.test www.icloud.com reset.example.test closed.example.test \
  stall.example.test nx.example.test

echo
echo "== 2. The 2014 iCloud interception: correct DNS, but the path to the"
echo "      address leads to a server with a self-signed certificate"
"$PX" measure "${common[@]}" --summary --output "$OUT/icloud-intercepted.jsonl" \
  --address "$PX_TLS_MITM" www.icloud.com

echo
/usr/bin/python3 - "$OUT/icloud-intercepted.jsonl" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).readline())
for h in m["test_keys"]["tls_handshakes"]:
    leaf = h["peer_certificates"][0] if h["peer_certificates"] else {}
    print(f'  {h["address"]:<22} {h["tls_version"]:<8} {h["cipher_suite"]:<32} '
          f'{h["failure"] or "verified"}')
    print(f'  {"":<22} leaf {leaf.get("sha256", "")[:16]}…  {leaf.get("subject", "")}'
          f'{"  (self-signed)" if leaf.get("self_signed") else ""}')
PY
echo
echo "== 3. Signed, uploaded, verifiable by anyone with OpenSSH"
"$PX" status --state-dir "$OUT/agent" | sed 's/^/  /'
curl -fsS "$COLLECTOR/api/v1/allowed_signers" > "$OUT/allowed_signers"
UID_=$(curl -fsS "$COLLECTOR/api/v1/measurements?domain=www.icloud.com&limit=1" |
       /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["measurement_uid"])')
curl -fsS "$COLLECTOR/api/v1/raw_measurement?measurement_uid=$UID_" > "$OUT/m.json"
curl -fsS "$COLLECTOR/api/v1/measurement_signature?measurement_uid=$UID_" > "$OUT/m.json.sig"
KEY_ID=$("$PX" status --state-dir "$OUT/agent" | sed -n 's/^key id: //p')
echo
echo "A researcher verifies measurement $UID_ with:"
echo "  ssh-keygen -Y verify -f $OUT/allowed_signers -I '$KEY_ID' \\"
echo "      -n parallax-measurement-v1 -s $OUT/m.json.sig < $OUT/m.json"
ssh-keygen -Y verify -f "$OUT/allowed_signers" -I "$KEY_ID" -n parallax-measurement-v1 \
  -s "$OUT/m.json.sig" < "$OUT/m.json" | sed 's/^/  -> /'
echo
echo "The measurements (one OONI-style JSON line per target) are in:"
echo "  $OUT/world.jsonl"
echo "  $OUT/icloud-intercepted.jsonl"
echo "and in the collector's database $OUT/collector.sqlite (API at $COLLECTOR while it runs)."
