#!/usr/bin/env bash
# Installs the Debian 12 packages parallax needs to build and test.
# Idempotent and quiet: does nothing when everything is present.
set -euo pipefail

packages=(
  # build
  gcc make cmake pkg-config
  libuv1-dev libc-ares-dev libssl-dev libjansson-dev libcmocka-dev
  libcurl4-openssl-dev libmicrohttpd-dev libsqlite3-dev libinih-dev libmaxminddb-dev
  libpq-dev libidn2-dev
  # static analysis in make check (tests/static/run.sh; clang-tidy brings
  # run-clang-tidy for the parallel run)
  cppcheck clang-tidy
  # test peers and tools
  openssl dnsmasq-base nginx-light gnutls-bin iproute2
  python3 python3-jsonschema valgrind procps curl
  # signatures, upload paths: OpenSSH for ssh-keygen -Y, proxies for --proxy
  openssh-client tinyproxy dante-server sqlite3
  # the collector suite's second run, against a throwaway PostgreSQL 15
  # cluster (tests/pg/pg.sh; initdb, pg_ctl, psql, pg_dump)
  postgresql-15 postgresql-client-15
  # geolocation tests build their own small MMDB files
  libmaxmind-db-writer-perl
  # the multi-country world and its browser test
  nftables chromium
  # the researcher's verification script in docs/researcher.md, run by a test
  python3-cryptography
  # docs' shell examples (signed tree heads, spool entries), run by tests
  jq
  # parallax setup's dialogue, driven through a pseudo-terminal by a test
  python3-pexpect
  # the units under a real systemd as PID 1 (tests/cli/test_systemd_pid1.py):
  # systemd-nspawn boots the host's systemd in a container, the .deb that
  # cpack makes (dpkg-shlibdeps) is installed in it
  systemd systemd-container dpkg-dev
)
for opt in "$@"; do
  case $opt in
    # make bench: load generation and signing at benchmark volume.
    # bench/dns-throughput: NSD serves, dnsperf is the peer, dig waits.
    --bench) packages+=(wrk nsd dnsperf bind9-dnsutils) ;;
    # make fuzz, make check: libFuzzer comes with clang's runtime.
    --fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps: unknown option $opt" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# A package's own service (NSD on *:53) must not take the test world's
# ports: the benchmarks start their own servers on loopback.
for unit in nsd; do
  if [[ " ${missing[*]} " == *" $unit "* ]] && command -v systemctl >/dev/null 2>&1 &&
      systemctl is-active -q "$unit" 2>/dev/null; then
    $SUDO systemctl disable --now -q "$unit" || true
  fi
done
