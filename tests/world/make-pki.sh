#!/usr/bin/env bash
# make-pki.sh OUTDIR -- the throwaway PKI of the multi-country test world.
#
# Generated fresh on every `world.sh up` with the openssl CLI; EC P-256 keys
# unless noted. Nothing here is a secret.
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
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

OPENSSL=${OPENSSL:-openssl}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pxwpki.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

NOW_START=$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)
LEAF_END=$(date -u -d '365 days' +%y%m%d%H%M%SZ)
CA_END=$(date -u -d '3650 days' +%y%m%d%H%M%SZ)

mkdir -p "$TMP/new"
: > "$TMP/index.txt"

cat > "$TMP/openssl.cnf" <<EOF
[ req ]
distinguished_name = req_dn
prompt             = no
string_mask        = utf8only

[ req_dn ]
CN = placeholder

[ ca ]
default_ca = test_ca

[ test_ca ]
database        = $TMP/index.txt
new_certs_dir   = $TMP/new
serial          = $TMP/serial
default_md      = sha256
policy          = policy_any
unique_subject  = no
copy_extensions = none
email_in_dn     = no

[ policy_any ]
countryName            = optional
organizationName       = optional
commonName             = supplied

[ v3_root ]
basicConstraints       = critical,CA:true
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash

[ v3_inter ]
basicConstraints       = critical,CA:true,pathlen:0
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_mitm ]
subjectKeyIdentifier   = hash

[ v3_blockpage ]
basicConstraints       = critical,CA:false
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:blocked.invalid
subjectKeyIdentifier   = hash
EOF

newkey_ec() {  # FILE
    "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

newkey_rsa() {  # FILE
    "$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# sign NAME SUBJ SIGNER EXT_SECTION EXTFILE START END
#   SIGNER "self" (self-signed with NAME.key) or the basename of a CA in OUT.
#   `openssl ca` because it can set notBefore in the past.
sign() {
    local name=$1 subj=$2 signer=$3 section=$4 extfile=$5 start=$6 end=$7
    local csr="$TMP/$name.csr"
    "$OPENSSL" req -new -config "$TMP/openssl.cnf" -key "$OUT/$name.key" \
        -subj "$subj" -out "$csr"
    # Random positive 64-bit serial (leading byte 01..07).
    printf '%02x%s\n' $(( (RANDOM % 7) + 1 )) "$("$OPENSSL" rand -hex 7)" > "$TMP/serial"
    local signargs
    if [ "$signer" = self ]; then
        signargs=(-selfsign -keyfile "$OUT/$name.key")
    else
        signargs=(-cert "$OUT/$signer.pem" -keyfile "$OUT/$signer.key")
    fi
    "$OPENSSL" ca -batch -config "$TMP/openssl.cnf" "${signargs[@]}" \
        -in "$csr" -out "$OUT/$name.pem" -notext -preserveDN \
        -startdate "$start" -enddate "$end" \
        -extfile "$extfile" -extensions "$section" 2>"$TMP/ca.log" || {
            cat "$TMP/ca.log" >&2
            echo "make-pki: signing $name failed" >&2
            exit 1
        }
}

# leaf NAME SIGNER ORG DNS... (first DNS name is the CN); L_START and L_END
# override the validity.
leaf() {
    local name=$1 signer=$2 org=$3
    shift 3
    local cn=$1 san="" d
    for d in "$@"; do san="${san:+$san,}DNS:$d"; done
    newkey_ec "$OUT/$name.key"
    cat > "$TMP/$name.ext" <<EOF
[ v3_leaf ]
basicConstraints       = critical,CA:false
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = $san
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
    sign "$name" "/O=$org/CN=$cn" "$signer" v3_leaf "$TMP/$name.ext" \
        "${L_START:-$NOW_START}" "${L_END:-$LEAF_END}"
    cat "$OUT/$name.pem" "$OUT/$signer.pem" > "$OUT/$name-chain.pem"
}

# --- CAs -------------------------------------------------------------------
newkey_ec "$OUT/root.key"
sign root "/O=parallax world/CN=Parallax World Test Root CA" self v3_root \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"
cp "$OUT/root.pem" "$OUT/ca.pem"

newkey_ec "$OUT/inter.key"
sign inter "/O=parallax world/CN=Parallax World Intermediate CA" root v3_inter \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"

newkey_ec "$OUT/inter2.key"
sign inter2 "/O=parallax world/CN=Parallax World CDN Intermediate CA" root v3_inter \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"

# The 2015 pattern: an intermediate the root really signed, in hands that
# issue for names they should not.
newkey_ec "$OUT/inter-rogue.key"
sign inter-rogue "/O=parallax world/CN=Parallax World Rogue Intermediate CA" root v3_inter \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"

# A root a state asks its citizens to install (Kazakhstan 2015/2019): only
# KZ's agents trust it.
newkey_ec "$OUT/state-root.key"
sign state-root "/O=parallax world/CN=Parallax World State Root" self v3_root \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"
cat "$OUT/ca.pem" "$OUT/state-root.pem" > "$OUT/kz-trust.pem"

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
L_START=$(date -u -d '60 days ago' +%y%m%d%H%M%SZ) L_END=$(date -u -d '30 days ago' +%y%m%d%H%M%SZ) \
    leaf expired inter "parallax world" expired.example.org

# --- self-signed -----------------------------------------------------------
# The 2014 iCloud MITM certificate: RSA 2048, self-signed, no SAN.
newkey_rsa "$OUT/mitm.key"
sign mitm "/C=cn/O=www.icloud.com/CN=www.icloud.com" self v3_mitm \
    "$TMP/openssl.cnf" "$NOW_START" "$LEAF_END"

# The block page of the DNS-redirecting country.
newkey_ec "$OUT/blockpage.key"
sign blockpage "/CN=blocked.invalid" self v3_blockpage \
    "$TMP/openssl.cnf" "$NOW_START" "$LEAF_END"

chmod 644 "$OUT"/*.pem
