#!/usr/bin/python3
"""waitready.py -- wait until the test peers' listeners answer.

  waitready.py [--timeout S] [--pid NAME=PID ...] CHECK...

CHECK is one of
  NAME:tcp:ADDR:PORT            a TCP connect succeeds
  NAME:dns:ADDR:PORT:QNAME      a UDP DNS query for QNAME/A gets any reply
                                with the right id (so the UDP socket is up)
ADDR may be an IPv6 literal in brackets ([::1]).

With --free, checks nothing answers instead: every TCP address:port (and,
for dns, the UDP one too) can still be bound. Prints "BUSY name: ..." per
address that is taken and exits 1. peers.sh runs this before starting
anything, so that a leftover server cannot pass for one of the peers.

Polls every check until all pass or --timeout (default 10 s) runs out.
A --pid whose process has exited fails the wait at once. Prints nothing and
exits 0 when everything is ready; otherwise prints one line per peer that
is not ready ("NOT READY name: reason") and exits 1.
"""

import argparse
import os
import random
import socket
import struct
import sys
import time


def split_check(spec):
    # NAME:kind:ADDR:PORT[:QNAME], ADDR possibly "[v6]".
    name, kind, rest = spec.split(":", 2)
    if rest.startswith("["):
        addr, rest = rest[1:].split("]", 1)
        rest = rest.lstrip(":")
    else:
        addr, rest = rest.split(":", 1)
    parts = rest.split(":")
    return name, kind, addr, int(parts[0]), parts[1:]


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def check_tcp(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect((addr, port))
        return None
    except OSError as e:
        return str(e)
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
        s.sendto(q, (addr, port))
        data, _ = s.recvfrom(4096)
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
            return None
        return "reply with wrong id"
    except OSError as e:
        return str(e) or type(e).__name__
    finally:
        s.close()


def busy(kind, addr, port):
    """Return a reason string if addr:port cannot be bound, else None."""
    protos = [("tcp", socket.SOCK_STREAM)]
    if kind == "dns":
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


def free_main(checks):
    bad = 0
    for spec in checks:
        name, kind, addr, port, _ = split_check(spec)
        why = busy(kind, addr, port)
        if why:
            print("BUSY %s: %s" % (name, why))
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--pid", action="append", default=[], metavar="NAME=PID")
    ap.add_argument("--free", action="store_true")
    ap.add_argument("checks", nargs="+")
    args = ap.parse_args()
    if args.free:
        return free_main(args.checks)

    pending = {}
    for spec in args.checks:
        pending[spec] = split_check(spec)
    pids = {}
    for p in args.pid:
        n, v = p.split("=", 1)
        pids[n] = int(v)

    reasons = {}
    deadline = time.monotonic() + args.timeout
    while pending:
        dead = [n for n, pid in pids.items() if not alive(pid)]
        if dead:
            for n in dead:
                print("NOT READY %s: process %d exited" % (n, pids[n]))
            return 1
        for spec, (name, kind, addr, port, extra) in list(pending.items()):
            if kind == "tcp":
                err = check_tcp(addr, port)
            elif kind == "dns":
                err = check_dns(addr, port, extra[0] if extra else "example.test")
            else:
                print("waitready: unknown check kind %r" % kind, file=sys.stderr)
                return 2
            if err is None:
                del pending[spec]
            else:
                reasons[spec] = err
        if not pending:
            break
        if time.monotonic() >= deadline:
            for spec, (name, kind, addr, port, _) in pending.items():
                print("NOT READY %s: %s %s port %d: %s"
                      % (name, kind, addr, port, reasons.get(spec, "?")))
            return 1
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
