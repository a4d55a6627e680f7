#!/usr/bin/python3
"""selftest.py [-v] DIR -- check that a running test world (world.sh up DIR)
behaves as tests/world/README.md says, from every vantage.

For the core and every country it re-runs itself inside that namespace
(`ip netns exec pxw-xx selftest.py --inner CC DIR`); there it asks the
country's resolver (a small stdlib DNS client, UDP and TCP) and connects to
every service with `openssl s_client -CAfile DIR/pki/ca.pem`. Stdlib and the
openssl CLI only.

Prints one line per failed check (-v or WORLD_SELFTEST_VERBOSE=1: every
check with what was observed) and "N passed, M failed"; exits 1 if anything
failed, 77 when not root.
"""

import concurrent.futures
import errno
import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
A, AAAA = 1, 28


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


class Results:
    def __init__(self, prefix):
        self.prefix = prefix
        self.items = []

    def check(self, name, ok, detail=""):
        self.items.append({"name": "%s %s" % (self.prefix, name),
                           "ok": bool(ok), "detail": detail})


# --- DNS -----------------------------------------------------------------

def build_query(qname, qtype):
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in qname.strip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack("!HH", qtype, 1)
    return qid, q


def skip_name(msg, off):
    while True:
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            return off + 2
        off += 1
        if ln == 0:
            return off
        off += ln


def parse_response(msg, qid):
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid:
        raise ValueError("wrong id")
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    answers = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == A:
            answers.append(("A", socket.inet_ntop(socket.AF_INET, rdata), ttl))
        elif rtype == AAAA:
            answers.append(("AAAA", socket.inet_ntop(socket.AF_INET6, rdata), ttl))
        else:
            answers.append((str(rtype), rdata.hex(), ttl))
    return {"rcode": flags & 0xF, "tc": bool(flags & 0x0200), "answers": answers}


def dns_query(server, qname, qtype, tcp=False, timeout=2.0):
    qid, q = build_query(qname, qtype)
    if tcp:
        s = socket.create_connection((server, 53), timeout=timeout)
        try:
            s.sendall(struct.pack("!H", len(q)) + q)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    raise ValueError("short TCP answer")
                buf += chunk
            return parse_response(buf[2:], qid)
        finally:
            s.close()
    s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(4096)
        return parse_response(data, qid)
    finally:
        s.close()


RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def check_dns(r, server, label, qname, qtype, want, want_rcode=0, tcp=False):
    tname = "AAAA" if qtype == AAAA else "A"
    name = "dns %s %s %s%s" % (label, qname, tname, " (tcp)" if tcp else "")
    try:
        resp = dns_query(server, qname, qtype, tcp=tcp)
    except (OSError, ValueError) as e:
        r.check(name, False, "no answer from %s: %s" % (server, e))
        return
    got = sorted(a[1] for a in resp["answers"])
    ttls = sorted(set(a[2] for a in resp["answers"]))
    seen = "%s %s ttl %s" % (RCODES.get(resp["rcode"], resp["rcode"]),
                             got or "[]", ttls or "-")
    ok = resp["rcode"] == want_rcode and got == sorted(want)
    if ok and got:
        ok = ttls == [300]
    r.check(name, ok, "want %s %s ttl 300, got %s"
            % (RCODES.get(want_rcode), sorted(want), seen) if not ok else seen)


# --- TLS -----------------------------------------------------------------

