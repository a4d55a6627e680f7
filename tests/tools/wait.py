#!/usr/bin/python3
"""wait.py -- wait until test servers answer (tests/peers and tests/world).

  wait.py [--timeout S] [--pid NAME=PID ...] CHECK...
  wait.py --free CHECK...

CHECK is NAME[@NETNS]:KIND:ADDR:PORT[:ARG...]:
  KIND tcp          a TCP connect succeeds
  KIND dns          ...:PORT[:QNAME] -- a UDP query for QNAME/A (default
                    example.test) gets any reply with the right id: the UDP
                    socket is up, whatever the server thinks of the name
  KIND dns-answer   ...:PORT:QNAME -- a UDP query for QNAME/A gets a NOERROR
                    reply with at least one answer record (so the server is
                    up and, for a forwarding resolver, its upstream too)
  KIND tls          ...:PORT:SNI:SHA256 -- a TLS handshake (SNI as given,
                    nothing verified) shows the leaf whose DER has this
                    sha256 (hex), on three connections in a row
ADDR may be an IPv6 literal in brackets ([::1]). With @NETNS (a name under
/run/netns) the check runs inside that network namespace: the process
switches with setns(2) (root only), no `ip netns exec` per check. Without
it the check runs in the namespace wait.py was started in.

Polls every check until all pass or --timeout (default 10 s) runs out. A
--pid whose process has exited (or is a zombie) fails the wait at once.
Prints nothing and exits 0 when everything is ready; otherwise one line per
check that is not ready ("NOT READY name: reason") and exits 1.

With --free, checks that nothing answers instead: every address:port can
still be bound over TCP (and for dns/dns-answer over UDP too). Prints
"BUSY name: ..." per address that is taken and exits 1. peers.sh runs this
before starting anything, so that a leftover server cannot pass for one of
its peers.

A malformed CHECK or --pid is a usage error: message on stderr, exit 2.
"""

import argparse
import ctypes
import hashlib
import os
import random
import socket
import ssl
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
# Arguments after PORT: (least, most).
KINDS = {"tcp": (0, 0), "dns": (0, 1), "dns-answer": (1, 1), "tls": (2, 2)}


class Usage(Exception):
    pass


class Netns:
    """Switches this process between network namespaces. Keeps one open fd
    per namespace (and one for the starting namespace, to come back to for
    checks without @NETNS) for the life of the process."""

    def __init__(self):
        self._libc = None
        self._fds = {}
        self._home = None
        self._current = None  # None: the starting namespace

    def _fd(self, name):
        fd = self._fds.get(name)
        if fd is None:
            fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
            self._fds[name] = fd
        return fd

    def _setns(self, fd, label):
        if self._libc is None:
            self._libc = ctypes.CDLL(None, use_errno=True)
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (label, os.strerror(e)))

    def enter(self, name):
        """Enter /run/netns/NAME, or the starting namespace for None.
        Raises OSError (the check then fails with that reason)."""
        if name == self._current:
            return
        if self._home is None:
            self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if name is None:
            self._setns(self._home, "back to the starting namespace")
        else:
            self._setns(self._fd(name), name)
        self._current = name


def parse_check(spec):
    """NAME[@NETNS]:KIND:ADDR:PORT[:ARG...] -> (name, netns, kind, addr,
    port, args); Usage on anything malformed."""
    try:
        who, kind, rest = spec.split(":", 2)
        name, _, netns = who.partition("@")
        if rest.startswith("["):
            addr, rest = rest[1:].split("]", 1)
            if not rest.startswith(":"):
                raise ValueError
            rest = rest[1:]
        else:
            addr, rest = rest.split(":", 1)
        parts = rest.split(":")
        port = int(parts[0])
    except ValueError:
        raise Usage("bad check %r (NAME[@NETNS]:KIND:ADDR:PORT[:...])" % spec)
    if not name or ("@" in who and not netns) or not addr or not 0 < port < 65536:
        raise Usage("bad check %r (NAME[@NETNS]:KIND:ADDR:PORT[:...])" % spec)
    if kind not in KINDS:
        raise Usage("bad check %r: unknown kind %r (%s)" % (spec, kind, ", ".join(KINDS)))
    least, most = KINDS[kind]
    args = parts[1:]
    if not least <= len(args) <= most or not all(args):
        raise Usage("bad check %r: %s takes %s" % (spec, kind, {
            "tcp": "nothing after PORT", "dns": "PORT[:QNAME]",
            "dns-answer": "PORT:QNAME", "tls": "PORT:SNI:SHA256"}[kind]))
    return name, netns or None, kind, addr, port, args


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def oserr(e):
    return e.strerror or str(e) or type(e).__name__


