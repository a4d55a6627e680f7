# pki.sh -- the machinery of the throwaway test PKIs (bash, sourced).
#
# tests/peers/make-pki.sh and tests/world/make-pki.sh source this and only
# declare their certificates, so that the two test worlds build their keys,
# extensions and validity windows the same way and cannot drift apart.
#
#   pki_init OUTDIR        start: OUTDIR, a private tmp dir (removed on exit),
#                          the openssl.cnf, the validity dates below
#   pki_ca NAME SUBJ SIGNER
#                          EC P-256 CA; SIGNER "self" makes a root (v3_root),
#                          anything else an intermediate (v3_inter, pathlen:0)
#                          signed by SIGNER
#   pki_leaf [--from START] [--until END] NAME SUBJ KEYTYPE SIGNER DNS...
#                          server leaf signed by SIGNER, with SAN DNS...;
#                          writes NAME.pem, NAME.key, NAME-chain.pem
#                          (= NAME.pem + SIGNER.pem)
#   pki_selfsigned NAME SUBJ KEYTYPE [DNS...]
#                          self-signed server certificate: with DNS names a
#                          server certificate carrying them, without any only
#                          a subjectKeyIdentifier (v3_mitm: the 2014 iCloud
#                          MITM certificate had no SAN and no constraints)
#   pki_finish             makes the .pem files world-readable
#
# SUBJ is the whole DN in `openssl req -subj` form ("/O=x/CN=y"); it is kept
# as given, order included (-preserveDN). KEYTYPE is ec (P-256) or rsa
# (2048). SIGNER is the NAME of a CA made before. Keys are chmod 600; nothing
# here is a secret, every fixture start makes new ones.
#
# Validity (UTCTime, YYMMDDHHMMSSZ, as RFC 5280 wants before 2050), set by
# pki_init: PKI_NOW_START (yesterday, so that small clock skews never
# matter), PKI_LEAF_END (+365 days), PKI_CA_END (+3650 days). Leaves and
# self-signed certificates get PKI_NOW_START..PKI_LEAF_END unless --from /
# --until say otherwise, CAs PKI_NOW_START..PKI_CA_END.
#
# Every failure prints what openssl said and exits 1 (these run as scripts).

# shellcheck shell=bash

pki__die() {
    echo "make-pki: $*" >&2
    exit 1
}

# pki_init OUTDIR: sets PKI_OUT (absolute), PKI_TMP and the dates; installs
# an EXIT trap that removes PKI_TMP (the caller must not set its own).
pki_init() {
    [ $# -eq 1 ] || pki__die "pki_init OUTDIR"
    mkdir -p "$1" || pki__die "cannot create $1"
    PKI_OUT=$(cd "$1" && pwd) || pki__die "cannot enter $1"
    OPENSSL=${OPENSSL:-openssl}
    PKI_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pxpki.XXXXXX") || pki__die "mktemp failed"
    trap 'rm -rf "$PKI_TMP"' EXIT

    PKI_NOW_START=$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)
    PKI_LEAF_END=$(date -u -d '365 days' +%y%m%d%H%M%SZ)
    PKI_CA_END=$(date -u -d '3650 days' +%y%m%d%H%M%SZ)

    mkdir -p "$PKI_TMP/new"
    : > "$PKI_TMP/index.txt"

    # policy_any: -preserveDN keeps the subject as given; the policy only
    # has to let C and O through and insist on a CN.
    cat > "$PKI_TMP/openssl.cnf" <<EOF
[ req ]
distinguished_name = req_dn
prompt             = no
string_mask        = utf8only

[ req_dn ]
CN = placeholder

[ ca ]
default_ca = test_ca

[ test_ca ]
database        = $PKI_TMP/index.txt
new_certs_dir   = $PKI_TMP/new
serial          = $PKI_TMP/serial
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
}

# pki_newkey FILE ec|rsa
pki_newkey() {
    local file=$1 ktype=$2 opts
    case "$ktype" in
        ec)  opts=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
        rsa) opts=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
        *)   pki__die "unknown key type '$ktype' for $file (ec or rsa)" ;;
    esac
    "$OPENSSL" genpkey "${opts[@]}" -out "$file" 2>"$PKI_TMP/genpkey.log" || {
        cat "$PKI_TMP/genpkey.log" >&2
        pki__die "key generation for $file failed"
    }
    chmod 600 "$file"
}

