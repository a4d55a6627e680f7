#!/usr/bin/env bash
# make-pki.sh OUTDIR -- the throwaway PKI of the multi-country test world.
#
# Generated fresh on every `world.sh up` with the openssl CLI; EC P-256 keys
# unless noted. Nothing here is a secret. How keys, extensions and dates are
# made is shared with tests/peers: see tests/tools/pki.sh.
#
# Output (PEM, in OUTDIR):
#   root.pem/.key       CN=Parallax World Test Root CA     (trusted)
#   ca.pem              the trust store agents and collector are given (= root.pem)
#   inter.pem/.key      CN=Parallax World Intermediate CA  (signed by root)
#   inter2.pem/.key     CN=Parallax World CDN Intermediate CA (signed by root;
#                       issues the region B CDN certificate)
#   inter-rogue.pem/.key CN=Parallax World Rogue Intermediate CA (signed by
#                       root, so what it issues validates: it issues EG's
#                       mail.example.net)
#   state-root.pem/.key CN=Parallax World State Root: self-signed, NOT in
#                       ca.pem (issues KZ's bank.example.net)
#   kz-trust.pem        ca.pem + state-root.pem: the trust store of KZ's agents
#   Leaves, each with NAME-chain.pem = leaf + its intermediate (what nginx serves):
#   icloud              www.icloud.com, icloud.com, setup.icloud.com   (inter)
#   appleid             appleid.apple.com                              (inter)
#   news                news.example.com                               (inter)
#   social              social.example.org                             (inter)
#   cdn-a               cdn.example.com, subject O=CDN region A        (inter)
#   cdn-b               cdn.example.com, subject O=CDN region B        (inter2)
#   mail                mail.example.net                               (inter)
#   rogue-mail          mail.example.net                         (inter-rogue)
#   bank                bank.example.net                               (inter)
#   state-bank          bank.example.net                          (state-root)
#   shop                shop.example.com (the geo node serves shop.pem alone)
#   rotate-a, rotate-b  rotate.example.com, two keys                   (inter)
#   expired             expired.example.org, valid from -60 to -30 days (inter)
#   video               video.example.com                              (inter)
#   forum               forum.example.org                              (inter)
#   Self-signed, no chain:
#   mitm.pem/.key       RSA 2048, /C=cn/O=www.icloud.com/CN=www.icloud.com,
#                       no SAN: the 2014 iCloud MITM certificate
#   blockpage.pem/.key  CN=blocked.invalid (SAN blocked.invalid)
#
# Validity: yesterday .. +365 days (CAs +3650), so small clock skews between
# the namespaces' processes never matter.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../tools/pki.sh
. "$HERE/../tools/pki.sh"
pki_init "$1"

# leaf [--from START --until END] NAME SIGNER ORG DNS...: EC; the first DNS
# name is the CN.
leaf() {
    local valid=()
    while [ "${1:-}" = --from ] || [ "${1:-}" = --until ]; do
        valid+=("$1" "$2")
        shift 2
    done
    pki_leaf "${valid[@]+"${valid[@]}"}" "$1" "/O=$3/CN=$4" ec "$2" "${@:4}"
}

# --- CAs -------------------------------------------------------------------
pki_ca root "/O=parallax world/CN=Parallax World Test Root CA" self
cp "$PKI_OUT/root.pem" "$PKI_OUT/ca.pem"
pki_ca inter "/O=parallax world/CN=Parallax World Intermediate CA" root
pki_ca inter2 "/O=parallax world/CN=Parallax World CDN Intermediate CA" root

# The 2015 pattern: an intermediate the root really signed, in hands that
# issue for names they should not.
pki_ca inter-rogue "/O=parallax world/CN=Parallax World Rogue Intermediate CA" root

# A root a state asks its citizens to install (Kazakhstan 2015/2019): only
# KZ's agents trust it.
pki_ca state-root "/O=parallax world/CN=Parallax World State Root" self
cat "$PKI_OUT/ca.pem" "$PKI_OUT/state-root.pem" > "$PKI_OUT/kz-trust.pem"

# --- leaves ----------------------------------------------------------------
leaf icloud  inter  "parallax world" www.icloud.com icloud.com setup.icloud.com
leaf appleid inter  "parallax world" appleid.apple.com
leaf news    inter  "parallax world" news.example.com
leaf social  inter  "parallax world" social.example.org
leaf cdn-a   inter  "CDN region A"   cdn.example.com
leaf cdn-b   inter2 "CDN region B"   cdn.example.com
leaf mail       inter       "parallax world" mail.example.net
leaf rogue-mail inter-rogue "parallax world" mail.example.net
leaf bank       inter       "parallax world" bank.example.net
leaf state-bank state-root  "parallax world" bank.example.net
leaf shop       inter       "parallax world" shop.example.com
leaf rotate-a   inter       "parallax world" rotate.example.com
leaf rotate-b   inter       "parallax world" rotate.example.com
leaf video      inter       "parallax world" video.example.com
leaf forum      inter       "parallax world" forum.example.org
leaf --from "$(date -u -d '60 days ago' +%y%m%d%H%M%SZ)" \
     --until "$(date -u -d '30 days ago' +%y%m%d%H%M%SZ)" \
    expired inter "parallax world" expired.example.org

# --- self-signed -----------------------------------------------------------
# The 2014 iCloud MITM certificate: RSA 2048, self-signed, no SAN.
pki_selfsigned mitm "/C=cn/O=www.icloud.com/CN=www.icloud.com" rsa

# The block page of the DNS-redirecting country.
pki_selfsigned blockpage "/CN=blocked.invalid" ec blocked.invalid

pki_finish
