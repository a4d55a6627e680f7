#!/usr/bin/python3
"""selftest.py DIR -- check that a running fixture (peers.sh start DIR)
behaves as documented in tests/peers/README.md.

Stdlib only (socket, ssl -- Python's ssl module is OpenSSL 3.0, the same
library the C probe links). Prints one line per failed check and a closing
"N passed, N failed" line; exits 1 if anything failed.
"""

import os
import random
import socket
import ssl
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = {"passed": 0, "failed": 0, "skipped": 0}
VERBOSE = os.environ.get("PEERS_SELFTEST_VERBOSE") == "1"


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            env[k] = v
    return env


def check(name, cond, detail=""):
    if cond:
        RESULTS["passed"] += 1
        if VERBOSE:
            print("ok   %s" % name)
    else:
        RESULTS["failed"] += 1
        print("FAIL %s %s" % (name, detail))


# --- DNS -----------------------------------------------------------------

def build_query(qname, qtype, qid=None, edns=True):
    qid = random.randrange(65536) if qid is None else qid
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in qname.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return qid, q


def read_name(msg, off, depth=0):
    labels = []
    while True:
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if depth > 10:
                raise ValueError("loop")
            ptr = ((ln & 0x3F) << 8) | msg[off + 1]
            name, _ = read_name(msg, ptr, depth + 1)
            return ".".join(labels + ([name] if name else [])), off + 2
        off += 1
        if ln == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + ln].decode())
        off += ln


def parse_response(msg):
    """Return dict(id, flags, rcode, tc, an=[(name,type,value,ttl)], ar_types)."""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    rrs = []
    ar_types = []
    for i in range(an + ns + ar):
        name, off = read_name(msg, off)
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        if len(rdata) != rdlen:
            raise ValueError("short rdata")
        off += rdlen
        if rtype == 1:
            val = socket.inet_ntop(socket.AF_INET, rdata)
        elif rtype == 28:
            val = socket.inet_ntop(socket.AF_INET6, rdata)
        elif rtype == 5:
            val, _ = read_name(msg, off - rdlen)
        else:
            val = rdata
        if i < an:
            rrs.append((name.lower(), rtype, val, ttl))
        elif i >= an + ns:
            ar_types.append(rtype)
    return {"id": qid, "flags": flags, "rcode": flags & 0xF,
            "tc": bool(flags & 0x0200), "an": rrs, "ar_types": ar_types,
            "ancount": an}


def udp_query(addr, port, qname, qtype, timeout=1.0, edns=True):
    qid, q = build_query(qname, qtype, edns=edns)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (addr, port))
        data, _ = s.recvfrom(65535)
        return qid, data
    except socket.timeout:
        return qid, None
    finally:
        s.close()


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            return None
        buf += d
    return buf


def tcp_query(addr, port, qname, qtype, timeout=1.0):
    qid, q = build_query(qname, qtype)
    s = socket.create_connection((addr, port), timeout=timeout)
    try:
        s.sendall(struct.pack("!H", len(q)) + q)
        hdr = recv_exact(s, 2)
        if hdr is None:
            return qid, None
        ln = struct.unpack("!H", hdr)[0]
        return qid, recv_exact(s, ln)
    except socket.timeout:
        return qid, None
    finally:
        s.close()