def s_client(ca, addr, name, timeout=10):
    hostport = "[%s]:443" % addr if ":" in addr else "%s:443" % addr
    req = "GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % name
    cmd = ["openssl", "s_client", "-connect", hostport, "-servername", name,
           "-verify_hostname", name, "-CAfile", ca, "-showcerts", "-ign_eof"]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, input=req.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        out = p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") + "\n[timeout]"
    res = {"elapsed": time.monotonic() - t0, "raw": out}
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    res["chain_len"] = len(pems)
    res["sha256"] = (hashlib.sha256(ssl.PEM_cert_to_DER_cert(pems[0])).hexdigest()
                     if pems else None)
    m = re.search(r"^\s*0 s:(.*)$", out, re.M)
    res["subject"] = m.group(1).strip() if m else None
    m = re.search(r"^\s*0 s:.*\n\s*i:(.*)$", out, re.M)
    res["issuer"] = m.group(1).strip() if m else None
    res["errors"] = sorted(set(int(x) for x in re.findall(r"verify error:num=(\d+)", out)))
    m = re.search(r"Verify return code: (\d+)", out)
    res["verify"] = int(m.group(1)) if m else None
    m = re.search(r"^\s*Protocol\s*:\s*(\S+)", out, re.M)
    res["protocol"] = m.group(1) if m else None
    m = re.search(r"^\s*Cipher\s*:\s*(\S+)", out, re.M)
    res["cipher"] = m.group(1) if m else None
    res["errno"] = [(a, int(b)) for a, b in re.findall(r"(connect|write|read):errno=(\d+)", out)]
    m = re.search(r"HTTP/1\.1 (\d+)[^\n]*\n(?:[^\n]*\S[^\n]*\n)*?\r?\n(.*?)(?:\n|$)", out, re.S)
    res["http"] = (int(m.group(1)), m.group(2).strip()) if m else None
    return res


def summary(t):
    if t["chain_len"] == 0:
        return "no certificate, errno %s (%.3fs)" % (t["errno"], t["elapsed"])
    return "%s %s | %s | leaf %s… chain %d | verify %s errors %s | http %s" % (
        t["protocol"], t["cipher"], t["subject"], (t["sha256"] or "")[:16],
        t["chain_len"], t["verify"], t["errors"], t["http"])


