#!/usr/bin/env bash
# world.sh -- the multi-country test world of parallax (issue 4): a small
# internet of network namespaces, described by tests/world/world.env.
#
#   world.sh up DIR       build it: namespaces pxw-core + one per country,
#                         veth links, the PKI (DIR/pki), nginx and dnsmasq in
#                         the core, nftables rules in the vantages; wait until
#                         everything answers; write DIR/state.env. One line on
#                         success; on failure the logs, a full teardown, exit 1.
#   world.sh down DIR     kill every process of the world (pidfiles in DIR/run,
#                         then whatever else runs in a pxw-* namespace), delete
#                         the namespaces. Succeeds when already down.
#   world.sh status DIR   what is up; exit 0 only when everything answers.
#   world.sh exec NS -- CMD...
#                         run CMD in namespace NS (core, a country code such as
#                         CN, or a full name such as pxw-cn).
#   world.sh rotate DIR [a|b]
#                         switch the leaf rotate.example.com serves (the other
#                         one, or the one named) and reload nginx; returns once
#                         the core sees the new leaf.
#   world.sh censor DIR CC on|off
#                         switch country CC's nftables rules (interception,
#                         DNAT, reset, drop) on or off, for a censor that comes
#                         and goes between rounds.
#
# Needs root (exit 77 with a one-line reason otherwise: the e2e tests report
# "skipped"). Nothing is added to the host's own network namespace; the only
# thing outside DIR is /etc/netns/pxw-*/resolv.conf (each vantage's resolver,
# bind-mounted by `ip netns exec`), removed again by `down`.
#
# Layout of DIR: pki/ (certificates, ca.pem is the trust store), conf/
# (nginx.conf, nft-<cc>.nft), run/ (pidfiles, nginx prefix), log/ (every
# service's log), state.env.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
# The readiness checker shared with tests/peers.
WAIT=$SOURCE/tests/tools/wait.py
ENV_FILE=$HERE/world.env
LOCK=/run/lock/pxw-world.lock
# The DIR of the world that is (or was last) up: there is one world per host
# (namespace names and addresses are fixed).
OWNER=/run/pxw-world.owner
# Every address nginx serves in the core (world.env keys).
SERVICE_ADDRS="ICLOUD_V4 ICLOUD_V6 MITM APPLEID CDN_A CDN_B NEWS BLOCKPAGE SOCIAL
    MAIL ROGUE_MAIL BANK STATE_MITM SHOP SHOP_NODE ROTATE EXPIRED VIDEO FORUM"

say() { echo "world: $*"; }
err() { echo "world: $*" >&2; }
die() { err "$*"; exit 1; }

usage() {
    cat >&2 <<EOF
usage: $0 up DIR | down DIR | status DIR | exec NS -- CMD...
       $0 rotate DIR [a|b] | censor DIR CC on|off
EOF
    exit 2
}

