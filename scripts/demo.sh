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

mkdir -p "$OUT"
trap 'tests/peers/peers.sh stop "$PEERS" >/dev/null 2>&1 || true' EXIT
tests/peers/peers.sh start "$PEERS"
# shellcheck source=/dev/null
. tests/peers/peers.env

common=(--resolver "$PX_DNS_GOOD:$PX_DNS_PORT" --no-system-resolver
        --port "$PX_TLS_PORT" --ca-file "$PEERS/pki/ca.pem"
        --allow-nonpublic-addresses --timeout 2000 --probe-cc ZZ)

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
echo "The measurements (one OONI-style JSON line per target) are in:"
echo "  $OUT/world.jsonl"
echo "  $OUT/icloud-intercepted.jsonl"
