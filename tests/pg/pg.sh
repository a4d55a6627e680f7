#!/usr/bin/env bash
# pg.sh start DIR | stop DIR -- a throwaway PostgreSQL 15 cluster for the
# collector tests (PX_TEST_STORE=postgresql).
#
# start: (re)creates DIR, runs initdb in DIR/data (as the OS user postgres
#        when started as root: the server refuses to run as root), starts
#        the server on 127.0.0.1 and a free port, with its Unix socket in
#        DIR, creates the non-superuser role parallax_test and its database
#        parallax_test, and writes DIR/pg.env (PX_PG_URL, PX_PG_PORT, …).
#        Every collector of a test then works in a schema of its own in
#        that database (tests/cli/collectorlib.py).
# stop:  stops the server (fast shutdown, immediate after 20 s) and
#        removes DIR. Succeeds when it is already gone.
#
# As root, the cluster itself lives in a fresh directory under /tmp that
# DIR/cluster names: the server's user must reach its files, and DIR may
# sit in a tree only root can enter (a checkout in a 0700 directory). It
# also keeps the Unix socket's path short (sun_path holds 107 bytes).
#
# The cluster accepts local connections without a password (trust on
# loopback and the socket); it lives only as long as one ctest run.
set -u

die() { echo "pg: $*" >&2; exit 1; }
usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
CMD=$1
DIR=$(realpath -m -- "$2") || die "bad DIR"
case "$DIR" in
    /|/root|/home|/tmp|/var/tmp|/work|/usr|/usr/*|/etc|/etc/*|/var|/bin|/sbin|/lib|/lib64|/boot|/opt|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run)
        die "refusing to use DIR=$DIR" ;;
esac
[ -e "$DIR/.git" ] && die "refusing to use DIR=$DIR"

PGBIN=${PX_PG_BIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null)}
[ -x "$PGBIN/initdb" ] || die "PostgreSQL 15 is not installed (scripts/install-deps.sh: postgresql-15)"

# The server runs as a user of its own: postgres when we are root, else us.
if [ "$(id -u)" = 0 ]; then
    OWNER=postgres
    id "$OWNER" >/dev/null 2>&1 || die "no OS user '$OWNER' (it comes with postgresql-common)"
    as_owner() { runuser -u "$OWNER" -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

cluster_dir() {
    local c
    if [ -f "$DIR/cluster" ]; then
        c=$(cat "$DIR/cluster")
        case "$c" in /tmp/px-pg.*) echo "$c"; return ;; esac
    fi
    echo "$DIR"
}

stop() {
    local C
    C=$(cluster_dir)
    if [ -f "$C/data/postmaster.pid" ]; then
        as_owner "$PGBIN/pg_ctl" -D "$C/data" -m fast -t 20 -w stop >/dev/null 2>&1 ||
            as_owner "$PGBIN/pg_ctl" -D "$C/data" -m immediate -w stop >/dev/null 2>&1
    fi
    [ "$C" = "$DIR" ] || rm -rf "$C"
    rm -rf "$DIR"
}

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    stop
    mkdir -p "$DIR" || die "cannot create $DIR"
    local C=$DIR
    if [ "$OWNER" != "$(id -un)" ]; then
        C=$(mktemp -d /tmp/px-pg.XXXXXX) || die "cannot create a cluster directory"
        echo "$C" >"$DIR/cluster"
        chown "$OWNER" "$C"
    fi
    chmod 700 "$C"
    as_owner "$PGBIN/initdb" -D "$C/data" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-sync >"$C/initdb.log" 2>&1 || { cat "$C/initdb.log" >&2; die "initdb failed"; }
    local port tries=0
    while :; do
        port=$(free_port)
        # Small and quick: one test run's worth of collectors, fsync kept
        # on (the collector's durability is what the tests are about).
        cat >>"$C/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$C'
max_connections = 300
shared_buffers = 64MB
log_min_messages = warning
log_min_error_statement = panic
EOF
        if as_owner "$PGBIN/pg_ctl" -D "$C/data" -l "$C/server.log" -w -t 30 start \
            >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        [ $tries -lt 3 ] || { cat "$C/server.log" >&2; die "the server did not start"; }
    done
    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$C" -p "$port" -U postgres -d postgres)
    as_owner "${psql[@]}" -c "CREATE ROLE parallax_test LOGIN" \
        -c "CREATE DATABASE parallax_test OWNER parallax_test" >/dev/null ||
        die "cannot create the test role and database"
    cat >"$DIR/pg.env.tmp" <<EOF
PX_PG_HOST=127.0.0.1
PX_PG_PORT=$port
PX_PG_SOCKET=$C
PX_PG_USER=parallax_test
PX_PG_DB=parallax_test
PX_PG_URL=postgresql://parallax_test@127.0.0.1:$port/parallax_test
PX_PG_PSQL=$PGBIN/psql
PX_PG_READY=1
EOF
    chmod 755 "$C"
    mv "$DIR/pg.env.tmp" "$DIR/pg.env"
    echo "pg: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($C)"
}

case "$CMD" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