# --- world.env ----------------------------------------------------------------
# KEY=VALUE lines; values may contain spaces (WORLD_VANTAGES), so the file is
# parsed, not sourced.
load_env() {
    local line k v
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*) continue ;; esac
        k=${line%%=*}
        v=${line#*=}
        [[ "$k" =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "bad line in $ENV_FILE: $line"
        printf -v "$k" '%s' "$v"
    done < "$ENV_FILE"
}

lc() { printf '%s' "${1,,}"; }
ns_of() { echo "$WORLD_PREFIX-$(lc "$1")"; }          # CN -> pxw-cn
# in_list WORD "LIST OF WORDS"
in_list() { local y; for y in $2; do [ "$1" = "$y" ] && return 0; done; return 1; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "world: needs root (network namespaces, nftables); skipped" >&2
        exit 77
    fi
}

check_dir() {
    [ -n "$DIR" ] || usage
    DIR=$(realpath -m -- "$DIR") || die "bad DIR"
    case "$DIR" in
        /|/root|/home|/tmp|/var/tmp|/work|/usr|/usr/*|/etc|/etc/*|/var|/bin|/sbin|/lib|/lib64|/boot|/opt|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run)
            die "refusing to use DIR=$DIR" ;;
    esac
    case "$HERE/" in
        "$DIR"/*) die "refusing to use DIR=$DIR (contains the source tree)" ;;
    esac
    case "$DIR" in
        *[[:space:]\"\'\;\$\`\\]*) die "refusing to use DIR=$DIR (whitespace or quotes: it goes into config files)" ;;
    esac
}

take_lock() {
    mkdir -p "${LOCK%/*}" 2>/dev/null
    exec 9>"$LOCK" || die "cannot open $LOCK"
    flock -w 60 9 || die "another world.sh up/down still holds $LOCK"
}

# --- processes ------------------------------------------------------------------

# pid_alive PID: exists and is not a zombie.
pid_alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [ "${st%% *}" != Z ]
}

# ours PID: alive and its command line mentions DIR (every service gets a
# path under DIR), so a recycled PID is never signalled.
ours() {
    local cmdline
    pid_alive "$1" || return 1
    cmdline=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
    case "$cmdline" in *"$DIR"*) return 0 ;; esac
    return 1
}

# signal SIG PID: the process group when PID leads one, else PID alone.
signal() {
    local pgid
    pgid=$(ps -o pgid= -p "$2" 2>/dev/null | tr -d ' ')
    if [ "$pgid" = "$2" ]; then
        kill "-$1" -- "-$2" 2>/dev/null
    else
        kill "-$1" "$2" 2>/dev/null
    fi
}

world_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$WORLD_PREFIX-" || true
}

# teardown: everything a previous or the current up built, whatever DIR it
# used. Never fails.
teardown() {
    local f pid ns pids=() keep=" " p
    # This process and its ancestors are never killed (someone may run
    # `world.sh down` from a shell inside a vantage).
    p=$$
    while [ -n "$p" ] && [ "$p" -gt 1 ] 2>/dev/null; do
        keep+="$p "
        p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)
    done
    if [ -d "$DIR/run" ]; then
        for f in "$DIR"/run/*.pid; do
            [ -f "$f" ] || continue
            pid=$(tr -dc '0-9' < "$f" | head -c 12)
            [ -n "$pid" ] && ours "$pid" && pids+=("$pid")
        done
    fi
    for ns in $(world_namespaces); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            pids+=("$pid")
        done
    done
    local live=()
    for pid in "${pids[@]+"${pids[@]}"}"; do
        case "$keep" in *" $pid "*) continue ;; esac
        signal TERM "$pid"
        live+=("$pid")
    done
    local i
    for i in $(seq 20); do
        local still=()
        for pid in "${live[@]+"${live[@]}"}"; do
            pid_alive "$pid" && still+=("$pid")
        done
        live=("${still[@]+"${still[@]}"}")
        [ ${#live[@]} -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${live[@]+"${live[@]}"}"; do
        signal KILL "$pid"
    done
    # Stragglers that appeared meanwhile (children forked during TERM).
    for ns in $(world_namespaces); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            case "$keep" in *" $pid "*) continue ;; esac
            kill -KILL "$pid" 2>/dev/null
        done
    done
    for ns in $(world_namespaces); do
        ip netns del "$ns" 2>/dev/null || err "could not delete namespace $ns"
        rm -rf "/etc/netns/$ns" 2>/dev/null
    done
    rm -rf /etc/netns/"$WORLD_PREFIX"-* 2>/dev/null
    rmdir /etc/netns 2>/dev/null
    [ -d "$DIR/run" ] && rm -f "$DIR"/run/*.pid
    # A world brought up from another DIR is gone now too: say so there.
    local owner
    owner=$(cat "$OWNER" 2>/dev/null)
    if [ -n "$owner" ] && [ "$owner" != "$DIR" ] && [ -f "$owner/state.env" ] &&
       grep -qx 'WORLD_READY=1' "$owner/state.env" 2>/dev/null; then
        printf '# torn down by world.sh for %s\nWORLD_READY=0\n' "$DIR" > "$owner/state.env" 2>/dev/null
        rm -f "$owner"/run/*.pid 2>/dev/null
    fi
    rm -f "$OWNER"
    return 0
}

# launch NAME CMD...: start CMD in its own session, inside the core, output
# to DIR/log/NAME.log, pid to DIR/run/NAME.pid. `setsid` and `ip netns exec`
# both exec, so the pid is the service's own.
LAUNCHED=()
launch() {
    local name=$1
    shift
    (
        # Do not leak the caller's descriptors (a test harness's pipes, the
        # lock) into long-lived servers.
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
        done
        exec setsid ip netns exec "$WORLD_CORE" "$@"
    ) >"$DIR/log/$name.log" 2>&1 </dev/null &
    echo "$!" > "$DIR/run/$name.pid"
    LAUNCHED+=("$name=$!")
}

# --- building ---------------------------------------------------------------------

UP_OK=0
FAILED=""

show_logs() {
    local n f
    for n in "$@"; do
        for f in "$DIR/log/$n.log" "$DIR/log/$n"-*.log; do
            [ -s "$f" ] || continue
            echo "----- $f (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    done
}

# fail MSG [LOG...]: print MSG and the named logs, exit 1 (the EXIT trap
# tears everything down).
fail() {
    local msg=$1
    shift
    err "up FAILED: $msg"
    FAILED=${FAILED:-$msg}
    show_logs "$@"
    exit 1
}

CHILD=
on_exit() {
    local rc=$?
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
    if [ "$UP_OK" != 1 ]; then
        teardown
        {
            echo "# written by tests/world/world.sh up (failed)"
            echo "WORLD_READY=0"
            echo "WORLD_FAILED=${FAILED:-interrupted}"
        } > "$DIR/state.env" 2>/dev/null
        [ "$rc" = 0 ] && rc=1
        err "torn down after the failure"
    fi
    exit "$rc"
}

# Vantage i (1-based): addresses of both ends of its link.
core4() { echo "198.51.100.$((4 * $1 + 1))"; }
vant4() { echo "198.51.100.$((4 * $1 + 2))"; }
core6() { echo "2001:db8:51:$1::1"; }
vant6() { echo "2001:db8:51:$1::2"; }

check_env() {
    local i=0 cc v
    for cc in $WORLD_VANTAGES; do
        i=$((i + 1))
        v=VANTAGE_ADDR_$cc;  [ "${!v:-}" = "$(vant4 $i)" ] || { echo "$v is not $(vant4 $i)"; return 1; }
        v=VANTAGE_ADDR6_$cc; [ "${!v:-}" = "$(vant6 $i)" ] || { echo "$v is not $(vant6 $i)"; return 1; }
        v=RESOLVER_$cc;      [ -n "${!v:-}" ] || { echo "$v missing"; return 1; }
        v=ASN_$cc;           [ -n "${!v:-}" ] || { echo "$v missing"; return 1; }
        # A censor can be switched only where there is something to switch.
        if has_nft_rules "$cc"; then
            in_list "$cc" "$WORLD_CENSORS" || { echo "$cc has nft rules but is not in WORLD_CENSORS"; return 1; }
        else
            in_list "$cc" "$WORLD_CENSORS" && { echo "$cc is in WORLD_CENSORS but has no nft rules"; return 1; }
        fi
    done
    for cc in $WORLD_CENSORS; do
        in_list "$cc" "$WORLD_VANTAGES" || { echo "WORLD_CENSORS names $cc, not a vantage"; return 1; }
    done
    # Links use 198.51.100.4 .. .(4i+3): at most 24 before the resolvers (.101).
    if [ "$i" -lt 1 ] || [ "$i" -gt 24 ]; then echo "bad WORLD_VANTAGES"; return 1; fi
}

# All of it with set -e, every command echoed to DIR/log/net.log.
build_net() (
    set -e
    set -x
    local i=0 cc ns a v
    ip netns add "$WORLD_CORE"
    ip -n "$WORLD_CORE" link set lo up
    # The core's service addresses live on its lo (this kernel may lack the
    # dummy driver; lo needs none).
    for v in $SERVICE_ADDRS AUTH_DNS COLLECTOR_ADDR DOWN; do
        [[ "${!v}" == *:* ]] && continue
        ip -n "$WORLD_CORE" addr add "${!v}/32" dev lo
    done
    for cc in $WORLD_VANTAGES; do
        v=RESOLVER_$cc
        ip -n "$WORLD_CORE" addr add "${!v}/32" dev lo
    done
    ip -n "$WORLD_CORE" addr add "$ICLOUD_V6/128" dev lo
    for cc in $WORLD_VANTAGES; do
        i=$((i + 1))
        ns=$(ns_of "$cc")
        a=to-$(lc "$cc")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Created inside the core, peer moved straight into the vantage:
        # nothing ever appears in the host's namespace.
        ip -n "$WORLD_CORE" link add "$a" type veth peer name eth0 netns "$ns"
        ip -n "$WORLD_CORE" addr add "$(core4 $i)/30" dev "$a"
        ip -n "$WORLD_CORE" addr add "$(core6 $i)/64" dev "$a" nodad
        ip -n "$WORLD_CORE" link set "$a" up
        ip -n "$ns" addr add "$(vant4 $i)/30" dev eth0
        ip -n "$ns" addr add "$(vant6 $i)/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$(core4 $i)"
        ip -n "$ns" -6 route add default via "$(core6 $i)"
    done
)

# Each vantage's /etc/resolv.conf (ip netns exec bind-mounts
# /etc/netns/NS/resolv.conf): its country's resolver. Best effort.
write_resolv_conf() {
    local cc v ns ok=1
    for cc in $WORLD_VANTAGES; do
        v=RESOLVER_$cc
        ns=$(ns_of "$cc")
        { mkdir -p "/etc/netns/$ns" &&
          printf 'nameserver %s\noptions timeout:2 attempts:2\n' "${!v}" > "/etc/netns/$ns/resolv.conf"; } 2>/dev/null || ok=0
    done
    { mkdir -p "/etc/netns/$WORLD_CORE" &&
      printf 'nameserver %s\n' "$AUTH_DNS" > "/etc/netns/$WORLD_CORE/resolv.conf"; } 2>/dev/null || ok=0
    RESOLV_OK=$ok
}

# Countries whose vantage has nftables rules (the censors).
has_nft_rules() {
    in_list "$1" "$WORLD_TLS_INTERCEPT $WORLD_TLS_RESET $WORLD_TLS_ROGUE_CA $WORLD_TLS_STATE_ROOT $WORLD_TLS_DROP"
}

# nft_rules CC HOOK: the rules of CC's chain on HOOK (nat or filter), with
# why as comments; nothing when it has none.
nft_rules() {
    local cc=$1
    if [ "$2" = nat ]; then
        in_list "$cc" "$WORLD_TLS_INTERCEPT" && cat <<EOF
		# Path interception of the real iCloud address (the 2014 pattern):
		# DNS is correct, TCP to $ICLOUD_V4:443 reaches the MITM. IPv6 untouched.
		ip daddr $ICLOUD_V4 tcp dport 443 counter dnat ip to $MITM:443
EOF
        in_list "$cc" "$WORLD_TLS_ROGUE_CA" && cat <<EOF
		# The 2015 pattern: $DOMAIN_MAIL gets a chain from a rogue
		# intermediate under the same root; it validates.
		ip daddr $MAIL tcp dport 443 counter dnat ip to $ROGUE_MAIL:443
EOF
        in_list "$cc" "$WORLD_TLS_STATE_ROOT" && cat <<EOF
		# A state root the country's users were told to install (KZ 2019).
		ip daddr $BANK tcp dport 443 counter dnat ip to $STATE_MITM:443
EOF
    else
        in_list "$cc" "$WORLD_TLS_RESET" && cat <<EOF
		# TLS handshakes to $SOCIAL:443 are reset: the TCP handshake passes, the
		# first data segment that starts a TLS handshake record (0x16, i.e. the
		# ClientHello) is dropped and answered with a TCP RST.
		ip daddr $SOCIAL tcp dport 443 @ih,0,8 0x16 counter reject with tcp reset
EOF
        in_list "$cc" "$WORLD_TLS_DROP" && cat <<EOF
		# TLS handshakes to $VIDEO:443 are black-holed: the TCP handshake
		# passes, every ClientHello (and its retransmissions) is dropped
		# silently, so the client's handshake times out.
		ip daddr $VIDEO tcp dport 443 @ih,0,8 0x16 counter drop
EOF
    fi
    return 0
}

# conf/nft-CC.nft (the censor on) and, for a censor, conf/nft-CC-off.nft
# (an empty table: `world.sh censor` switches between the two).
write_nft() {
    local cc f rules
    for cc in $WORLD_VANTAGES; do
        f=$DIR/conf/nft-$(lc "$cc").nft
        {
            echo "# nftables ruleset of vantage $cc ($(ns_of "$cc")), written by world.sh"
            echo "flush ruleset"
            echo "table inet pxw {"
            rules=$(nft_rules "$cc" nat)
            [ -n "$rules" ] && printf '\tchain output_nat {\n\t\ttype nat hook output priority -100; policy accept;\n%s\n\t}\n' "$rules"
            rules=$(nft_rules "$cc" filter)
            [ -n "$rules" ] && printf '\tchain output_filter {\n\t\ttype filter hook output priority filter; policy accept;\n%s\n\t}\n' "$rules"
            echo "}"
        } > "$f"
        if has_nft_rules "$cc"; then
            printf '# vantage %s with its censor switched off (world.sh censor)\nflush ruleset\ntable inet pxw {\n}\n' \
                "$cc" > "$DIR/conf/nft-$(lc "$cc")-off.nft"
        fi
    done
}

write_nginx() {
    local c="$DIR/conf/nginx.conf" p="$DIR/pki"
    # srv ADDR... -- CERTNAME BODY
    srv() {
        local listens=() a
        while [ "$1" != -- ]; do
            case "$1" in
                *:*) listens+=("[$1]:443") ;;
                *)   listens+=("$1:443") ;;
            esac
            shift
        done
        shift
        echo "    server {"
        for a in "${listens[@]}"; do echo "        listen $a ssl default_server;"; done
        echo "        ssl_certificate     $p/$1;"
        local k=${1%.pem}
        echo "        ssl_certificate_key $p/${k%-chain}.key;"
        [ -n "${3:-}" ] && echo "        $3"
        printf '        location / { return 200 "%s\\n"; }\n' "$2"
        echo "    }"
    }
    {
        cat <<EOF
# nginx of the parallax test world (core namespace $WORLD_CORE), written by
# tests/world/world.sh. Every server is alone on its address: SNI does not
# choose the certificate, the address does.
user root root;
worker_processes 1;
daemon off;
master_process on;
pid $DIR/run/nginx/nginx.pid;
error_log $DIR/log/nginx-error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log $DIR/log/nginx-access.log;
    client_body_temp_path $DIR/run/nginx/body;
    proxy_temp_path       $DIR/run/nginx/proxy;
    fastcgi_temp_path     $DIR/run/nginx/fastcgi;
    uwsgi_temp_path       $DIR/run/nginx/uwsgi;
    scgi_temp_path        $DIR/run/nginx/scgi;

    default_type text/plain;
    keepalive_timeout 5;
    # Connections whose ClientHello a middlebox swallowed (RU) go away soon.
    client_header_timeout 10s;

    ssl_session_tickets off;
    ssl_session_cache   off;
    ssl_protocols TLSv1.2 TLSv1.3;

EOF
        echo "    # www.icloud.com, IPv4 and IPv6"
        srv "$ICLOUD_V4" "$ICLOUD_V6" -- icloud-chain.pem ok
        echo "    # appleid.apple.com"
        srv "$APPLEID" -- appleid-chain.pem ok
        echo "    # news.example.com"
        srv "$NEWS" -- news-chain.pem ok
        echo "    # social.example.org"
        srv "$SOCIAL" -- social-chain.pem ok
        echo "    # cdn.example.com, region A and region B (two valid certificates)"
        srv "$CDN_A" -- cdn-a-chain.pem ok
        srv "$CDN_B" -- cdn-b-chain.pem ok
        echo "    # the block page of DNS redirection: self-signed CN=blocked.invalid"
        srv "$BLOCKPAGE" -- blockpage.pem blocked
        echo "    # the 2014 iCloud MITM: self-signed /C=cn/O=www.icloud.com/CN=www.icloud.com,"
        echo "    # TLS 1.2 with AES256-SHA only"
        srv "$MITM" -- mitm.pem ok "ssl_protocols TLSv1.2; ssl_ciphers AES256-SHA:@SECLEVEL=0;"
        echo "    # mail.example.net, and the same name from the rogue intermediate (EG)"
        srv "$MAIL" -- mail-chain.pem ok
        srv "$ROGUE_MAIL" -- rogue-mail-chain.pem ok
        echo "    # bank.example.net, and the same name from the state root (KZ)"
        srv "$BANK" -- bank-chain.pem ok
        srv "$STATE_MITM" -- state-bank-chain.pem ok
        echo "    # shop.example.com, and its geo node (BR): the same leaf, no intermediate"
        srv "$SHOP" -- shop-chain.pem ok
        srv "$SHOP_NODE" -- shop.pem ok
        echo "    # rotate.example.com: whichever leaf pki/rotate-current* points at"
        srv "$ROTATE" -- rotate-current-chain.pem ok
        echo "    # expired.example.org (expired for everyone)"
        srv "$EXPIRED" -- expired-chain.pem ok
        echo "    # video.example.com (PK drops the ClientHello) and forum.example.org"
        srv "$VIDEO" -- video-chain.pem ok
        srv "$FORUM" -- forum-chain.pem ok
        echo "    # nothing listens on $DOWN:443 (connection refused)"
        echo "}"
    } > "$c"
}

dnsmasq_common() {  # NAME ADDR
    printf '%s\n' --conf-file=/dev/null --no-resolv --no-hosts --keep-in-foreground \
        --bind-interfaces --listen-address="$2" --port=53 \
        --user=root --group=root --pid-file="$DIR/run/$1.self.pid" \
        --log-facility="$DIR/log/$1-queries.log" --log-queries --local-ttl=300
}

start_services() {
    local a cc v me
    mkdir -p "$DIR/run/nginx/tmp"
    launch nginx "$(command -v nginx || echo /usr/sbin/nginx)" -p "$DIR/run/nginx" \
        -c "$DIR/conf/nginx.conf" -e "$DIR/log/nginx-error.log"

    # The authoritative server of the test zones.
    mapfile -t a < <(dnsmasq_common dns-auth "$AUTH_DNS")
    a+=(--cache-size=0
        --local=/icloud.com/ --local=/apple.com/ --local=/example.com/
        --local=/example.org/ --local=/example.net/
        --host-record="$DOMAIN_ICLOUD,$ICLOUD_V4,$ICLOUD_V6"
        --host-record="icloud.com,$ICLOUD_V4"
        --host-record="setup.icloud.com,$ICLOUD_V4"
        --host-record="$DOMAIN_APPLEID,$APPLEID"
        --host-record="$DOMAIN_CDN,$CDN_A"
        --host-record="$DOMAIN_NEWS,$NEWS"
        --host-record="$DOMAIN_SOCIAL,$SOCIAL"
        --host-record="$DOMAIN_DOWN,$DOWN"
        --host-record="$DOMAIN_MAIL,$MAIL"
        --host-record="$DOMAIN_BANK,$BANK"
        --host-record="$DOMAIN_SHOP,$SHOP"
        --host-record="$DOMAIN_ROTATE,$ROTATE"
        --host-record="$DOMAIN_EXPIRED,$EXPIRED"
        --host-record="$DOMAIN_VIDEO,$VIDEO"
        --host-record="$DOMAIN_FORUM,$FORUM")
    launch dns-auth "$(command -v dnsmasq || echo /usr/sbin/dnsmasq)" "${a[@]}"

    # One forwarding resolver per country, with that country's overrides.
    for cc in $WORLD_VANTAGES; do
        v=RESOLVER_$cc
        me=VANTAGE_ADDR_$cc
        if in_list "$cc" "$WORLD_DNS_INJECT"; then
            # An on-path injector in front of the genuine answers: it
            # forwards to AUTH_DNS and races a forged reply ahead of them.
            launch "dns-$(lc "$cc")" "$PY" "$HERE/inject_dns.py" --listen "${!v}" \
                --upstream "$AUTH_DNS" --forge "$DOMAIN_FORUM=$BLOCKPAGE" \
                --delay-ms "$WORLD_DNS_INJECT_DELAY_MS" --host "$DOMAIN_WHOAMI=${!me}" \
                --log "$DIR/log/dns-$(lc "$cc")-queries.log"
            continue
        fi
        mapfile -t a < <(dnsmasq_common "dns-$(lc "$cc")" "${!v}")
        a+=(--server="$AUTH_DNS" --cache-size=0)
        in_list "$cc" "$WORLD_CDN_REGION_B" && a+=(--host-record="$DOMAIN_CDN,$CDN_B")
        in_list "$cc" "$WORLD_DNS_REDIRECT" && a+=(--host-record="$DOMAIN_NEWS,$BLOCKPAGE")
        in_list "$cc" "$WORLD_GEO_NODE" && a+=(--host-record="$DOMAIN_SHOP,$SHOP_NODE")
        a+=(--host-record="$DOMAIN_WHOAMI,${!me}")
        launch "dns-$(lc "$cc")" "$(command -v dnsmasq || echo /usr/sbin/dnsmasq)" "${a[@]}"
    done
}

# The readiness checks (tests/tools/wait.py syntax), also used by status.
ready_checks() {
    local v cc ns
    for v in $SERVICE_ADDRS; do
        if [[ "${!v}" == *:* ]]; then
            echo "nginx@$WORLD_CORE:tcp:[${!v}]:443"
        else
            echo "nginx@$WORLD_CORE:tcp:${!v}:443"
        fi
    done
    echo "dns-auth@$WORLD_CORE:dns-answer:$AUTH_DNS:53:$DOMAIN_ICLOUD"
    for cc in $WORLD_VANTAGES; do
        v=RESOLVER_$cc
        ns=$(ns_of "$cc")
        # From the vantage itself: link, routes, resolver and its upstream.
        echo "dns-$(lc "$cc")@$ns:dns-answer:${!v}:53:$DOMAIN_ICLOUD"
        echo "link-$(lc "$cc")@$ns:tcp:[$ICLOUD_V6]:443"
    done
}

# set_rotate a|b: point pki/rotate-current-chain.pem and rotate-current.key
# (what nginx serves for rotate.example.com) at leaf rotate-a or rotate-b,
# each link replaced by a rename; nginx reads them only when (re)loaded.
# Records the choice in run/rotate.current.
set_rotate() {
    local p="$DIR/pki"
    ln -sfn "rotate-$1-chain.pem" "$p/rotate-current-chain.pem.tmp" &&
        mv -fT "$p/rotate-current-chain.pem.tmp" "$p/rotate-current-chain.pem" &&
        ln -sfn "rotate-$1.key" "$p/rotate-current.key.tmp" &&
        mv -fT "$p/rotate-current.key.tmp" "$p/rotate-current.key" &&
        echo "$1" > "$DIR/run/rotate.current"
}

leaf_sha256() {
    openssl x509 -in "$1" -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1
}

write_state() {
    local f="$DIR/state.env" i=0 cc v
    {
        echo "# written by tests/world/world.sh up; world.env holds the rest"
        echo "WORLD_READY=1"
        echo "WORLD_DIR=$DIR"
        echo "WORLD_ENV=$ENV_FILE"
        echo "WORLD_CA=$DIR/pki/ca.pem"
        echo "WORLD_PKI=$DIR/pki"
        echo "WORLD_LOGS=$DIR/log"
        echo "WORLD_SH=$HERE/world.sh"
        echo "WORLD_RESOLV_CONF=$RESOLV_OK"
        echo "NS_CORE=$WORLD_CORE"
        for cc in $WORLD_VANTAGES; do
            i=$((i + 1))
            echo "NS_$cc=$(ns_of "$cc")"
            echo "VANTAGE_NET_$cc=198.51.100.$((4 * i))/30"
            echo "VANTAGE_NET6_$cc=2001:db8:51:$i::/64"
        done
        echo "# sha256 of each leaf certificate (DER, lower-case hex)"
        echo "SHA256_ICLOUD=$(leaf_sha256 "$DIR/pki/icloud.pem")"
        echo "SHA256_MITM=$(leaf_sha256 "$DIR/pki/mitm.pem")"
        echo "SHA256_APPLEID=$(leaf_sha256 "$DIR/pki/appleid.pem")"
        echo "SHA256_NEWS=$(leaf_sha256 "$DIR/pki/news.pem")"
        echo "SHA256_SOCIAL=$(leaf_sha256 "$DIR/pki/social.pem")"
        echo "SHA256_CDN_A=$(leaf_sha256 "$DIR/pki/cdn-a.pem")"
        echo "SHA256_CDN_B=$(leaf_sha256 "$DIR/pki/cdn-b.pem")"
        echo "SHA256_BLOCKPAGE=$(leaf_sha256 "$DIR/pki/blockpage.pem")"
        local name
        for name in mail rogue-mail bank state-bank shop rotate-a rotate-b expired video forum; do
            v=${name^^}
            echo "SHA256_${v//-/_}=$(leaf_sha256 "$DIR/pki/$name.pem")"
        done
        echo "# the trust store each country's agents are given (TRUST_CC in world.env)"
        for cc in $WORLD_VANTAGES; do
            v=TRUST_$cc
            echo "WORLD_CA_$cc=$DIR/pki/${!v:-ca.pem}"
        done
    } > "$f.tmp" && mv "$f.tmp" "$f"
}

cmd_up() {
    local t0 t1 tool out bad s cc pidargs=() checks=()
    t0=$(date +%s.%N)
    for tool in ip nft dnsmasq nginx openssl setsid flock ps; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
            die "up FAILED: $tool not installed"
    done
    [ -x "$PY" ] || die "up FAILED: $PY not found"
    out=$(check_env) || die "up FAILED: $ENV_FILE inconsistent: $out"

    take_lock
    local owner
    owner=$(cat "$OWNER" 2>/dev/null)
    if [ -n "$owner" ] && [ "$owner" != "$DIR" ] && [ -n "$(world_namespaces)" ]; then
        err "note: replacing the world that was up in $owner"
    fi
    teardown
    rm -rf "$DIR/pki" "$DIR/conf" "$DIR/run" "$DIR/log" "$DIR/state.env"
    mkdir -p "$DIR/pki" "$DIR/conf" "$DIR/run" "$DIR/log" || die "up FAILED: cannot create $DIR"

    echo "$DIR" > "$OWNER"
    trap on_exit EXIT
    trap 'FAILED=${FAILED:-interrupted}; exit 130' INT
    trap 'FAILED=${FAILED:-terminated}; exit 143' TERM HUP

    "$HERE/make-pki.sh" "$DIR/pki" >"$DIR/log/pki.log" 2>&1 || fail "PKI generation failed" pki

    if ! build_net >"$DIR/log/net.log" 2>&1; then
        if grep -q 'Operation not permitted' "$DIR/log/net.log"; then
            # Root without CAP_SYS_ADMIN/CAP_NET_ADMIN (an unprivileged
            # container): like not being root.
            teardown
            UP_OK=1
            err "cannot create network namespaces here (Operation not permitted); skipped"
            exit 77
        fi
        fail "network setup failed" net
    fi
    write_resolv_conf

    write_nft
    for cc in $WORLD_VANTAGES; do
        ip netns exec "$(ns_of "$cc")" nft -f "$DIR/conf/nft-$(lc "$cc").nft" \
            >"$DIR/log/nft-$(lc "$cc").log" 2>&1 ||
            fail "nftables rules of $cc failed" "nft-$(lc "$cc")"
    done

    set_rotate a || fail "cannot link the rotating leaf"
    write_nginx
    start_services

    for s in "${LAUNCHED[@]}"; do pidargs+=(--pid "$s"); done
    mapfile -t checks < <(ready_checks)
    # In the background and `wait`ed for, so that a signal is acted on at
    # once rather than after the whole wait.
    "$PY" "$WAIT" --timeout "${WORLD_UP_TIMEOUT:-15}" "${pidargs[@]}" "${checks[@]}" \
        >"$DIR/log/wait.log" 2>&1 </dev/null 9>&- &
    CHILD=$!
    wait "$CHILD"
    local wrc=$?
    CHILD=
    out=$(cat "$DIR/log/wait.log")
    if [ "$wrc" != 0 ]; then
        echo "$out" >&2
        bad=$(printf '%s\n' "$out" | sed -n 's/^NOT READY \([^:]*\):.*/\1/p' | sort -u | tr '\n' ' ')
        bad=${bad% }
        local logs=()
        for s in $bad; do
            case "$s" in link-*) logs+=(net) ;; *) logs+=("$s") ;; esac
        done
        [ -n "$bad" ] || bad="(see above)"
        fail "not ready: $bad" "${logs[@]+"${logs[@]}"}"
    fi

    write_state || fail "cannot write $DIR/state.env"
    UP_OK=1
    trap - EXIT INT TERM HUP
    t1=$(date +%s.%N)
    say "up in $DIR ($(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")s): $WORLD_CORE + $WORLD_VANTAGES"
}

