#!/usr/bin/env bash
# make-pki.sh OUTDIR -- build the throwaway test PKI used by tests/peers.
#
# Everything is generated fresh with the openssl CLI (EC P-256 keys unless
# noted; RSA 2048 where the 2014-era scenario needs it). Nothing here is a
# secret: keys are test-only and regenerated on every fixture start. How
# keys, extensions and dates are made is shared with tests/world: see
# tests/tools/pki.sh.
#
# Output (PEM, in OUTDIR):
#   root.pem/.key        CN=Parallax Test Root CA,O=parallax tests (trusted)
#   ca.pem               the test trust store = root.pem only
#   inter.pem/.key       intermediate CA (pathlen:0) signed by root
#   good.pem/.key        www.example.test, example.test, alias.example.test,
#                        alias2.example.test   (+ good-chain.pem = leaf+inter)
#   expired.pem/.key     expired.example.test, 2020-01-01 .. 2021-01-01 (+chain)
#   wronghost.pem/.key   other.example.test only (+chain)
#   mitm.pem/.key        RSA 2048 self-signed /C=cn/O=www.icloud.com/CN=www.icloud.com, no SAN
#   root2.pem/.key       CN=Unknown Test Root,O=elsewhere (NOT in ca.pem)
#   unknownroot.pem/.key unknownroot.example.test, signed by root2
#                        (+ unknownroot-chain.pem = leaf+root2)
#   tls10.pem/.key       RSA 2048, tls10.example.test (+chain)
#   icloud.pem/.key      www.icloud.com, icloud.com (+chain)
#   noreneg.pem/.key     noreneg.example.test (+chain)
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../tools/pki.sh
. "$HERE/../tools/pki.sh"
pki_init "$1"

# leaf NAME KEYTYPE SIGNER DNS...: the first DNS name is the CN.
leaf() {
    pki_leaf "$1" "/CN=$4/O=parallax tests" "$2" "$3" "${@:4}"
}

# --- CAs -------------------------------------------------------------------
pki_ca root "/CN=Parallax Test Root CA/O=parallax tests" self
cp "$PKI_OUT/root.pem" "$PKI_OUT/ca.pem"
pki_ca inter "/CN=Parallax Test Intermediate CA/O=parallax tests" root
pki_ca root2 "/CN=Unknown Test Root/O=elsewhere" self

# --- leaves ----------------------------------------------------------------
leaf good ec inter www.example.test example.test alias.example.test alias2.example.test
pki_leaf --from 200101000000Z --until 210101000000Z \
    expired "/CN=expired.example.test/O=parallax tests" ec inter expired.example.test
leaf wronghost   ec  inter other.example.test
leaf unknownroot ec  root2 unknownroot.example.test
leaf tls10       rsa inter tls10.example.test
leaf icloud      ec  inter www.icloud.com icloud.com
leaf noreneg     ec  inter noreneg.example.test

# The 2014 iCloud MITM certificate: RSA 2048, self-signed, no SAN.
pki_selfsigned mitm "/C=cn/O=www.icloud.com/CN=www.icloud.com" rsa

pki_finish
