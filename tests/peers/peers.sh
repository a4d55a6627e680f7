#!/usr/bin/env bash
# peers.sh start DIR | stop DIR -- the local test world for the probe tests.
#
# start: (re)creates DIR, builds the test PKI in DIR/pki, writes the configs
#        into DIR and starts every peer of tests/peers/peers.env in the
#        background (one process group each, pidfile DIR/<peer>.pid, log
#        DIR/<peer>.log), waits until every listener answers, then writes
#        DIR/state.env. Prints one line on success; on failure prints the
#        logs of the peers that did not come up, stops the others, exits 1.
# stop:  kills every peer by pidfile (TERM, KILL after 2 s), deletes the
#        network namespace. Succeeds when things are already gone.
#
# Peers: dnsmasq (good DNS), bad_dns.py (broken DNS), nginx (TLS servers),
# tcp_misbehave.py (stall/reset/close/garbage), and -- as root only --
# gnutls-serv without secure renegotiation inside network namespace
# PX_NETNS, reached through ns_relay.py on PX_TLS_NORENEG (see README.md).
#
# Traffic stays on loopback: 127.80.0.0/16, ::1, and the namespace's own lo.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
# The readiness checker shared with tests/world.
WAIT=$SOURCE/tests/tools/wait.py
PEERS=(dnsmasq bad_dns tcp_misbehave nginx gnutls ns_relay)