cmd_down() {
    take_lock
    teardown
    if [ -d "$DIR" ]; then
        {
            echo "# written by tests/world/world.sh down"
            echo "WORLD_READY=0"
        } > "$DIR/state.env" 2>/dev/null
    fi
    local left
    left=$(world_namespaces | tr '\n' ' ')
    [ -z "$left" ] || die "down: namespaces left: $left"
    say "down ($DIR)"
}

cmd_status() {
    local ns f pid name bad=0 out checks=() cc
    for ns in $WORLD_CORE $(for cc in $WORLD_VANTAGES; do ns_of "$cc"; done); do
        if [ -e "/run/netns/$ns" ]; then
            echo "namespace $ns: present"
        else
            echo "namespace $ns: MISSING"
            bad=1
        fi
    done
    for f in "$DIR"/run/*.pid; do
        [ -f "$f" ] || continue
        case "$f" in *.self.pid) continue ;; esac
        name=${f##*/}; name=${name%.pid}
        pid=$(tr -dc '0-9' < "$f" | head -c 12)
        if [ -n "$pid" ] && ours "$pid"; then
            echo "service $name: running (pid $pid)"
        else
            echo "service $name: NOT RUNNING"
            bad=1
        fi
    done
    echo "rotate: $DOMAIN_ROTATE serves leaf $(cat "$DIR/run/rotate.current" 2>/dev/null || echo '?')"
    for cc in $WORLD_CENSORS; do
        echo "censor $cc: $(cat "$DIR/run/censor-$(lc "$cc")" 2>/dev/null || echo on)"
    done
    if [ "$bad" = 0 ]; then
        mapfile -t checks < <(ready_checks)
        if ! out=$("$PY" "$WAIT" --timeout 1 "${checks[@]}" 2>&1); then
            echo "$out"
            bad=1
        fi
    fi
    if [ "$bad" = 0 ] && grep -qx 'WORLD_READY=1' "$DIR/state.env" 2>/dev/null; then
        say "up ($DIR)"
        return 0
    fi
    say "not up ($DIR)"
    return 1
}

