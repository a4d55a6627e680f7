#!/usr/bin/python3
"""selftest.py [-v] DIR -- check that a running test world (world.sh up DIR)
behaves as tests/world/README.md says, from every vantage.

For the core and every country it re-runs itself inside that namespace
(`ip netns exec pxw-xx selftest.py --inner CC DIR`); there it asks the
country's resolver (a small stdlib DNS client, UDP and TCP) and connects to
every service with `openssl s_client -CAfile DIR/pki/ca.pem`. Stdlib and the
openssl CLI only.

Then, from the outside, it switches the world and looks again: `world.sh
rotate` (rotate.example.com serves the other leaf, then the first again) and
`world.sh censor CC off|on` for every censor (the interception, reset or
drop goes away and comes back); it leaves the world as it found it.

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
    res["pems"] = pems
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


def completes_with(ca, untrusted, pem):
    """Does this lone leaf verify once its intermediate is supplied (what a
    verifier with a pool of intermediates does)?"""
    p = subprocess.run(["openssl", "verify", "-CAfile", ca, "-untrusted", untrusted],
                       input=pem.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode("utf-8", "replace").strip().replace("\n", "; ")


def dns_replies(server, qname, qtype, window=0.5):
    """Every UDP reply to one query that arrives within window seconds:
    [(seconds after the query, id, answers)]; the query's id first."""
    qid, q = build_query(qname, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = []
    try:
        s.connect((server, 53))
        t0 = time.monotonic()
        s.send(q)
        while True:
            left = t0 + window - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data = s.recv(4096)
            except socket.timeout:
                break
            rid = struct.unpack("!H", data[:2])[0]
            try:
                answers = sorted(a[1] for a in parse_response(data, rid)["answers"])
            except (ValueError, struct.error, IndexError):
                answers = ["unparsable"]
            out.append((time.monotonic() - t0, rid, answers))
    finally:
        s.close()
    return qid, out


def probe_leaf(addr, sni, timeout):
    """One handshake, nothing verified: ("ok", leaf sha256) or (what went
    wrong: "reset", "timeout", "refused", ..., None)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with socket.create_connection((addr, 443), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as t:
                return "ok", hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()
    except ConnectionResetError:
        return "reset", None
    except ConnectionRefusedError:
        return "refused", None
    except socket.timeout:
        return "timeout", None
    except (OSError, ssl.SSLError) as e:
        return str(e), None


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
    # A censor switched off (world.sh censor) does nothing on the path.
    on = censor_on(d, cc)
    intercept = on and cc in env["WORLD_TLS_INTERCEPT"].split()
    reset = on and cc in env["WORLD_TLS_RESET"].split()
    rogue = on and cc in env["WORLD_TLS_ROGUE_CA"].split()
    state_root = on and cc in env["WORLD_TLS_STATE_ROOT"].split()
    drop = on and cc in env["WORLD_TLS_DROP"].split()
    geo_node = cc in env["WORLD_GEO_NODE"].split()
    inject = cc in env["WORLD_DNS_INJECT"].split()

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
    check_dns(r, resolver, R, env["DOMAIN_WHOAMI"], A, [env["VANTAGE_ADDR_" + cc]])
    check_dns(r, resolver, R, env["DOMAIN_MAIL"], A, [env["MAIL"]])
    check_dns(r, resolver, R, env["DOMAIN_BANK"], A, [env["BANK"]])
    check_dns(r, resolver, R, env["DOMAIN_SHOP"], A, [env["SHOP_NODE" if geo_node else "SHOP"]])
    check_dns(r, resolver, R, env["DOMAIN_ROTATE"], A, [env["ROTATE"]])
    check_dns(r, resolver, R, env["DOMAIN_EXPIRED"], A, [env["EXPIRED"]])
    check_dns(r, resolver, R, env["DOMAIN_VIDEO"], A, [env["VIDEO"]])
    # The first answer is the forged one where the injector sits; over TCP
    # nothing is forged.
    check_dns(r, resolver, R, env["DOMAIN_FORUM"], A, [env["BLOCKPAGE" if inject else "FORUM"]])
    check_dns(r, resolver, R, env["DOMAIN_FORUM"], A, [env["FORUM"]], tcp=True)
    check_dns(r, resolver, R, env["DOMAIN_FORUM"], AAAA, [])
    check_dns(r, env["AUTH_DNS"], "auth", env["DOMAIN_SHOP"], A, [env["SHOP"]])
    check_dns(r, env["AUTH_DNS"], "auth", env["DOMAIN_FORUM"], A, [env["FORUM"]])
    qid, got = dns_replies(resolver, env["DOMAIN_FORUM"], A, window=0.4)
    seen = ["%.0fms id %s %s" % (t * 1000, "ok" if i == qid else i, a) for t, i, a in got]
    if inject:
        delay = float(env["WORLD_DNS_INJECT_DELAY_MS"]) / 1000
        ok = (len(got) == 2 and all(i == qid for _, i, _ in got)
              and got[0][2] == [env["BLOCKPAGE"]] and got[1][2] == [env["FORUM"]]
              and delay * 0.8 <= got[1][0] - got[0][0] <= delay + 0.4)
        r.check("dns resolver %s A: forged answer first, genuine one later, same id"
                % env["DOMAIN_FORUM"], ok, "; ".join(seen))
    else:
        r.check("dns resolver %s A: exactly one answer" % env["DOMAIN_FORUM"],
                len(got) == 1 and got[0][1] == qid and got[0][2] == [env["FORUM"]], "; ".join(seen))
    # Only the forged name is raced; AAAA and other names get one answer.
    for qname, qtype, want in ((env["DOMAIN_FORUM"], AAAA, []),
                               (env["DOMAIN_NEWS"], A, [env["BLOCKPAGE" if redirect else "NEWS"]])):
        qid, got = dns_replies(resolver, qname, qtype, window=0.2)
        r.check("dns resolver %s %s: exactly one answer" % (qname, "AAAA" if qtype == AAAA else "A"),
                len(got) == 1 and got[0][1] == qid and got[0][2] == want,
                "; ".join("%.0fms %s" % (t * 1000, a) for t, _, a in got))
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
        "mail": (env["MAIL"], env["DOMAIN_MAIL"]),
        "rogue_mail": (env["ROGUE_MAIL"], env["DOMAIN_MAIL"]),
        "bank": (env["BANK"], env["DOMAIN_BANK"]),
        "state_mitm": (env["STATE_MITM"], env["DOMAIN_BANK"]),
        "shop": (env["SHOP"], env["DOMAIN_SHOP"]),
        "shop_node": (env["SHOP_NODE"], env["DOMAIN_SHOP"]),
        "rotate": (env["ROTATE"], env["DOMAIN_ROTATE"]),
        "expired": (env["EXPIRED"], env["DOMAIN_EXPIRED"]),
        "forum": (env["FORUM"], env["DOMAIN_FORUM"]),
    }
    # The black-holed handshake would only wait for s_client's timeout: it
    # is looked at with a raw socket below.
    if not drop:
        jobs["video"] = (env["VIDEO"], env["DOMAIN_VIDEO"])
    trust = state.get("WORLD_CA_" + cc, ca)
    if trust != ca:
        # The country's own trust store (KZ: the state root as well).
        jobs["bank_own_trust"] = (env["BANK"], env["DOMAIN_BANK"], trust)
        jobs["mail_own_trust"] = (env["MAIL"], env["DOMAIN_MAIL"], trust)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        futs = {k: ex.submit(s_client, j[2] if len(j) > 2 else ca, j[0], j[1])
                for k, j in jobs.items()}
        t = {k: f.result() for k, f in futs.items()}

    def tname(k):
        return "tls %s %s" % (jobs[k][0], jobs[k][1])

    def valid(k, sha_key, subject_part=None, issuer="Parallax World Intermediate CA", what="valid chain"):
        x = t[k]
        ok = (x["verify"] == 0 and not x["errors"] and x["chain_len"] == 2
              and x["sha256"] == state[sha_key] and x["http"] == (200, "ok"))
        if subject_part:
            ok = ok and subject_part in (x["subject"] or "")
        if issuer:
            ok = ok and (x["issuer"] or "").endswith("CN = " + issuer)
        r.check(tname(k) + ": " + what, ok, summary(x) + " | issuer " + str(x["issuer"]))

    def state_chain(k, verifies):
        # Leaf + the state root, which only a trust store with that root accepts.
        x = t[k]
        ok = (x["chain_len"] == 2 and x["sha256"] == state["SHA256_STATE_BANK"]
              and (x["issuer"] or "").endswith("CN = Parallax World State Root")
              and x["http"] == (200, "ok"))
        ok = ok and ((x["verify"] == 0 and not x["errors"]) if verifies else 19 in x["errors"])
        r.check(tname(k) + (": state-root chain, verifies with %s" % os.path.basename(jobs[k][2])
                            if verifies else ": state-root chain, does not verify (error 19)"),
                ok, summary(x) + " | issuer " + str(x["issuer"]))

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
    valid("cdn_b", "SHA256_CDN_B", "O = CDN region B", issuer="Parallax World CDN Intermediate CA")
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

    # mail.example.net: EG's path leads to the rogue intermediate's chain,
    # which verifies like the real one.
    rogue_issuer = "Parallax World Rogue Intermediate CA"
    if rogue:
        valid("mail", "SHA256_ROGUE_MAIL", issuer=rogue_issuer, what="rogue intermediate's chain, verifies")
    else:
        valid("mail", "SHA256_MAIL")
    valid("rogue_mail", "SHA256_ROGUE_MAIL", issuer=rogue_issuer, what="rogue intermediate's chain, verifies")
    # bank.example.net: KZ's path leads to the state root's chain.
    if state_root:
        state_chain("bank", verifies=False)
    else:
        valid("bank", "SHA256_BANK")
    state_chain("state_mitm", verifies=False)
    if "bank_own_trust" in t:
        if state_root:
            state_chain("bank_own_trust", verifies=True)
        else:
            valid("bank_own_trust", "SHA256_BANK")
        valid("mail_own_trust", "SHA256_ROGUE_MAIL" if rogue else "SHA256_MAIL",
              issuer=rogue_issuer if rogue else "Parallax World Intermediate CA")
    # shop.example.com: the geo node serves the same leaf without its
    # intermediate; with the intermediate supplied it verifies.
    valid("shop", "SHA256_SHOP")
    x = t["shop_node"]
    done, why = completes_with(ca, os.path.join(d, "pki", "inter.pem"), x["pems"][0]) if x["pems"] else (False, "-")
    r.check(tname("shop_node") + ": the same leaf alone, verifies once completed",
            x["chain_len"] == 1 and x["sha256"] == state["SHA256_SHOP"] and 20 in x["errors"]
            and x["http"] == (200, "ok") and done, summary(x) + " | with inter.pem: " + why)
    try:
        current = open(os.path.join(d, "run", "rotate.current")).read().strip()
    except OSError as e:
        current = str(e)
    valid("rotate", "SHA256_ROTATE_" + current.upper() if current in ("a", "b") else "SHA256_ROTATE_A")
    x = t["expired"]
    r.check(tname("expired") + ": expired (verify error 10)",
            x["chain_len"] == 2 and x["sha256"] == state["SHA256_EXPIRED"] and x["errors"] == [10]
            and x["http"] == (200, "ok"), summary(x))
    valid("forum", "SHA256_FORUM")
    if drop:
        stage, outcome, el = raw_tcp(env["VIDEO"], 443, FAKE_HELLO, timeout=1.5)
        r.check("tcp %s:443 ClientHello: connect ok, then silence" % env["VIDEO"],
                (stage, outcome) == ("read", "timeout"), "%s %s after %.4fs" % (stage, outcome, el))
    else:
        valid("video", "SHA256_VIDEO")
    stage, outcome, el = raw_tcp(env["VIDEO"], 443, b"GET / HTTP/1.0\r\n\r\n")
    r.check("tcp %s:443 plain HTTP: answered" % env["VIDEO"],
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


def censor_on(d, cc):
    try:
        return open(os.path.join(d, "run", "censor-" + cc.lower())).read().strip() != "off"
    except OSError:
        return True


def ns_of(env, cc):
    return "%s-%s" % (env["WORLD_PREFIX"], cc.lower())


def probe_from(env, cc, addr, sni, timeout=2.0):
    """probe_leaf from inside country cc's namespace."""
    p = subprocess.run(["ip", "netns", "exec", ns_of(env, cc), PY, os.path.abspath(__file__),
                        "--probe", addr, sni, str(timeout)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
    try:
        return tuple(json.loads(p.stdout))
    except ValueError:
        return "probe failed: " + p.stdout.strip()[-300:], None


def world_sh(*args):
    p = subprocess.run([os.path.join(HERE, "world.sh")] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    return p.returncode, p.stdout.strip()


def switch_checks(d, env, state):
    """world.sh rotate and world.sh censor, seen from the vantages; every
    switch is undone."""
    r = Results("switch")
    vantages = env["WORLD_VANTAGES"].split()
    try:
        first = open(os.path.join(d, "run", "rotate.current")).read().strip()
    except OSError:
        first = "a"
    other = "b" if first == "a" else "a"
    for want, args in ((other, ()), (first, (first,))):
        rc, out = world_sh("rotate", d, *args)
        got = probe_from(env, vantages[-1], env["ROTATE"], env["DOMAIN_ROTATE"])
        r.check("rotate %s -> leaf %s, seen from %s" % (" ".join(args) or "(toggle)", want, vantages[-1]),
                rc == 0 and got == ("ok", state["SHA256_ROTATE_" + want.upper()]), "%s; %s" % (out, got))

    # What each kind of rule does to its target while on, and without it.
    rules = [("WORLD_TLS_INTERCEPT", "ICLOUD_V4", "DOMAIN_ICLOUD", ("ok", "SHA256_MITM"), "SHA256_ICLOUD"),
             ("WORLD_TLS_ROGUE_CA", "MAIL", "DOMAIN_MAIL", ("ok", "SHA256_ROGUE_MAIL"), "SHA256_MAIL"),
             ("WORLD_TLS_STATE_ROOT", "BANK", "DOMAIN_BANK", ("ok", "SHA256_STATE_BANK"), "SHA256_BANK"),
             ("WORLD_TLS_RESET", "SOCIAL", "DOMAIN_SOCIAL", ("reset", None), "SHA256_SOCIAL"),
             ("WORLD_TLS_DROP", "VIDEO", "DOMAIN_VIDEO", ("timeout", None), "SHA256_VIDEO")]

    def expect(on_want):
        kind, key = on_want
        return (kind, state[key] if key else None)

    for cc in env["WORLD_CENSORS"].split():
        mine = [x for x in rules if cc in env[x[0]].split()]
        r.check("censor %s has rules" % cc, bool(mine), "")
        was_on = censor_on(d, cc)
        for how in (("off", "on") if was_on else ("on", "off")):
            rc, out = world_sh("censor", d, cc, how)
            for _, addr, sni, on_want, off_key in mine:
                got = probe_from(env, cc, env[addr], env[sni], timeout=1.0)
                want = expect(on_want) if how == "on" else ("ok", state[off_key])
                r.check("censor %s %s: %s:443 %s" % (cc, how, env[addr], "as censored" if how == "on" else "genuine"),
                        rc == 0 and got == want, "%s; got %s" % (out, got))
    rc, out = world_sh("censor", d, "DE", "off")
    r.check("censor DE (no rules) refused", rc != 0 and "no rules" in out, out)
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
    if len(args) == 4 and args[0] == "--probe":
        print(json.dumps(probe_leaf(args[1], args[2], float(args[3]))))
        return 0
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
    items += switch_checks(d, env, state).items
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
