#!/usr/bin/python3
"""inject_dns.py -- the on-path DNS injector of the test world (TR's resolver).

  inject_dns.py --listen ADDR --upstream ADDR [--forge NAME=ADDR]...
                [--host NAME=ADDR]... [--delay-ms MS] [--log FILE]

Stdlib only; world.sh runs it in the core like the dnsmasq resolvers, on
port 53, UDP and TCP.

An injector on the path does not replace the real resolver, it races it
(the GFW pattern): over UDP, an A query for a --forge NAME gets a forged
answer at once (NAME A ADDR, ttl 300, the query's id and question), and the
query still goes to --upstream, whose genuine answer is relayed to the same
client socket with the same id, no sooner than --delay-ms (default 75)
after the forged one. A client that takes the first answer is fooled; one
that keeps listening sees both.

--host NAME=ADDR is answered here (A ADDR, ttl 300; other types NOERROR
without records): the whoami name of the other countries' resolvers.
Everything else is forwarded and its answer relayed unchanged. Over TCP
nothing is forged (an injector races datagrams), names are forwarded over
TCP or answered by --host.

--log FILE gets one line per query: time, transport, client, name, type and
what was done.
"""

import argparse
import socket
import struct
import sys
import threading
import time

T_A = 1
TTL = 300
UPSTREAM_TIMEOUT = 2.0

_log_lock = threading.Lock()
_log_file = None


def log(msg):
    if _log_file is None:
        return
    with _log_lock:
        _log_file.write("%.3f %s\n" % (time.time(), msg))
        _log_file.flush()


def parse_question(msg):
    """(id, flags, lower-case name, qtype, end of the question) of a query;
    raises ValueError on anything that is not one plain question."""
    if len(msg) < 12:
        raise ValueError("short header")
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or (flags >> 11) & 0xF or qd != 1:
        raise ValueError("not a plain query")
    off, labels = 12, []
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the end")
        ln = msg[off]
        off += 1
        if ln == 0:
            break
        if ln & 0xC0 or off + ln > len(msg):
            raise ValueError("bad label")
        labels.append(msg[off:off + ln].decode("latin-1"))
        off += ln
    if off + 4 > len(msg):
        raise ValueError("short question")
    qtype = struct.unpack("!H", msg[off:off + 2])[0]
    return qid, flags, ".".join(labels).lower(), qtype, off + 4


def answer(query, qend, addr):
    """A response to query (its id, RD and question as sent, 0x20 case
    included) with one A record for addr, or none when addr is None."""
    qid, qflags = struct.unpack("!HH", query[:4])
    flags = 0x8000 | (qflags & 0x0100) | 0x0080
    an = 0 if addr is None else 1
    out = struct.pack("!HHHHHH", qid, flags, 1, an, 0, 0) + query[12:qend]
    if addr is not None:
        out += struct.pack("!HHHIH", 0xC00C, T_A, 1, TTL, 4) + socket.inet_aton(addr)
    return out


def ask_upstream_udp(upstream, query):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(UPSTREAM_TIMEOUT)
    try:
        s.connect((upstream, 53))
        s.send(query)
        while True:
            reply = s.recv(65535)
            if reply[:2] == query[:2]:
                return reply
    except OSError:
        return None
    finally:
        s.close()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def ask_upstream_tcp(upstream, query):
    try:
        with socket.create_connection((upstream, 53), timeout=UPSTREAM_TIMEOUT) as s:
            s.sendall(struct.pack("!H", len(query)) + query)
            n = struct.unpack("!H", recv_exact(s, 2))[0]
            return recv_exact(s, n)
    except OSError:
        return None


class Injector:
    def __init__(self, args):
        self.upstream = args.upstream
        self.delay = args.delay_ms / 1000.0
        self.forge = dict(kv.lower().split("=", 1) for kv in args.forge)
        self.hosts = dict(kv.lower().split("=", 1) for kv in args.host)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((args.listen, 53))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((args.listen, 53))
        self.tcp.listen(64)

    def local(self, query, name, qtype, qend):
        """The answer when name is ours (--host), else None."""
        if name not in self.hosts:
            return None
        return answer(query, qend, self.hosts[name] if qtype == T_A else None)

    def udp_query(self, query, client):
        try:
            qid, _, name, qtype, qend = parse_question(query)
        except ValueError as e:
            log("udp %s:%d dropped: %s" % (client[0], client[1], e))
            return
        what = "udp %s:%d %s type %d id %d" % (client[0], client[1], name, qtype, qid)
        mine = self.local(query, name, qtype, qend)
        if mine is not None:
            self.udp.sendto(mine, client)
            log(what + ": answered locally")
            return
        forged_at = None
        if qtype == T_A and name in self.forge:
            self.udp.sendto(answer(query, qend, self.forge[name]), client)
            forged_at = time.monotonic()
            log(what + ": FORGED %s" % self.forge[name])
        reply = ask_upstream_udp(self.upstream, query)
        if reply is None:
            log(what + ": no answer from upstream")
            return
        if forged_at is not None:
            wait = forged_at + self.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self.udp.sendto(reply, client)
        log(what + (": genuine answer %.0f ms after the forged one"
                    % ((time.monotonic() - forged_at) * 1000) if forged_at else ": forwarded"))

    def tcp_client(self, conn, client):
        with conn:
            conn.settimeout(10)
            while True:
                try:
                    n = struct.unpack("!H", recv_exact(conn, 2))[0]
                    query = recv_exact(conn, n)
                except (OSError, ConnectionError):
                    return
                try:
                    qid, _, name, qtype, qend = parse_question(query)
                except ValueError as e:
                    log("tcp %s:%d dropped: %s" % (client[0], client[1], e))
                    return
                what = "tcp %s:%d %s type %d id %d" % (client[0], client[1], name, qtype, qid)
                reply = self.local(query, name, qtype, qend)
                how = "answered locally"
                if reply is None:
                    reply, how = ask_upstream_tcp(self.upstream, query), "forwarded"
                if reply is None:
                    log(what + ": no answer from upstream")
                    return
                log(what + ": " + how)
                try:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return

    def serve_tcp(self):
        while True:
            conn, client = self.tcp.accept()
            threading.Thread(target=self.tcp_client, args=(conn, client), daemon=True).start()

    def serve(self):
        threading.Thread(target=self.serve_tcp, daemon=True).start()
        while True:
            query, client = self.udp.recvfrom(65535)
            threading.Thread(target=self.udp_query, args=(query, client), daemon=True).start()


def main():
    global _log_file
    ap = argparse.ArgumentParser(description="the test world's on-path DNS injector")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--forge", action="append", default=[], metavar="NAME=ADDR")
    ap.add_argument("--host", action="append", default=[], metavar="NAME=ADDR")
    ap.add_argument("--delay-ms", type=float, default=75.0)
    ap.add_argument("--log")
    args = ap.parse_args()
    for kv in args.forge + args.host:
        name, _, addr = kv.partition("=")
        try:
            socket.inet_aton(addr)
        except OSError:
            ap.error("%s: not NAME=IPv4ADDRESS" % kv)
    if args.log:
        _log_file = open(args.log, "a")
    try:
        inj = Injector(args)
    except OSError as e:
        print("inject_dns: cannot listen on %s:53: %s" % (args.listen, e), file=sys.stderr)
        return 1
    print("inject_dns: listening on %s:53 (udp, tcp), upstream %s, forging %s"
          % (args.listen, args.upstream, " ".join(args.forge) or "nothing"), flush=True)
    inj.serve()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
