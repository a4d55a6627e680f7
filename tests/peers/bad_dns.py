#!/usr/bin/python3
"""bad_dns.py -- a deliberately broken DNS responder for the parallax tests.

Stdlib only. Listens on UDP and TCP on --addr/--port (PX_DNS_BAD /
PX_DNS_PORT from tests/peers/peers.env) and misbehaves according to the
query name (case-insensitive):

  servfail.bad.test    rcode SERVFAIL (2), question echoed, no answers
  refused.bad.test     rcode REFUSED (5)
  silent.bad.test      never answers (TCP: connection kept open, no answer)
  truncated.bad.test   UDP: TC=1, question echoed, no answers.
                       TCP: A -> 12 A records (127.80.1.1, 127.80.9.1..11),
                       AAAA -> one AAAA ::1, ttl 60
  malformed.bad.test   correct header/question, ancount=1, answer RR cut
                       after its name (2-byte pointer) plus 3 bytes
  loop.bad.test        ancount=1, answer NAME is a compression pointer to
                       itself, followed by TYPE A/IN/ttl 60/rdlen 4/127.80.1.1
  garbage.bad.test     40 random bytes (id never equal to the query id);
                       over TCP framed with a correct 2-byte length (40)
  wrongid.bad.test     correct answer (A 127.80.1.1 ttl 60) but
                       id = (query id + 1) % 65536
  ok.bad.test          A 127.80.1.1 ttl 60; AAAA -> NOERROR, no answers
  injected.bad.test    an on-path injector: over UDP, A -> at once a forged
                       A 127.80.9.99, then 60 ms later (same id) the genuine
                       A 127.80.1.1; AAAA -> NOERROR, no answers. TCP: the
                       genuine answer only
  anything else        NXDOMAIN

The names are matched for every qtype; the answer-carrying cases only
produce records for A (1) and AAAA (28) and answer NOERROR/no data for
other qtypes. If the query carries an OPT record the response carries one
too (payload size 1232, version 0, DO bit copied, no options). A query with
opcode != 0 gets NOTIMP, one with qdcount != 1 or an unparsable question
gets FORMERR (if at least the 12-byte header is there; otherwise dropped).

Responses set QR=1, RA=1, copy RD and opcode, AA=0.
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading

T_A = 1
T_AAAA = 28
T_OPT = 41
C_IN = 1

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

OK_A = "127.80.1.1"
INJECTED_A = "127.80.9.99"


def genuine_late(msg):
    """injected.bad.test's second, genuine UDP reply to msg, or None."""
    try:
        q, err = parse_query(msg)
    except (ValueError, struct.error):
        return None
    if err is not None or q.qname.rstrip(".") != "injected.bad.test" or q.qtype != T_A:
        return None
    return simple(q, NOERROR, [rr_a(OK_A)])
TTL = 60


class Query:
    __slots__ = ("id", "flags", "opcode", "rd", "qname_wire", "qname",
                 "qtype", "qclass", "opt", "do")

    def __init__(self):
        self.opt = False
        self.do = False


def parse_name(msg, off):
    """Return (lowercase dotted name, offset after the name in msg)."""
    labels = []
    end = None
    jumps = 0
    while True:
        if off >= len(msg):
            raise ValueError("name runs past end")
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise ValueError("truncated pointer")
            if end is None:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            if jumps > 20:
                raise ValueError("pointer loop")
            continue
        if ln & 0xC0:
            raise ValueError("bad label type")
        off += 1
        if ln == 0:
            break
        if off + ln > len(msg):
            raise ValueError("label runs past end")
        labels.append(msg[off:off + ln].decode("latin-1"))
        off += ln
    if end is None:
        end = off
    return ".".join(labels).lower(), end


def parse_query(msg):
    """Parse a query; returns (Query, error_rcode or None). Raises if the
    header itself is not there."""
    if len(msg) < 12:
        raise ValueError("short header")
    q = Query()
    (q.id, q.flags, qd, an, ns, ar) = struct.unpack("!HHHHHH", msg[:12])
    q.opcode = (q.flags >> 11) & 0xF
    q.rd = (q.flags >> 8) & 1
    q.qname_wire = None
    q.qname = ""
    q.qtype = 0
    q.qclass = C_IN
    if q.flags & 0x8000:
        raise ValueError("not a query")
    if q.opcode != 0:
        return q, NOTIMP
    if qd != 1:
        return q, FORMERR
    try:
        name, off = parse_name(msg, 12)
        if off + 4 > len(msg):
            return q, FORMERR
        # Echo the question with the case the client used (0x20 encoding);
        # the query name is uncompressed in practice, copy the wire form.
        q.qname_wire = msg[12:off]
        if any(b & 0xC0 == 0xC0 for b in _label_heads(q.qname_wire)):
            q.qname_wire = encode_name(name)
        q.qname = name
        q.qtype, q.qclass = struct.unpack("!HH", msg[off:off + 4])
        off += 4
        # Skip answer/authority RRs (should be none), look for OPT.
        for i in range(an + ns + ar):
            _, off = parse_name(msg, off)
            if off + 10 > len(msg):
                break
            rtype, rclass, rttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10 + rdlen
            if i >= an + ns and rtype == T_OPT:
                q.opt = True
                q.do = bool(rttl & 0x8000)
    except (ValueError, struct.error):
        return q, FORMERR
    return q, None


def _label_heads(wire):
    off = 0
    while off < len(wire):
        b = wire[off]
        yield b
        if b == 0 or b & 0xC0:
            return
        off += 1 + b


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("latin-1")
    return out + b"\x00"