# pki_sign NAME SUBJ SIGNER EXT_SECTION EXTFILE START END
#   Certifies PKI_OUT/NAME.key as PKI_OUT/NAME.pem. SIGNER is "self"
#   (self-signed with NAME.key) or the NAME of a CA in PKI_OUT. `openssl ca`
#   rather than `openssl x509 -req` because only it can put notBefore in
#   the past (3.0).
pki_sign() {
    local name=$1 subj=$2 signer=$3 section=$4 extfile=$5 start=$6 end=$7
    local csr="$PKI_TMP/$name.csr" signargs
    "$OPENSSL" req -new -config "$PKI_TMP/openssl.cnf" -key "$PKI_OUT/$name.key" \
        -subj "$subj" -out "$csr" || pki__die "request for $name failed"
    # Random positive 64-bit serial (leading byte 01..07).
    printf '%02x%s\n' $(( (RANDOM % 7) + 1 )) "$("$OPENSSL" rand -hex 7)" > "$PKI_TMP/serial"
    if [ "$signer" = self ]; then
        signargs=(-selfsign -keyfile "$PKI_OUT/$name.key")
    else
        signargs=(-cert "$PKI_OUT/$signer.pem" -keyfile "$PKI_OUT/$signer.key")
    fi
    "$OPENSSL" ca -batch -config "$PKI_TMP/openssl.cnf" "${signargs[@]}" \
        -in "$csr" -out "$PKI_OUT/$name.pem" -notext -preserveDN \
        -startdate "$start" -enddate "$end" \
        -extfile "$extfile" -extensions "$section" 2>"$PKI_TMP/ca.log" || {
            cat "$PKI_TMP/ca.log" >&2
            pki__die "signing $name failed"
        }
}

# pki_ca NAME SUBJ SIGNER
pki_ca() {
    local name=$1 subj=$2 signer=$3 section=v3_inter
    [ "$signer" = self ] && section=v3_root
    pki_newkey "$PKI_OUT/$name.key" ec
    pki_sign "$name" "$subj" "$signer" "$section" "$PKI_TMP/openssl.cnf" \
        "$PKI_NOW_START" "$PKI_CA_END"
}

# pki__server_ext FILE KEYTYPE AKI(yes|no) DNS...: writes section v3_server
# of a TLS server certificate to FILE. RSA keys may also be used for RSA key
# exchange (keyEncipherment), EC keys only sign. A self-signed certificate
# gets no authorityKeyIdentifier (it would only repeat its own key id).
pki__server_ext() {
    local file=$1 ktype=$2 aki=$3 san="" d
    shift 3
    [ $# -gt 0 ] || pki__die "no DNS names for ${file##*/}"
    for d in "$@"; do san="${san:+$san,}DNS:$d"; done
    local ku="critical,digitalSignature"
    [ "$ktype" = rsa ] && ku="critical,digitalSignature,keyEncipherment"
    {
        echo "[ v3_server ]"
        echo "basicConstraints       = critical,CA:false"
        echo "keyUsage               = $ku"
        echo "extendedKeyUsage       = serverAuth"
        echo "subjectAltName         = $san"
        echo "subjectKeyIdentifier   = hash"
        if [ "$aki" = yes ]; then
            echo "authorityKeyIdentifier = keyid:always"
        fi
    } > "$file"
}

# pki_leaf [--from START] [--until END] NAME SUBJ KEYTYPE SIGNER DNS...
pki_leaf() {
    local start=$PKI_NOW_START end=$PKI_LEAF_END
    while [ $# -gt 0 ]; do
        case "$1" in
            --from)  start=$2; shift 2 ;;
            --until) end=$2; shift 2 ;;
            *) break ;;
        esac
    done
    [ $# -ge 5 ] || pki__die "pki_leaf NAME SUBJ KEYTYPE SIGNER DNS..."
    local name=$1 subj=$2 ktype=$3 signer=$4
    shift 4
    pki_newkey "$PKI_OUT/$name.key" "$ktype"
    pki__server_ext "$PKI_TMP/$name.ext" "$ktype" yes "$@"
    pki_sign "$name" "$subj" "$signer" v3_server "$PKI_TMP/$name.ext" "$start" "$end"
    cat "$PKI_OUT/$name.pem" "$PKI_OUT/$signer.pem" > "$PKI_OUT/$name-chain.pem"
}

# pki_selfsigned NAME SUBJ KEYTYPE [DNS...]
pki_selfsigned() {
    [ $# -ge 3 ] || pki__die "pki_selfsigned NAME SUBJ KEYTYPE [DNS...]"
    local name=$1 subj=$2 ktype=$3
    shift 3
    pki_newkey "$PKI_OUT/$name.key" "$ktype"
    if [ $# -eq 0 ]; then
        pki_sign "$name" "$subj" self v3_mitm "$PKI_TMP/openssl.cnf" \
            "$PKI_NOW_START" "$PKI_LEAF_END"
    else
        pki__server_ext "$PKI_TMP/$name.ext" "$ktype" no "$@"
        pki_sign "$name" "$subj" self v3_server "$PKI_TMP/$name.ext" \
            "$PKI_NOW_START" "$PKI_LEAF_END"
    fi
}

# pki_finish: certificates readable by the servers whatever user they run as.
pki_finish() {
    chmod 644 "$PKI_OUT"/*.pem
}