def raw_tcp(addr, port, payload, timeout=3.0):
    """connect, send payload, read: returns (stage, outcome) with outcome
    'refused', 'reset', 'data', 'eof', 'timeout' or the errno name."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        try:
            s.connect((addr, port))
        except ConnectionRefusedError:
            return "connect", "refused", time.monotonic() - t0
        except socket.timeout:
            return "connect", "timeout", time.monotonic() - t0
        except OSError as e:
            return "connect", errno.errorcode.get(e.errno, str(e)), time.monotonic() - t0
        try:
            s.sendall(payload)
            data = s.recv(4096)
            return "read", ("data" if data else "eof"), time.monotonic() - t0
        except ConnectionResetError:
            return "read", "reset", time.monotonic() - t0
        except socket.timeout:
            return "read", "timeout", time.monotonic() - t0
        except OSError as e:
            return "read", errno.errorcode.get(e.errno, str(e)), time.monotonic() - t0
    finally:
        s.close()


# Looks like the start of a ClientHello (record type 0x16, handshake type 1);
# the RU rule only looks at the first payload byte.
FAKE_HELLO = bytes.fromhex("160301002f0100002b0303") + b"\x00" * 32 + bytes.fromhex("000002002f0100")


def inner_vantage(cc, d, env, state):
    r = Results(cc)
    ca = os.path.join(d, "pki", "ca.pem")
    resolver = env["RESOLVER_" + cc]
    region_b = cc in env["WORLD_CDN_REGION_B"].split()
    redirect = cc in env["WORLD_DNS_REDIRECT"].split()
    intercept = cc in env["WORLD_TLS_INTERCEPT"].split()
    reset = cc in env["WORLD_TLS_RESET"].split()

    # --- our own addresses
    i = env["WORLD_VANTAGES"].split().index(cc) + 1
    s = socket.socket()
    try:
        s.bind((env["VANTAGE_ADDR_" + cc], 0))
        s6 = socket.socket(socket.AF_INET6)
        s6.bind((env["VANTAGE_ADDR6_" + cc], 0))
        s6.close()
        r.check("addresses", True, "%s %s (link %d)" % (env["VANTAGE_ADDR_" + cc],
                                                        env["VANTAGE_ADDR6_" + cc], i))
    except OSError as e:
        r.check("addresses", False, str(e))
    finally:
        s.close()
    if state.get("WORLD_RESOLV_CONF") == "1":
        try:
            rc = open("/etc/resolv.conf").read()
        except OSError as e:
            rc = str(e)
        r.check("resolv.conf", ("nameserver %s" % resolver) in rc, rc.strip().replace("\n", "; "))

    # --- DNS through the country's resolver
    R = "resolver"
    check_dns(r, resolver, R, env["DOMAIN_ICLOUD"], A, [env["ICLOUD_V4"]])
    check_dns(r, resolver, R, env["DOMAIN_ICLOUD"], AAAA, [env["ICLOUD_V6"]])
    check_dns(r, resolver, R, "icloud.com", A, [env["ICLOUD_V4"]])
    check_dns(r, resolver, R, "setup.icloud.com", A, [env["ICLOUD_V4"]])
    check_dns(r, resolver, R, env["DOMAIN_APPLEID"], A, [env["APPLEID"]])
    check_dns(r, resolver, R, env["DOMAIN_CDN"], A, [env["CDN_B" if region_b else "CDN_A"]])
    check_dns(r, resolver, R, env["DOMAIN_CDN"], AAAA, [])
    check_dns(r, resolver, R, env["DOMAIN_NEWS"], A, [env["BLOCKPAGE" if redirect else "NEWS"]])
    check_dns(r, resolver, R, env["DOMAIN_SOCIAL"], A, [env["SOCIAL"]])
    check_dns(r, resolver, R, env["DOMAIN_DOWN"], A, [env["DOWN"]])
    check_dns(r, resolver, R, "nosuchname.icloud.com", A, [], want_rcode=3)
    check_dns(r, resolver, R, "nosuchname.example.org", A, [], want_rcode=3)
    check_dns(r, resolver, R, env["DOMAIN_ICLOUD"], A, [env["ICLOUD_V4"]], tcp=True)
    # The authoritative server is reachable too and has no overrides.
    check_dns(r, env["AUTH_DNS"], "auth", env["DOMAIN_CDN"], A, [env["CDN_A"]])
    check_dns(r, env["AUTH_DNS"], "auth", env["DOMAIN_NEWS"], A, [env["NEWS"]])

    # --- TLS
    jobs = {
        "icloud4": (env["ICLOUD_V4"], env["DOMAIN_ICLOUD"]),
        "icloud6": (env["ICLOUD_V6"], env["DOMAIN_ICLOUD"]),
        "setup4": (env["ICLOUD_V4"], "setup.icloud.com"),
        "mitm": (env["MITM"], env["DOMAIN_ICLOUD"]),
        "appleid": (env["APPLEID"], env["DOMAIN_APPLEID"]),
        "cdn_a": (env["CDN_A"], env["DOMAIN_CDN"]),
        "cdn_b": (env["CDN_B"], env["DOMAIN_CDN"]),
        "news": (env["NEWS"], env["DOMAIN_NEWS"]),
        "blockpage": (env["BLOCKPAGE"], env["DOMAIN_NEWS"]),
        "social": (env["SOCIAL"], env["DOMAIN_SOCIAL"]),
        "down": (env["DOWN"], env["DOMAIN_DOWN"]),
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        futs = {k: ex.submit(s_client, ca, a, n) for k, (a, n) in jobs.items()}
        t = {k: f.result() for k, f in futs.items()}

    def tname(k):
        return "tls %s %s" % (jobs[k][0], jobs[k][1])

    def valid(k, sha_key, subject_part=None):
        x = t[k]
        ok = (x["verify"] == 0 and not x["errors"] and x["chain_len"] == 2
              and x["sha256"] == state[sha_key] and x["http"] == (200, "ok"))
        if subject_part:
            ok = ok and subject_part in (x["subject"] or "")
        r.check(tname(k) + ": valid chain", ok, summary(x))

    def mitm(k, want_errors=(18,)):
        x = t[k]
        ok = (x["chain_len"] == 1 and x["sha256"] == state["SHA256_MITM"]
              and x["subject"] == "C = cn, O = www.icloud.com, CN = www.icloud.com"
              and x["subject"] == x["issuer"]
              and all(e in x["errors"] for e in want_errors)
              and x["protocol"] == "TLSv1.2" and x["cipher"] == "AES256-SHA"
              and x["http"] == (200, "ok"))
        r.check(tname(k) + ": self-signed MITM (verify error 18)", ok, summary(x))

    if intercept:
        mitm("icloud4")
        mitm("setup4", want_errors=(18, 62))
    else:
        valid("icloud4", "SHA256_ICLOUD", "CN = www.icloud.com")
        valid("setup4", "SHA256_ICLOUD")
    valid("icloud6", "SHA256_ICLOUD")
    mitm("mitm")
    valid("appleid", "SHA256_APPLEID")
    valid("cdn_a", "SHA256_CDN_A", "O = CDN region A")
    valid("cdn_b", "SHA256_CDN_B", "O = CDN region B")
    r.check("tls cdn regions differ", t["cdn_a"]["sha256"] and t["cdn_b"]["sha256"]
            and t["cdn_a"]["sha256"] != t["cdn_b"]["sha256"],
            "%s… vs %s…" % ((t["cdn_a"]["sha256"] or "")[:16], (t["cdn_b"]["sha256"] or "")[:16]))
    valid("news", "SHA256_NEWS")
    x = t["blockpage"]
    r.check(tname("blockpage") + ": block page, does not verify",
            x["chain_len"] == 1 and x["sha256"] == state["SHA256_BLOCKPAGE"]
            and x["subject"] == "CN = blocked.invalid" and 18 in x["errors"]
            and 62 in x["errors"] and x["http"] == (200, "blocked"), summary(x))

    x = t["social"]
    if reset:
        r.check(tname("social") + ": reset during handshake",
                x["chain_len"] == 0 and any(e == 104 for _, e in x["errno"]), summary(x))
        stage, outcome, el = raw_tcp(env["SOCIAL"], 443, FAKE_HELLO)
        r.check("tcp %s:443 ClientHello: connect ok, then reset" % env["SOCIAL"],
                (stage, outcome) == ("read", "reset") and el < 1.0,
                "%s %s after %.4fs" % (stage, outcome, el))
    else:
        valid("social", "SHA256_SOCIAL")
    # Non-TLS data to SOCIAL:443 is never reset (the RU rule looks for TLS).
    stage, outcome, el = raw_tcp(env["SOCIAL"], 443, b"GET / HTTP/1.0\r\n\r\n")
    r.check("tcp %s:443 plain HTTP: answered" % env["SOCIAL"],
            (stage, outcome) == ("read", "data"), "%s %s after %.4fs" % (stage, outcome, el))

    x = t["down"]
    r.check(tname("down") + ": connection refused",
            x["chain_len"] == 0 and ("connect", 111) in x["errno"], summary(x))
    stage, outcome, el = raw_tcp(env["DOWN"], 443, b"")
    r.check("tcp %s:443: refused" % env["DOWN"], (stage, outcome) == ("connect", "refused"),
            "%s %s after %.4fs" % (stage, outcome, el))
    return r


def inner_core(d, env, state):
    r = Results("core")
    auth = env["AUTH_DNS"]
    check_dns(r, auth, "auth", env["DOMAIN_ICLOUD"], A, [env["ICLOUD_V4"]])
    check_dns(r, auth, "auth", env["DOMAIN_ICLOUD"], AAAA, [env["ICLOUD_V6"]])
    check_dns(r, auth, "auth", env["DOMAIN_CDN"], A, [env["CDN_A"]])
    check_dns(r, auth, "auth", "nosuchname.example.net", A, [], want_rcode=3)
    check_dns(r, auth, "auth", "www.example.invalid", A, [], want_rcode=5)
    # The collector's address exists here and its port is free.
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((env["COLLECTOR_ADDR"], int(env["COLLECTOR_PORT"])))
        r.check("collector address %s:%s bindable" % (env["COLLECTOR_ADDR"], env["COLLECTOR_PORT"]), True)
    except OSError as e:
        r.check("collector address %s:%s bindable" % (env["COLLECTOR_ADDR"], env["COLLECTOR_PORT"]),
                False, str(e))
    finally:
        s.close()
    stage, outcome, el = raw_tcp(env["DOWN"], 443, b"")
    r.check("tcp %s:443: refused" % env["DOWN"], (stage, outcome) == ("connect", "refused"),
            "%s %s" % (stage, outcome))
    return r


def host_checks(env):
    """The host's own namespace must carry nothing of the world."""
    r = Results("host")
    out = subprocess.run(["ip", "-o", "addr"], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    bad = [ln.split()[3] for ln in out.splitlines()
           if re.search(r"inet6? (198\.51\.100\.|203\.0\.113\.|2001:db8:(51|113):)", ln)]
    r.check("no world addresses in the host namespace", not bad, " ".join(bad))
    out = subprocess.run(["ip", "-o", "link"], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    bad = [ln.split(":")[1].strip() for ln in out.splitlines()
           if re.match(r"\d+: to-[a-z]+[@:]", ln)]
    r.check("no world links in the host namespace", not bad, " ".join(bad))
    return r


def main():
    args = sys.argv[1:]
    verbose = os.environ.get("WORLD_SELFTEST_VERBOSE") == "1"
    if args and args[0] == "-v":
        verbose = True
        args = args[1:]
    inner = None
    if len(args) == 3 and args[0] == "--inner":
        inner, args = args[1], args[2:]
    if len(args) != 1:
        print("usage: selftest.py [-v] DIR", file=sys.stderr)
        return 2
    d = os.path.abspath(args[0])
    env = load_env(os.path.join(HERE, "world.env"))
    try:
        state = load_env(os.path.join(d, "state.env"))
    except OSError as e:
        print("selftest: %s (is the world up?)" % e, file=sys.stderr)
        return 1

    if inner is not None:
        r = inner_core(d, env, state) if inner == "core" else inner_vantage(inner, d, env, state)
        for it in r.items:
            print(json.dumps(it))
        return 0

    if os.geteuid() != 0:
        print("selftest: needs root (ip netns exec); skipped", file=sys.stderr)
        return 77
    if state.get("WORLD_READY") != "1":
        print("selftest: %s/state.env says the world is not ready" % d, file=sys.stderr)
        return 1

    t0 = time.monotonic()
    items = host_checks(env).items
    procs = []
    for who in ["core"] + env["WORLD_VANTAGES"].split():
        ns = env["WORLD_CORE"] if who == "core" else "%s-%s" % (env["WORLD_PREFIX"], who.lower())
        cmd = ["ip", "netns", "exec", ns, PY, os.path.abspath(__file__), "--inner", who, d]
        procs.append((who, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for who, p in procs:
        try:
            out, errout = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, errout = p.communicate()
        got = 0
        for line in out.decode().splitlines():
            try:
                items.append(json.loads(line))
                got += 1
            except ValueError:
                items.append({"name": "%s output" % who, "ok": False, "detail": line})
        if p.returncode != 0 or got == 0:
            items.append({"name": "%s selftest ran" % who, "ok": False,
                          "detail": "exit %s: %s" % (p.returncode, errout.decode()[-2000:])})
    passed = sum(1 for it in items if it["ok"])
    failed = len(items) - passed
    for it in items:
        if not it["ok"]:
            print("FAIL %s: %s" % (it["name"], it["detail"]))
        elif verbose:
            print("ok   %s: %s" % (it["name"], it["detail"]))
    print("%d passed, %d failed (%.1fs)" % (passed, failed, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