def header(qid, q, rcode, qd, an, ns=0, ar=0, tc=False):
    flags = 0x8000 | (q.opcode << 11) | (q.rd << 8) | 0x0080 | (rcode & 0xF)
    if tc:
        flags |= 0x0200
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(q):
    return q.qname_wire + struct.pack("!HH", q.qtype, q.qclass)


def opt_rr(q):
    if not q.opt:
        return b""
    return b"\x00" + struct.pack("!HHIH", T_OPT, 1232, 0x8000 if q.do else 0, 0)


def rr_a(addr, ttl=TTL):
    # NAME = pointer to the question name at offset 12.
    return b"\xc0\x0c" + struct.pack("!HHIH", T_A, C_IN, ttl, 4) + socket.inet_aton(addr)


def rr_aaaa(addr, ttl=TTL):
    return (b"\xc0\x0c" + struct.pack("!HHIH", T_AAAA, C_IN, ttl, 16)
            + socket.inet_pton(socket.AF_INET6, addr))


def simple(q, rcode, answers=(), qid=None, tc=False):
    ar = 1 if q.opt else 0
    qid = q.id if qid is None else qid
    if q.qname_wire is None:  # could not parse the question
        return header(qid, q, rcode, 0, 0, 0, ar) + opt_rr(q)
    return (header(qid, q, rcode, 1, len(answers), 0, ar, tc=tc) + question(q)
            + b"".join(answers) + opt_rr(q))


def respond(msg, transport):
    """Return the response bytes for msg, or None for no answer at all."""
    try:
        q, err = parse_query(msg)
    except (ValueError, struct.error):
        return None
    if err is not None:
        return simple(q, err)
    name = q.qname.rstrip(".")
    if name == "servfail.bad.test":
        return simple(q, SERVFAIL)
    if name == "refused.bad.test":
        return simple(q, REFUSED)
    if name == "silent.bad.test":
        return None
    if name == "truncated.bad.test":
        if transport == "udp":
            return simple(q, NOERROR, tc=True)
        if q.qtype == T_A:
            addrs = [OK_A] + ["127.80.9.%d" % i for i in range(1, 12)]
            return simple(q, NOERROR, [rr_a(a) for a in addrs])
        if q.qtype == T_AAAA:
            return simple(q, NOERROR, [rr_aaaa("::1")])
        return simple(q, NOERROR)
    if name == "malformed.bad.test":
        # Header says one answer (and no additional: the OPT is not sent,
        # it would sit after the cut); the RR stops 3 bytes after its name.
        return (header(q.id, q, NOERROR, 1, 1, 0, 0) + question(q)
                + b"\xc0\x0c" + b"\x00\x01\x00")
    if name == "loop.bad.test":
        start = 12 + len(question(q))
        ptr = struct.pack("!H", 0xC000 | start)
        rr = ptr + struct.pack("!HHIH", T_A, C_IN, TTL, 4) + socket.inet_aton(OK_A)
        return header(q.id, q, NOERROR, 1, 1, 0, 0) + question(q) + rr
    if name == "garbage.bad.test":
        while True:
            junk = os.urandom(40)
            if struct.unpack("!H", junk[:2])[0] != q.id:
                return junk
    if name == "wrongid.bad.test":
        ans = [rr_a(OK_A)] if q.qtype == T_A else []
        return simple(q, NOERROR, ans, qid=(q.id + 1) % 65536)
    if name == "injected.bad.test":
        ans = [rr_a(INJECTED_A if transport == "udp" else OK_A)] if q.qtype == T_A else []
        return simple(q, NOERROR, ans)
    if name == "ok.bad.test":
        ans = [rr_a(OK_A)] if q.qtype == T_A else []
        return simple(q, NOERROR, ans)
    return simple(q, NXDOMAIN)


class Server:
    def __init__(self, addr, port):
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        # No SO_REUSEADDR on UDP: on Linux it would let a second instance
        # bind the same address and silently share the traffic.
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.bind((addr, port))
        self.tcp = socket.socket(fam, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((addr, port))
        self.tcp.listen(128)
        self.stop = threading.Event()

    def serve_udp(self):
        self.udp.settimeout(0.5)
        while not self.stop.is_set():
            try:
                msg, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                continue
            resp = respond(msg, "udp")
            if resp is not None:
                try:
                    self.udp.sendto(resp, peer)
                except OSError:
                    pass
            late = genuine_late(msg)
            if late is not None:
                threading.Timer(0.06, self._send_quietly, (late, peer)).start()

    def _send_quietly(self, data, peer):
        try:
            self.udp.sendto(data, peer)
        except OSError:
            pass

    def serve_tcp(self):
        self.tcp.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                continue
            t = threading.Thread(target=self.tcp_conn, args=(conn,), daemon=True)
            t.start()

    def tcp_conn(self, conn):
        # Serve length-prefixed queries until the peer closes; pipelining OK.
        # "silent" queries get no answer but the connection stays open.
        conn.settimeout(0.5)
        buf = b""
        try:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buf += data
                while len(buf) >= 2:
                    ln = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + ln:
                        break
                    msg, buf = buf[2:2 + ln], buf[2 + ln:]
                    resp = respond(msg, "tcp")
                    if resp is not None:
                        conn.sendall(struct.pack("!H", len(resp)) + resp)
        except OSError:
            pass
        finally:
            conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pidfile")
    args = ap.parse_args()

    srv = Server(args.addr, args.port)

    def on_term(signum, frame):
        srv.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())

    threads = [threading.Thread(target=srv.serve_udp, daemon=True),
               threading.Thread(target=srv.serve_tcp, daemon=True)]
    for t in threads:
        t.start()
    while not srv.stop.is_set():
        srv.stop.wait(0.5)
    for s in (srv.udp, srv.tcp):
        try:
            s.close()
        except OSError:
            pass
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