def test_good_dns(env):
    a, p = env["PX_DNS_GOOD"], int(env["PX_DNS_PORT"])

    def answers(qname, qtype):
        qid, data = udp_query(a, p, qname, qtype)
        r = parse_response(data)
        return r["rcode"], sorted(v for (_, t, v, _) in r["an"] if t == qtype), r

    cases = [
        ("www.example.test", 1, 0, [env["PX_TLS_GOOD"]]),
        ("www.example.test", 28, 0, ["::1"]),
        ("example.test", 1, 0, [env["PX_TLS_GOOD"]]),
        ("example.test", 28, 0, []),
        ("alias.example.test", 1, 0, [env["PX_TLS_GOOD"]]),
        ("alias2.example.test", 1, 0, [env["PX_TLS_GOOD"]]),
        ("alias2.example.test", 28, 0, ["::1"]),
        ("expired.example.test", 1, 0, [env["PX_TLS_EXPIRED"]]),
        ("wronghost.example.test", 1, 0, [env["PX_TLS_WRONGHOST"]]),
        ("unknownroot.example.test", 1, 0, [env["PX_TLS_UNKNOWNROOT"]]),
        ("tls10.example.test", 1, 0, [env["PX_TLS_TLS10"]]),
        ("noreneg.example.test", 1, 0, [env["PX_TLS_NORENEG"]]),
        ("www.icloud.com", 1, 0, [env["PX_TLS_ICLOUD"]]),
        ("WWW.iCloud.COM", 1, 0, [env["PX_TLS_ICLOUD"]]),
        ("mitm.example.test", 1, 0, [env["PX_TLS_MITM"]]),
        ("stall.example.test", 1, 0, [env["PX_TCP_STALL"]]),
        ("reset.example.test", 1, 0, [env["PX_TCP_RESET"]]),
        ("closed.example.test", 1, 0, [env["PX_TCP_CLOSE"]]),
        ("garbage.example.test", 1, 0, [env["PX_TCP_GARBAGE"]]),
        ("refused.example.test", 1, 0, [env["PX_TCP_REFUSED"]]),
        ("refused.example.test", 28, 0, []),
        ("nonpublic.example.test", 1, 0, ["10.1.2.3", "192.168.7.7"]),
        ("nonpublic.example.test", 28, 0, ["fe80::1"]),
        ("public.example.test", 1, 0, ["203.0.113.7"]),
        ("nosuch.example.test", 1, 3, []),
        ("nosuch.example.test", 28, 3, []),
        # icloud.com has no records of its own but www.icloud.com exists
        # under it (an "empty non-terminal"): NOERROR, no answers.
        ("icloud.com", 1, 0, []),
        ("nosuch.icloud.com", 1, 3, []),
    ]
    for qname, qtype, rcode, want in cases:
        try:
            got_rcode, got, r = answers(qname, qtype)
        except Exception as e:  # noqa: BLE001
            check("dnsmasq %s/%d" % (qname, qtype), False, repr(e))
            continue
        check("dnsmasq %s/%d" % (qname, qtype),
              got_rcode == rcode and got == sorted(want),
              "rcode=%d answers=%s, want rcode=%d %s" % (got_rcode, got, rcode, want))
    # CNAME chain present for alias2
    _, _, r = answers("alias2.example.test", 1)
    cn = [(n, v) for (n, t, v, _) in r["an"] if t == 5]
    check("dnsmasq alias2 CNAME chain",
          cn == [("alias2.example.test", "alias.example.test"),
                 ("alias.example.test", "www.example.test")], str(cn))
    ttl = [t for (_, ty, _, t) in r["an"] if ty == 1]
    check("dnsmasq ttl 300", ttl == [300], str(ttl))
    # TCP works too
    qid, data = tcp_query(a, p, "www.example.test", 1)
    r = parse_response(data)
    check("dnsmasq tcp", r["an"] and r["an"][0][2] == env["PX_TLS_GOOD"], str(r))


