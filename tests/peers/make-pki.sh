#!/usr/bin/env bash
# make-pki.sh OUTDIR -- build the throwaway test PKI used by tests/peers.
#
# Everything is generated fresh with the openssl CLI (EC P-256 keys unless
# noted; RSA 2048 where the 2014-era scenario needs it). Nothing here is a
# secret: keys are test-only and regenerated on every fixture start.
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
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

OPENSSL=${OPENSSL:-openssl}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pxpki.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Validity of every "current" certificate: yesterday .. +365 days (CAs: +3650).
# UTCTime form (YYMMDDHHMMSSZ), as RFC 5280 wants for dates before 2050.
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
EOF

newkey_ec() {  # FILE
    "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$1" 2>/dev/null
    chmod 600 "$1"
}

newkey_rsa() {  # FILE
    "$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# sign NAME SUBJ SIGNER EXT_SECTION EXTFILE START END
#   SIGNER is "self" (self-signed with NAME.key) or the basename of an
#   existing CA in OUT (e.g. "inter"). Uses `openssl ca` so that notBefore
#   can be set in the past (openssl x509 -req in 3.0 cannot).
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

# leaf NAME KEYTYPE(ec|rsa) SIGNER START END DNS...
leaf() {
    local name=$1 ktype=$2 signer=$3 start=$4 end=$5
    shift 5
    local cn=$1 san="" d
    for d in "$@"; do san="${san:+$san,}DNS:$d"; done
    local ku="critical,digitalSignature"
    if [ "$ktype" = rsa ]; then
        newkey_rsa "$OUT/$name.key"
        ku="critical,digitalSignature,keyEncipherment"
    else
        newkey_ec "$OUT/$name.key"
    fi
    cat > "$TMP/$name.ext" <<EOF
[ v3_leaf ]
basicConstraints       = critical,CA:false
keyUsage               = $ku
extendedKeyUsage       = serverAuth
subjectAltName         = $san
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
    sign "$name" "/CN=$cn/O=parallax tests" "$signer" v3_leaf "$TMP/$name.ext" "$start" "$end"
    cat "$OUT/$name.pem" "$OUT/$signer.pem" > "$OUT/$name-chain.pem"
}

# --- CAs -------------------------------------------------------------------
newkey_ec "$OUT/root.key"
sign root "/CN=Parallax Test Root CA/O=parallax tests" self v3_root \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"
cp "$OUT/root.pem" "$OUT/ca.pem"

newkey_ec "$OUT/inter.key"
sign inter "/CN=Parallax Test Intermediate CA/O=parallax tests" root v3_inter \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"

newkey_ec "$OUT/root2.key"
sign root2 "/CN=Unknown Test Root/O=elsewhere" self v3_root \
    "$TMP/openssl.cnf" "$NOW_START" "$CA_END"

# --- leaves ----------------------------------------------------------------
leaf good ec inter "$NOW_START" "$LEAF_END" \
    www.example.test example.test alias.example.test alias2.example.test
leaf expired ec inter 200101000000Z 210101000000Z expired.example.test
leaf wronghost ec inter "$NOW_START" "$LEAF_END" other.example.test
leaf unknownroot ec root2 "$NOW_START" "$LEAF_END" unknownroot.example.test
leaf tls10 rsa inter "$NOW_START" "$LEAF_END" tls10.example.test
leaf icloud ec inter "$NOW_START" "$LEAF_END" www.icloud.com icloud.com
leaf noreneg ec inter "$NOW_START" "$LEAF_END" noreneg.example.test

# The 2014 iCloud MITM certificate: RSA 2048, self-signed, no SAN.
newkey_rsa "$OUT/mitm.key"
sign mitm "/C=cn/O=www.icloud.com/CN=www.icloud.com" self v3_mitm \
    "$TMP/openssl.cnf" "$NOW_START" "$LEAF_END"

chmod 644 "$OUT"/*.pem