# The world that is up must be DIR's (rotate and censor change it).
check_owner() {
    if [ "$(cat "$OWNER" 2>/dev/null)" != "$DIR" ] || ! grep -qx 'WORLD_READY=1' "$DIR/state.env" 2>/dev/null; then
        die "$1: the world in $DIR is not up"
    fi
}

cmd_rotate() {
    local want=${1:-} cur pid sha w i old=() busy
    take_lock
    check_owner rotate
    cur=$(cat "$DIR/run/rotate.current" 2>/dev/null)
    case "$want" in
        '') if [ "$cur" = a ]; then want=b; else want=a; fi ;;
        a|b) ;;
        *) usage ;;
    esac
    pid=$(tr -dc '0-9' < "$DIR/run/nginx.pid" 2>/dev/null | head -c 12)
    if [ -z "$pid" ] || ! ours "$pid"; then die "rotate: nginx is not running"; fi
    mapfile -t old < <(ps -o pid= --ppid "$pid" | tr -d ' ')
    set_rotate "$want" || die "rotate: cannot relink the leaf in $DIR/pki"
    kill -HUP "$pid" || die "rotate: cannot signal nginx ($pid)"
    # Until an old worker has closed its listening sockets it may still
    # take a connection with the old leaf. It does that right after logging
    # "gracefully shutting down", and exits once its connections are done
    # (a half-open one that RU's reset left behind lasts 10 s: not awaited).
    for i in $(seq 100); do
        busy=0
        for w in "${old[@]}"; do
            pid_alive "$w" || continue
            grep -q " $w#[0-9]*: gracefully shutting down" "$DIR/log/nginx-error.log" 2>/dev/null || busy=1
        done
        [ "$busy" = 0 ] && break
        sleep 0.05
    done
    sha=$(leaf_sha256 "$DIR/pki/rotate-$want.pem")
    "$PY" "$WAIT" --timeout 10 "rotate@$WORLD_CORE:tls:$ROTATE:443:$DOMAIN_ROTATE:$sha" ||
        die "rotate: $ROTATE:443 does not serve leaf $want"
    say "rotate: $DOMAIN_ROTATE serves leaf $want ($sha)"
}