def test_bad_dns(env):
    a, p = env["PX_DNS_BAD"], int(env["PX_DNS_PORT"])
    for transport in ("udp", "tcp"):
        query = udp_query if transport == "udp" else tcp_query

        def q(name, qtype=1, timeout=1.0):
            return query(a, p, name, qtype, timeout=timeout)

        t = "bad_dns/%s " % transport
        qid, d = q("servfail.bad.test")
        r = parse_response(d)
        check(t + "servfail", r["id"] == qid and r["rcode"] == 2 and not r["an"]
              and 41 in r["ar_types"], str(r))
        qid, d = q("refused.bad.test", 28)
        r = parse_response(d)
        check(t + "refused", r["id"] == qid and r["rcode"] == 5, str(r))
        qid, d = q("silent.bad.test", timeout=1.0)
        check(t + "silent", d is None, repr(d))
        qid, d = q("Truncated.Bad.Test")
        r = parse_response(d)
        if transport == "udp":
            check(t + "truncated", r["tc"] and r["ancount"] == 0 and r["rcode"] == 0, str(r))
        else:
            want = ["127.80.1.1"] + ["127.80.9.%d" % i for i in range(1, 12)]
            got = [v for (_, ty, v, _) in r["an"] if ty == 1]
            check(t + "truncated A", not r["tc"] and got == want, str(got))
            qid, d = q("truncated.bad.test", 28)
            r = parse_response(d)
            got = [(v, ttl) for (_, ty, v, ttl) in r["an"] if ty == 28]
            check(t + "truncated AAAA", got == [("::1", 60)], str(got))
        qid, d = q("malformed.bad.test")
        ok = False
        if d is not None:
            qid2, flags, _, an = struct.unpack("!HHHH", d[:8])
            try:
                parse_response(d)
            except (ValueError, IndexError, struct.error):
                ok = qid2 == qid and flags & 0x8000 and flags & 0xF == 0 and an == 1
        check(t + "malformed", ok, repr(d))
        qid, d = q("loop.bad.test")
        ok = False
        if d is not None:
            try:
                parse_response(d)
            except (ValueError, RecursionError):
                ok = struct.unpack("!H", d[:2])[0] == qid
        check(t + "loop", ok, repr(d))
        qid, d = q("garbage.bad.test")
        check(t + "garbage", d is not None and len(d) == 40
              and struct.unpack("!H", d[:2])[0] != qid, repr(d))
        qid, d = q("wrongid.bad.test")
        r = parse_response(d)
        check(t + "wrongid", r["id"] == (qid + 1) % 65536 and r["an"]
              and r["an"][0][2] == "127.80.1.1", str(r))
        qid, d = q("ok.bad.test")
        r = parse_response(d)
        check(t + "ok A", r["id"] == qid and r["rcode"] == 0
              and [(v, ttl) for (_, _, v, ttl) in r["an"]] == [("127.80.1.1", 60)], str(r))
        qid, d = q("ok.bad.test", 28)
        r = parse_response(d)
        check(t + "ok AAAA", r["rcode"] == 0 and not r["an"], str(r))
        qid, d = q("other.bad.test")
        r = parse_response(d)
        check(t + "nxdomain", r["rcode"] == 3, str(r))

    # No OPT in the query -> none in the answer.
    qid, d = udp_query(a, p, "ok.bad.test", 1, edns=False)
    r = parse_response(d)
    check("bad_dns no EDNS echo", r["ar_types"] == [], str(r))

    # A silent TCP connection must not block UDP or other TCP clients.
    s = socket.create_connection((a, p), timeout=2)
    qid, qq = build_query("silent.bad.test", 1)
    s.sendall(struct.pack("!H", len(qq)) + qq)
    qid, d = udp_query(a, p, "ok.bad.test", 1)
    check("bad_dns udp while tcp silent", d is not None)
    qid, d = tcp_query(a, p, "ok.bad.test", 1)
    check("bad_dns tcp while tcp silent", d is not None)
    s.settimeout(0.3)
    try:
        got = s.recv(10)
        check("bad_dns silent tcp stays open", False, "got %r" % got)
    except socket.timeout:
        check("bad_dns silent tcp stays open", True)
    s.close()

    # Dead DNS: UDP times out, TCP refused.
    qid, d = udp_query(env["PX_DNS_DEAD"], p, "www.example.test", 1, timeout=0.5)
    check("dns dead udp", d is None)
    try:
        socket.create_connection((env["PX_DNS_DEAD"], p), timeout=1).close()
        check("dns dead tcp refused", False)
    except ConnectionRefusedError:
        check("dns dead tcp refused", True)


# --- TLS -----------------------------------------------------------------

