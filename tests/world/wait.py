#!/usr/bin/python3
"""wait.py -- wait until the test world's services answer.

  wait.py [--timeout S] [--pid NAME=PID ...] CHECK...

CHECK is NAME@NETNS:KIND:ADDR:PORT[:QNAME]:
  KIND tcp   a TCP connect from inside NETNS succeeds
  KIND dns   a UDP query for QNAME/A sent from inside NETNS gets a NOERROR
             answer with at least one record (so the server is up and, for a
             forwarding resolver, its upstream answers too)
  KIND tls   ...:PORT:SNI:SHA256 -- a TLS handshake (SNI as given, nothing
             verified) shows the leaf whose DER has this sha256 (lower-case
             hex), on three connections in a row
NETNS is a name under /run/netns; ADDR may be an IPv6 literal in brackets.

One process, no `ip netns exec` per check: it switches its network namespace
with setns(2) before each check (root only). Polls until every check passes
or --timeout (default 15 s) runs out; a --pid that has exited fails at once.
Silent with exit 0 when ready; otherwise one line per failed check
("NOT READY name: ...") and exit 1.
"""

import argparse
import ctypes
import os
import random
import hashlib
import socket
import ssl
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_ns_fds = {}


def enter_netns(name):
    fd = _ns_fds.get(name)
    if fd is None:
        fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
        _ns_fds[name] = fd
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns %s: %s" % (name, os.strerror(e)))


def split_check(spec):
    name, rest = spec.split("@", 1)
    ns, kind, rest = rest.split(":", 2)
    if rest.startswith("["):
        addr, rest = rest[1:].split("]", 1)
        rest = rest.lstrip(":")
    else:
        addr, rest = rest.split(":", 1)
    parts = rest.split(":")
    return name, ns, kind, addr, int(parts[0]), parts[1:]


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def check_tcp(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((addr, port))
        return None
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    finally:
        s.close()


def check_dns(addr, port, qname):
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in qname.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", 1, 1)
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
        return e.strerror or str(e) or type(e).__name__
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
            return e.strerror or str(e) or type(e).__name__
        got = hashlib.sha256(der).hexdigest()
        if got != sha256.lower():
            return "leaf %s, not %s" % (got[:16], sha256[:16])
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--pid", action="append", default=[], metavar="NAME=PID")
    ap.add_argument("checks", nargs="+")
    args = ap.parse_args()

    pending = {spec: split_check(spec) for spec in args.checks}
    pids = {}
    for p in args.pid:
        n, v = p.split("=", 1)
        pids[n] = int(v)

    reasons = {}
    deadline = time.monotonic() + args.timeout
    while True:
        dead = [n for n, pid in pids.items() if not alive(pid)]
        if dead:
            for n in dead:
                print("NOT READY %s: process %d exited" % (n, pids[n]))
            return 1
        for spec, (name, ns, kind, addr, port, extra) in list(pending.items()):
            try:
                enter_netns(ns)
                if kind == "tcp":
                    err = check_tcp(addr, port)
                elif kind == "dns":
                    err = check_dns(addr, port, extra[0] if extra else "www.icloud.com")
                elif kind == "tls" and len(extra) == 2:
                    err = check_tls(addr, port, extra[0], extra[1])
                else:
                    print("wait.py: unknown check kind %r" % kind, file=sys.stderr)
                    return 2
            except OSError as e:
                err = str(e)
            if err is None:
                del pending[spec]
            else:
                reasons[spec] = err
        if not pending:
            return 0
        if time.monotonic() >= deadline:
            for spec, (name, ns, kind, addr, port, _) in pending.items():
                print("NOT READY %s: %s from %s to %s port %d: %s"
                      % (name, kind, ns, addr, port, reasons.get(spec, "?")))
            return 1
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