cmd_censor() {
    local cc=${1:-} how=${2:-} f
    if [ -z "$cc" ] || [ -z "$how" ]; then usage; fi
    cc=${cc^^}
    in_list "$cc" "$WORLD_CENSORS" || die "censor: $cc has no rules to switch (WORLD_CENSORS: $WORLD_CENSORS)"
    case "$how" in
        on) f=$DIR/conf/nft-$(lc "$cc").nft ;;
        off) f=$DIR/conf/nft-$(lc "$cc")-off.nft ;;
        *) usage ;;
    esac
    take_lock
    check_owner censor
    ip netns exec "$(ns_of "$cc")" nft -f "$f" >>"$DIR/log/nft-$(lc "$cc").log" 2>&1 ||
        die "censor: nft -f $f failed in $(ns_of "$cc") (see $DIR/log/nft-$(lc "$cc").log)"
    echo "$how" > "$DIR/run/censor-$(lc "$cc")"
    say "censor $cc: $how"
}

cmd_exec() {
    [ $# -ge 1 ] || usage
    local ns=$1
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || usage
    case "$ns" in
        "$WORLD_PREFIX"-*) ;;
        *) ns=$(ns_of "$ns") ;;
    esac
    [ -e "/run/netns/$ns" ] || die "namespace $ns does not exist (is the world up?)"
    exec ip netns exec "$ns" "$@"
}

[ $# -ge 1 ] || usage
CMD=$1
shift
load_env
case "$CMD" in
    up|down|status)
        [ $# -eq 1 ] || usage
        DIR=$1
        check_dir
        need_root
        "cmd_$CMD"
        ;;
    exec)
        need_root
        cmd_exec "$@"
        ;;
    rotate|censor)
        [ $# -ge 1 ] || usage
        DIR=$1
        shift
        check_dir
        need_root
        "cmd_$CMD" "$@"
        ;;
    *) usage ;;
esac