def tls_connect(addr, port, sni, ca, ctx_setup=None, check_hostname=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = check_hostname
    if ctx_setup:
        ctx_setup(ctx)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(3)
    raw.connect((addr, port))
    s = ctx.wrap_socket(raw, server_hostname=sni)
    try:
        info = (s.version(), s.cipher()[0])
        s.sendall(b"GET / HTTP/1.0\r\nHost: " + sni.encode() + b"\r\n\r\n")
        body = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            body += d
        return info, body
    finally:
        s.close()


def tls_error(fn):
    try:
        fn()
        return None
    except ssl.SSLCertVerificationError as e:
        return ("verify", e.verify_code)
    except ssl.SSLError as e:
        return ("ssl", e.reason)
    except OSError as e:
        return ("os", type(e).__name__)


def test_tls(env, state):
    ca = state["PEERS_CA"]
    port = int(env["PX_TLS_PORT"])

    for addr, sni in ((env["PX_TLS_GOOD"], "www.example.test"),
                      (env["PX_TLS_GOOD6"], "www.example.test"),
                      (env["PX_TLS_GOOD"], "alias2.example.test"),
                      (env["PX_TLS_ICLOUD"], "www.icloud.com")):
        try:
            info, body = tls_connect(addr, port, sni, ca)
            check("tls good %s %s" % (addr, sni),
                  info[0] == "TLSv1.3" and body.endswith(b"\r\n\r\nok\n"), str((info, body)))
        except Exception as e:  # noqa: BLE001
            check("tls good %s %s" % (addr, sni), False, repr(e))

    def tls12(ctx):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    info, _ = tls_connect(env["PX_TLS_GOOD"], port, "www.example.test", ca, tls12)
    check("tls good TLS1.2", info[0] == "TLSv1.2", str(info))

    def tls11(ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    err = tls_error(lambda: tls_connect(env["PX_TLS_GOOD"], port, "www.example.test", ca, tls11))
    check("tls good refuses TLS1.1", err is not None and err[0] == "ssl", str(err))

    err = tls_error(lambda: tls_connect(env["PX_TLS_EXPIRED"], port, "expired.example.test", ca))
    check("tls expired -> verify 10", err == ("verify", 10), str(err))
    err = tls_error(lambda: tls_connect(env["PX_TLS_WRONGHOST"], port, "wronghost.example.test", ca))
    check("tls wronghost -> verify 62", err == ("verify", 62), str(err))
    info, _ = tls_connect(env["PX_TLS_WRONGHOST"], port, "other.example.test", ca)
    check("tls wronghost chain ok for other.example.test", info is not None)
    err = tls_error(lambda: tls_connect(env["PX_TLS_UNKNOWNROOT"], port, "unknownroot.example.test", ca))
    check("tls unknownroot -> verify 19", err == ("verify", 19), str(err))
    err = tls_error(lambda: tls_connect(env["PX_TLS_MITM"], port, "www.icloud.com", ca))
    check("tls mitm -> verify 18", err == ("verify", 18), str(err))

    def noverify(ctx):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    info, body = tls_connect(env["PX_TLS_MITM"], port, "www.icloud.com", ca, noverify)
    check("tls mitm TLS1.2 AES256-SHA", info == ("TLSv1.2", "AES256-SHA"), str(info))

    err = tls_error(lambda: tls_connect(env["PX_TLS_TLS10"], port, "tls10.example.test", ca))
    check("tls tls10 refused by default client", err is not None and err[0] == "ssl", str(err))

    def tls10(ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    info, body = tls_connect(env["PX_TLS_TLS10"], port, "tls10.example.test", ca, tls10)
    check("tls tls10 TLSv1 with SECLEVEL=0", info[0] == "TLSv1" and body.endswith(b"ok\n"), str(info))

    if state.get("NORENEG_SKIPPED") == "1":
        RESULTS["skipped"] += 2
    else:
        err = tls_error(lambda: tls_connect(env["PX_TLS_NORENEG"], port, "noreneg.example.test", ca))
        check("tls noreneg refused by default",
              err == ("ssl", "UNSAFE_LEGACY_RENEGOTIATION_DISABLED"), str(err))

        def legacy(ctx):
            ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
        info, body = tls_connect(env["PX_TLS_NORENEG"], port, "noreneg.example.test", ca, legacy)
        check("tls noreneg ok with legacy_server_connect",
              info[0] == "TLSv1.2" and body.startswith(b"HTTP/1.0 200"), str((info, body[:40])))


# --- misbehaving TCP -----------------------------------------------------

HELLO = b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\x01\x00"  # tiny TLS-looking record


def test_tcp(env):
    port = int(env["PX_TLS_PORT"])

    s = socket.create_connection((env["PX_TCP_STALL"], port), timeout=2)
    s.sendall(HELLO)
    s.settimeout(1.0)
    try:
        d = s.recv(100)
        check("tcp stall", False, "got %r" % d)
    except socket.timeout:
        check("tcp stall", True)
    s.close()

    s = socket.create_connection((env["PX_TCP_RESET"], port), timeout=3)
    s.sendall(HELLO)
    try:
        d = s.recv(100)
        check("tcp reset", False, "got %r" % d)
    except ConnectionResetError:
        check("tcp reset", True)
    except OSError as e:
        check("tcp reset", False, repr(e))
    s.close()

    s = socket.create_connection((env["PX_TCP_CLOSE"], port), timeout=3)
    s.sendall(HELLO)
    try:
        d = s.recv(100)
        check("tcp close (FIN, no data)", d == b"", repr(d))
    except OSError as e:
        check("tcp close (FIN, no data)", False, repr(e))
    s.close()

    s = socket.create_connection((env["PX_TCP_GARBAGE"], port), timeout=3)
    s.sendall(HELLO)
    buf = b""
    try:
        while True:
            d = s.recv(100)
            if not d:
                break
            buf += d
        check("tcp garbage", buf == b"HTTP/1.0 400 Bad Request\r\n\r\n", repr(buf))
    except OSError as e:
        check("tcp garbage", False, repr(e))
    s.close()

    try:
        socket.create_connection((env["PX_TCP_REFUSED"], port), timeout=2).close()
        check("tcp refused", False)
    except ConnectionRefusedError:
        check("tcp refused", True)

    # Many concurrent connections: the stall server holds them all, the
    # reset server keeps answering meanwhile.
    socks = []
    try:
        for _ in range(300):
            c = socket.create_connection((env["PX_TCP_STALL"], port), timeout=2)
            c.sendall(HELLO)
            socks.append(c)
        check("tcp stall 300 concurrent", True)
    except OSError as e:
        check("tcp stall 300 concurrent", False, repr(e))
    s = socket.create_connection((env["PX_TCP_RESET"], port), timeout=3)
    s.sendall(HELLO)
    try:
        s.recv(100)
        check("tcp reset while stalled", False)
    except ConnectionResetError:
        check("tcp reset while stalled", True)
    s.close()
    for c in socks:
        c.close()


def main():
    if len(sys.argv) != 2:
        print("usage: selftest.py DIR", file=sys.stderr)
        return 2
    d = os.path.abspath(sys.argv[1])
    env = load_env(os.path.join(HERE, "peers.env"))
    state = load_env(os.path.join(d, "state.env"))
    if state.get("PEERS_READY") != "1":
        print("fixture in %s is not ready" % d, file=sys.stderr)
        return 2
    t0 = time.monotonic()
    for fn in (test_good_dns, test_bad_dns, lambda e: test_tls(e, state), test_tcp):
        try:
            fn(env)
        except Exception as e:  # noqa: BLE001
            check(getattr(fn, "__name__", "test"), False, "crashed: %r" % e)
    extra = ", %d skipped" % RESULTS["skipped"] if RESULTS["skipped"] else ""
    print("peers selftest (%.1fs)" % (time.monotonic() - t0))
    print("%d passed, %d failed%s" % (RESULTS["passed"], RESULTS["failed"], extra))
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