die() { echo "peers: $*" >&2; exit 1; }

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
[ -n "$DIR" ] || usage
DIR=$(realpath -m -- "$DIR") || die "bad DIR"
# start does rm -rf DIR: refuse system directories, $HOME, anything holding
# a git checkout, and any parent of this source tree.
case "$DIR" in
    /|/root|/home|/tmp|/var/tmp|/work|/usr|/usr/*|/etc|/etc/*|/var|/bin|/sbin|/lib|/lib64|/boot|/opt|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run)
        die "refusing to use DIR=$DIR" ;;
esac
if [ "$DIR" = "${HOME:-/nonexistent}" ] || [ -e "$DIR/.git" ]; then
    die "refusing to use DIR=$DIR"
fi
case "$HERE/" in
    "$DIR"/*) die "refusing to use DIR=$DIR (contains the source tree)" ;;
esac

set -a
# shellcheck source=peers.env
. "$HERE/peers.env"
set +a

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

# --- stopping ---------------------------------------------------------------

# ours PID: the process exists and its command line mentions DIR (every peer
# is started with a path under DIR in its arguments), so a recycled PID of
# an unrelated process is never signalled.
ours() {
    local pid=$1 cmdline
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    case "$cmdline" in
        *"$DIR"*) return 0 ;;
    esac
    return 1
}

# signal_peer SIG PID: the whole process group when PID leads one (the
# peers are started with setsid), else PID alone.
signal_peer() {
    local sig=$1 pid=$2 pgid
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')
    if [ "$pgid" = "$pid" ]; then
        kill "-$sig" -- "-$pid" 2>/dev/null
    else
        kill "-$sig" "$pid" 2>/dev/null
    fi
}

# The namespace name is global: remember which DIR made it, so that a
# start/stop in another DIR never tears down a fixture that is still running.
NS_OWNER=/run/pxpeers-netns-$PX_NETNS.owner

netns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$PX_NETNS"
}

# other_owner: prints the DIR of another fixture that owns the namespace and
# still has live peers; prints nothing when the namespace is free or ours.
other_owner() {
    [ "$IS_ROOT" = 1 ] && [ -f "$NS_OWNER" ] || return 0
    local owner f pid
    owner=$(cat "$NS_OWNER" 2>/dev/null)
    [ -n "$owner" ] && [ "$owner" != "$DIR" ] || return 0
    for f in "$owner"/*.pid; do
        [ -f "$f" ] || continue
        pid=$(tr -dc '0-9' < "$f" | head -c 12)
        [ -n "$pid" ] || continue
        if [ -r "/proc/$pid/cmdline" ] &&
           tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$owner"; then
            echo "$owner"
            return 0
        fi
    done
}

stop_netns() {
    [ "$IS_ROOT" = 1 ] || return 0
    [ -z "$(other_owner)" ] || return 0
    if ! netns_exists; then
        rm -f "$NS_OWNER"
        return 0
    fi
    local p pids
    pids=$(ip netns pids "$PX_NETNS" 2>/dev/null)
    if [ -n "$pids" ]; then
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        for _ in $(seq 20); do
            pids=$(ip netns pids "$PX_NETNS" 2>/dev/null)
            [ -z "$pids" ] && break
            sleep 0.1
        done
        for p in $pids; do kill -KILL "$p" 2>/dev/null; done
    fi
    ip netns del "$PX_NETNS" 2>/dev/null || true
    rm -f "$NS_OWNER"
}

stop_all() {
    local f pid live=()
    for f in "$DIR"/*.pid; do
        [ -f "$f" ] || continue
        pid=$(tr -dc '0-9' < "$f" | head -c 12)
        if [ -n "$pid" ] && ours "$pid"; then
            signal_peer TERM "$pid"
            live+=("$pid")
        fi
    done
    for _ in $(seq 20); do
        local still=()
        for pid in "${live[@]+"${live[@]}"}"; do
            ours "$pid" && still+=("$pid")
        done
        live=("${still[@]+"${still[@]}"}")
        [ ${#live[@]} -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${live[@]+"${live[@]}"}"; do
        signal_peer KILL "$pid"
    done
    rm -f "$DIR"/*.pid
    stop_netns
    return 0
}

# --- starting ---------------------------------------------------------------

STARTED=()   # "name=pid"

# launch NAME CMD...: start CMD in its own session/process group, output to
# DIR/NAME.log, pid to DIR/NAME.pid.
launch() {
    local name=$1
    shift
    (
        # Do not leak the caller's descriptors (pipes a test harness waits
        # on) into long-lived servers; exec keeps the PID.
        me=$BASHPID
        for fd in /proc/"$me"/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
        done
        exec setsid "$@"
    ) >"$DIR/$name.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" > "$DIR/$name.pid"
    STARTED+=("$name=$pid")
}

fail() {
    # fail "message" [peer...]: print the message and the named peers' logs
    # (all logs if none named), stop everything, exit 1.
    local msg=$1 p
    shift
    echo "peers: start FAILED: $msg" >&2
    local show=("$@")
    [ ${#show[@]} -eq 0 ] && show=("${PEERS[@]}")
    for p in "${show[@]}"; do
        for f in "$DIR/$p.log" "$DIR/$p"-*.log; do
            if [ -s "$f" ]; then
                echo "----- $f" >&2
                tail -n 40 "$f" >&2
            fi
        done
    done
    stop_all
    {
        echo "PEERS_READY=0"
        echo "PEERS_FAILED=$(IFS=,; echo "${show[*]}")"
    } > "$DIR/state.env"
    exit 1
}

render_nginx() {
    local v args=()
    args+=(-e "s|@DIR@|$DIR|g" -e "s|@PKI@|$DIR/pki|g")
    for v in $(compgen -v PX_); do
        args+=(-e "s|@$v@|${!v}|g")
    done
    sed "${args[@]}" "$HERE/nginx.conf.in" > "$DIR/nginx.conf" || return 1
    if grep -nE '@(PX_[A-Z0-9_]+|DIR|PKI)@' "$DIR/nginx.conf" >&2; then
        echo "unreplaced placeholder in nginx.conf" >&2
        return 1
    fi
}

dnsmasq_args() {
    # shellcheck disable=SC2054  # the commas are dnsmasq syntax
    local a=(
        --conf-file=/dev/null --no-resolv --no-hosts
        --bind-interfaces --listen-address="$PX_DNS_GOOD" --port="$PX_DNS_PORT"
        --local=/example.test/ --local=/icloud.com/
        --local-ttl=300 --keep-in-foreground --pid-file="$DIR/dnsmasq.pid"
        --log-facility="$DIR/dnsmasq-queries.log" --log-queries
        --host-record=www.example.test,"$PX_TLS_GOOD",::1
        --host-record=example.test,"$PX_TLS_GOOD"
        --cname=alias.example.test,www.example.test
        --cname=alias2.example.test,alias.example.test
        --host-record=expired.example.test,"$PX_TLS_EXPIRED"
        --host-record=wronghost.example.test,"$PX_TLS_WRONGHOST"
        --host-record=unknownroot.example.test,"$PX_TLS_UNKNOWNROOT"
        --host-record=tls10.example.test,"$PX_TLS_TLS10"
        --host-record=noreneg.example.test,"$PX_TLS_NORENEG"
        --host-record=www.icloud.com,"$PX_TLS_ICLOUD"
        --host-record=mitm.example.test,"$PX_TLS_MITM"
        --host-record=stall.example.test,"$PX_TCP_STALL"
        --host-record=reset.example.test,"$PX_TCP_RESET"
        --host-record=closed.example.test,"$PX_TCP_CLOSE"
        --host-record=garbage.example.test,"$PX_TCP_GARBAGE"
        --host-record=refused.example.test,"$PX_TCP_REFUSED"
        --host-record=nonpublic.example.test,10.1.2.3
        --host-record=nonpublic.example.test,192.168.7.7
        --host-record=nonpublic.example.test,fe80::1
        --host-record=public.example.test,203.0.113.7
    )
    # As root dnsmasq would drop to "nobody"/"dnsmasq" and could then not
    # write its log in DIR: stay root (it only binds PX_DNS_GOOD anyway).
    [ "$IS_ROOT" = 1 ] && a+=(--user=root --group=root)
    printf '%s\n' "${a[@]}"
}

start_all() {
    local t0 t1
    t0=$(date +%s.%N)

    # Only one fixture at a time (the addresses and the namespace are fixed).
    local other
    other=$(other_owner)
    [ -z "$other" ] || die "start FAILED: a fixture is already running in $other (run: $0 stop $other)"

    # Clean up whatever a previous run left behind, then start afresh.
    stop_all
    rm -rf "$DIR"
    mkdir -p "$DIR/nginx-tmp" || die "cannot create $DIR"

    for tool in dnsmasq nginx openssl setsid; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
            fail "$tool not installed"
    done
    [ -x "$PY" ] || fail "$PY not found"

    # Every address must be free (also the ones where nothing may listen),
    # or a stray server could pass the readiness checks below.
    local free=(
        "dnsmasq:dns:$PX_DNS_GOOD:$PX_DNS_PORT"
        "bad_dns:dns:$PX_DNS_BAD:$PX_DNS_PORT"
        "dns_dead:dns:$PX_DNS_DEAD:$PX_DNS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_STALL:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_RESET:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_CLOSE:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_GARBAGE:$PX_TLS_PORT"
        "tcp_refused:tcp:$PX_TCP_REFUSED:$PX_TLS_PORT"
        "ns_relay:tcp:$PX_TLS_NORENEG:$PX_TLS_PORT"
        "nginx:tcp:[$PX_TLS_GOOD6]:$PX_TLS_PORT"
    ) v out
    for v in PX_TLS_GOOD PX_TLS_EXPIRED PX_TLS_WRONGHOST PX_TLS_MITM \
             PX_TLS_UNKNOWNROOT PX_TLS_TLS10 PX_TLS_ICLOUD; do
        free+=("nginx:tcp:${!v}:$PX_TLS_PORT")
    done
    if ! out=$("$PY" "$WAIT" --free "${free[@]}" 2>&1); then
        echo "$out" >&2
        ss -ltnup 2>/dev/null | grep -E ":($PX_TLS_PORT|$PX_DNS_PORT)\b" >&2
        fail "addresses already in use (another fixture or server running?)" none
    fi

    "$HERE/make-pki.sh" "$DIR/pki" >"$DIR/pki.log" 2>&1 || fail "make-pki.sh failed" pki
    render_nginx 2>"$DIR/nginx-config.log" || fail "rendering nginx.conf failed" nginx-config

    # dnsmasq (good DNS)
    local dm
    mapfile -t dm < <(dnsmasq_args)
    launch dnsmasq /usr/sbin/dnsmasq "${dm[@]}"

    # broken DNS
    launch bad_dns "$PY" "$HERE/bad_dns.py" --addr "$PX_DNS_BAD" \
        --port "$PX_DNS_PORT" --pidfile "$DIR/bad_dns.pid"

    # misbehaving TCP servers
    launch tcp_misbehave "$PY" "$HERE/tcp_misbehave.py" --port "$PX_TLS_PORT" \
        --stall "$PX_TCP_STALL" --reset "$PX_TCP_RESET" \
        --close "$PX_TCP_CLOSE" --garbage "$PX_TCP_GARBAGE" \
        --pidfile "$DIR/tcp_misbehave.pid"

    # nginx (all the TLS servers)
    local nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    launch nginx "$nginx_bin" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/nginx-error.log"

    # gnutls-serv without safe renegotiation, in its own network namespace
    local noreneg_skipped=1 ns_check=()
    if [ "$IS_ROOT" = 1 ]; then
        noreneg_skipped=0
        {
            echo "$DIR" > "$NS_OWNER" &&
            ip netns add "$PX_NETNS" &&
            ip -n "$PX_NETNS" link set lo up
        } >"$DIR/netns.log" 2>&1 || fail "creating network namespace $PX_NETNS failed" netns
        launch gnutls ip netns exec "$PX_NETNS" gnutls-serv --http -q -a \
            --noticket -p "$PX_TLS_PORT" \
            --x509certfile "$DIR/pki/noreneg-chain.pem" \
            --x509keyfile "$DIR/pki/noreneg.key" \
            --priority 'NORMAL:-VERS-TLS1.3:%DISABLE_SAFE_RENEGOTIATION'
        launch ns_relay "$PY" "$HERE/ns_relay.py" --listen "$PX_TLS_NORENEG" \
            --port "$PX_TLS_PORT" --netns "$PX_NETNS" \
            --target-addr 127.0.0.1 --target-port "$PX_TLS_PORT" \
            --pidfile "$DIR/ns_relay.pid"
        ns_check=("ns_relay:tcp:$PX_TLS_NORENEG:$PX_TLS_PORT")
    fi

    # Wait for every listener.
    local pidargs=() s
    for s in "${STARTED[@]}"; do pidargs+=(--pid "$s"); done
    local checks=(
        "dnsmasq:dns:$PX_DNS_GOOD:$PX_DNS_PORT:www.example.test"
        "dnsmasq:tcp:$PX_DNS_GOOD:$PX_DNS_PORT"
        "bad_dns:dns:$PX_DNS_BAD:$PX_DNS_PORT:ok.bad.test"
        "bad_dns:tcp:$PX_DNS_BAD:$PX_DNS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_STALL:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_RESET:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_CLOSE:$PX_TLS_PORT"
        "tcp_misbehave:tcp:$PX_TCP_GARBAGE:$PX_TLS_PORT"
    )
    for v in PX_TLS_GOOD PX_TLS_EXPIRED PX_TLS_WRONGHOST PX_TLS_MITM \
             PX_TLS_UNKNOWNROOT PX_TLS_TLS10 PX_TLS_ICLOUD; do
        checks+=("nginx:tcp:${!v}:$PX_TLS_PORT")
    done
    checks+=("nginx:tcp:[$PX_TLS_GOOD6]:$PX_TLS_PORT")
    checks+=("${ns_check[@]+"${ns_check[@]}"}")

    if ! out=$("$PY" "$WAIT" --timeout 10 "${pidargs[@]}" "${checks[@]}" 2>&1); then
        local bad
        bad=$(printf '%s\n' "$out" | sed -n 's/^NOT READY \([^:]*\):.*/\1/p' | sort -u | tr '\n' ' ')
        echo "$out" >&2
        # shellcheck disable=SC2086
        fail "peer(s) not ready: ${bad% }" $bad
    fi
    if [ "$IS_ROOT" = 1 ]; then
        # The relay accepts before gnutls-serv is up: check gnutls-serv itself.
        if ! out=$("$PY" "$WAIT" --timeout 10 \
                "${pidargs[@]}" "gnutls@$PX_NETNS:tcp:127.0.0.1:$PX_TLS_PORT" 2>&1); then
            echo "$out" >&2
            fail "peer(s) not ready: gnutls" gnutls ns_relay
        fi
    fi

    {
        echo "# written by tests/peers/peers.sh start"
        echo "PEERS_READY=1"
        echo "PEERS_DIR=$DIR"
        echo "PEERS_PKI=$DIR/pki"
        echo "PEERS_CA=$DIR/pki/ca.pem"
        echo "NORENEG_SKIPPED=$noreneg_skipped"
    } > "$DIR/state.env"

    t1=$(date +%s.%N)
    printf 'peers: ready in %s (%ss%s)\n' "$DIR" "$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")" \
        "$([ "$noreneg_skipped" = 1 ] && echo ', noreneg skipped: not root')"
}

case "$CMD" in
    start) start_all ;;
    stop)
        stop_all
        echo "peers: stopped ($DIR)"
        ;;
    *) usage ;;
esac