def check_tcp(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((addr, port))
        return None
    except OSError as e:
        return oserr(e)
    finally:
        s.close()


def dns_query(qname):
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in qname.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", 1, 1)
    return qid, q


def check_dns(addr, port, qname):
    """Any reply with our id. Not connected: a reply from another source
    address of the same host (a wildcard-bound server) still counts."""
    qid, q = dns_query(qname)
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(q, (addr, port))
        data, _ = s.recvfrom(4096)
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
            return None
        return "reply with wrong id"
    except OSError as e:
        return oserr(e)
    finally:
        s.close()


def check_dns_answer(addr, port, qname):
    qid, q = dns_query(qname)
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        # Connected, so that "nothing listens" is an immediate ECONNREFUSED.
        s.connect((addr, port))
        s.send(q)
        data = s.recv(4096)
        if len(data) < 12 or struct.unpack("!H", data[:2])[0] != qid:
            return "reply with wrong id"
        flags, _, ancount = struct.unpack("!HHH", data[2:8])
        if flags & 0xF:
            return "rcode %d" % (flags & 0xF)
        if ancount == 0:
            return "empty answer"
        return None
    except OSError as e:
        return oserr(e)
    finally:
        s.close()


def check_tls(addr, port, sni, sha256):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Right after a reload an old worker may still take a connection: the
    # leaf has to be the new one several times over.
    for _ in range(3):
        try:
            with socket.create_connection((addr, port), timeout=0.5) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    der = s.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as e:
            return oserr(e)
        got = hashlib.sha256(der).hexdigest()
        if got != sha256.lower():
            return "leaf %s, not %s" % (got[:16], sha256[:16])
    return None


def run_check(kind, addr, port, args):
    if kind == "tcp":
        return check_tcp(addr, port)
    if kind == "dns":
        return check_dns(addr, port, args[0] if args else "example.test")
    if kind == "dns-answer":
        return check_dns_answer(addr, port, args[0])
    return check_tls(addr, port, args[0], args[1])


def where(kind, netns, addr, port):
    if netns is None:
        return "%s %s port %d" % (kind, addr, port)
    return "%s from %s to %s port %d" % (kind, netns, addr, port)


def busy(kind, addr, port):
    """A reason string if addr:port cannot be bound, else None."""
    protos = [("tcp", socket.SOCK_STREAM)]
    if kind in ("dns", "dns-answer"):
        protos.append(("udp", socket.SOCK_DGRAM))
    for pname, st in protos:
        s = socket.socket(family(addr), st)
        try:
            if st == socket.SOCK_STREAM:
                # Like the servers: TIME_WAIT leftovers do not count.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as e:
            return "%s %s port %d: %s" % (pname, addr, port, e.strerror or e)
        finally:
            s.close()
    return None


def free_main(checks, ns):
    bad = 0
    for name, netns, kind, addr, port, _ in checks:
        try:
            ns.enter(netns)
            why = busy(kind, addr, port)
        except OSError as e:
            why = str(e)
        if why:
            print("BUSY %s: %s%s" % (name, why, "" if netns is None else " (in %s)" % netns))
            bad += 1
    return 1 if bad else 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def parse_pid(p):
    n, sep, v = p.partition("=")
    if not n or not sep or not v.isdigit() or int(v) <= 0:
        raise Usage("bad --pid %r (NAME=PID)" % p)
    return n, int(v)


def wait_main(checks, pids, timeout, ns):
    pending = dict(enumerate(checks))
    reasons = {}
    deadline = time.monotonic() + timeout
    while True:
        dead = [n for n, pid in pids.items() if not alive(pid)]
        if dead:
            for n in dead:
                print("NOT READY %s: process %d exited" % (n, pids[n]))
            return 1
        for i, (name, netns, kind, addr, port, args) in list(pending.items()):
            try:
                ns.enter(netns)
                err = run_check(kind, addr, port, args)
            except OSError as e:
                err = str(e)
            if err is None:
                del pending[i]
            else:
                reasons[i] = err
        if not pending:
            return 0
        if time.monotonic() >= deadline:
            for i, (name, netns, kind, addr, port, _) in pending.items():
                print("NOT READY %s: %s: %s"
                      % (name, where(kind, netns, addr, port), reasons.get(i, "?")))
            return 1
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(
        description="Wait until test servers answer (or, with --free, that nothing does).")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--pid", action="append", default=[], metavar="NAME=PID")
    ap.add_argument("--free", action="store_true")
    ap.add_argument("checks", nargs="+", metavar="CHECK")
    args = ap.parse_args()
    try:
        checks = [parse_check(c) for c in args.checks]
        pids = dict(parse_pid(p) for p in args.pid)
    except Usage as e:
        print("wait.py: %s" % e, file=sys.stderr)
        return 2
    ns = Netns()
    if args.free:
        return free_main(checks, ns)
    return wait_main(checks, pids, args.timeout, ns)


if __name__ == "__main__":
    sys.exit(main())
