#!/usr/bin/python3
"""Builds a SQLite collector database full of really signed measurements,
fast: the real parallax-collector creates the schema (started once on the
file and stopped), then the rows go in straight through sqlite3, each
measurement of realistic shape (two DNS queries with answers, a TCP
connect, a TLS handshake with a two-certificate chain, ~3.5 KB) signed in
OpenSSH's SSHSIG format with Ed25519 keys made here.

The world it describes: one agent key per vantage (country + network),
DOMAINS sites whose real chain comes from the CA in DIR/ca.pem (give the
collectors --ca-file DIR/ca.pem), one vantage (CN) shown a self-signed
interceptor's certificate for every fifth site, measurements spread evenly
over the last DAYS days (so the newest day feeds check-in's control
addresses), and one key rotated away ROTATED_DAYS ago: the CN agent's
first key signed everything before that, its new key everything after.
A few rows are flagged geo_mismatch. With --tampered, four more rows the
migration must refuse: two whose signature does not verify, one whose
recorded content hash is not its content's, one recorded under another
key than the one that signed it.

usage: gen_store.py --collector BIN --db PATH [--count N] [--tampered]
                    [--seed S]
As a module: generate(collector_bin, path, count, tampered) returns what
it made (keys, the tampered uids, domains, the time span)."""
import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

NS = b"parallax-measurement-v1"
DAYS = 100
ROTATED_DAYS = 30
DOMAINS = 40
# One agent (key) per vantage; the CN agent rotates its key.
VANTAGES = [("DE", "AS3320"), ("US", "AS7922"), ("CN", "AS4134"), ("FR", "AS3215"),
            ("RU", "AS12389"), ("BR", "AS28573")]
ROTATING = 2


def _s(b):
    return len(b).to_bytes(4, "big") + b


class Key:
    def __init__(self, rnd):
        self.priv = Ed25519PrivateKey.from_private_bytes(rnd.randbytes(32))
        raw = self.priv.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
        self.blob = _s(b"ssh-ed25519") + _s(raw)
        self.line = "ssh-ed25519 " + base64.b64encode(self.blob).decode()
        self.key_id = "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        self._head = b"SSHSIG" + (1).to_bytes(4, "big") + _s(self.blob) + _s(NS) + _s(b"") + _s(b"sha512")
        self._signed_head = b"SSHSIG" + _s(NS) + _s(b"") + _s(b"sha512")

    def sign(self, message):
        """The armored SSHSIG of message, as ssh-keygen -Y sign writes it."""
        signed = self._signed_head + _s(hashlib.sha512(message).digest())
        blob = self._head + _s(_s(b"ssh-ed25519") + _s(self.priv.sign(signed)))
        b64 = base64.b64encode(blob).decode()
        return ("-----BEGIN SSH SIGNATURE-----\n"
                + "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
                + "\n-----END SSH SIGNATURE-----\n")


def _cert(subject, issuer, pub, signer, not_before, not_after, sans, ca):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
         .serial_number(x509.random_serial_number()).not_valid_before(not_before)
         .not_valid_after(not_after))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                            critical=True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                            critical=False)
    return b.sign(signer, hashes.SHA256())


def _item(cert, self_signed):
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        san = []
    z = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
    # cryptography < 42 (Debian 12) has only the naive-UTC properties.
    nb = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before
    na = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    return {"format": "base64", "data": base64.b64encode(der).decode(),
            "sha256": hashlib.sha256(der).hexdigest(), "spki_sha256": hashlib.sha256(spki).hexdigest(),
            "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "san": san, "not_before": z(nb), "not_after": z(na), "self_signed": self_signed}


def chains(directory, now):
    """(real chain items, interceptor chain items); writes directory/ca.pem."""
    nb = now - datetime.timedelta(days=DAYS + 30)
    na = now + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Parallax Test Trust"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Parallax Test Root CA")])
    ca = _cert(ca_name, ca_name, ca_key.public_key(), ca_key, nb, na, [], True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Sites"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "*.example.test")])
    leaf = _cert(leaf_name, ca_name, leaf_key.public_key(), ca_key, nb, na,
                 ["*.example.test", "example.test"], False)
    mitm_key = ec.generate_private_key(ec.SECP256R1())
    mitm_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "cn"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "*.example.test"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "*.example.test")])
    mitm = _cert(mitm_name, mitm_name, mitm_key.public_key(), mitm_key, nb, na,
                 ["*.example.test"], False)
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    return [_item(leaf, False), _item(ca, True)], [_item(mitm, True)]


def _template(real, mitm):
    """The measurement as a list of text pieces around @@NAME@@ fields, so a
    row is one join (a JSON round trip per row would cost more than the
    signature)."""
    def q(t, ip, tid):
        return {"engine": "udp", "resolver_address": "192.0.2.53:53", "hostname": "@@DOMAIN@@",
                "query_type": t, "rcode": 0, "truncated": False,
                "answers": [{"answer_type": t, ("ipv4" if t == "A" else "ipv6"): ip, "ttl": 300}],
                "raw_response": "@@RAW" + t + "@@", "failure": None, "t0": 0.0001, "t": 0.0123,
                "transaction_id": tid}
    hs = {"address": "@@ADDR@@:443", "server_name": "@@DOMAIN@@", "tls_version": "TLSv1.3",
          "cipher_suite": "TLS_AES_128_GCM_SHA256", "negotiated_protocol": "h2",
          "no_tls_verify": False, "peer_certificates": "@@CHAIN@@",
          "verification": "@@VERIFICATION@@", "server_alert": None, "failure": "@@FAILURE@@",
          "failure_detail": None, "t0": 0.02, "t": 0.05, "transaction_id": 1}
    m = {"data_format_version": "0.2.0", "measurement_start_time": "@@MST@@",
         "test_start_time": "@@MST@@", "probe_cc": "@@CC@@", "probe_asn": "@@ASN@@",
         "probe_network_name": None, "probe_ip": "127.0.0.1", "resolver_ip": "192.0.2.53",
         "resolver_asn": "AS0", "resolver_network_name": None, "software_name": "parallax",
         "software_version": "0.1.0", "test_name": "tls_cert_consistency", "test_version": "0.1.0",
         "test_runtime": 0.06, "input": "@@DOMAIN@@", "report_id": "@@REPORT@@",
         "annotations": {"engine_name": "parallax", "engine_version": "0.1.0",
                         "libuv_version": "1.44.2", "openssl_version": "OpenSSL 3.0.15",
                         "c_ares_version": "1.18.1", "jansson_version": "2.14",
                         "trust_store": "file:ca.pem", "platform": "linux"},
         "test_keys": {"queries": [q("A", "@@ADDR@@", 1), q("AAAA", "2001:db8::7", 2)],
                       "tcp_connect": [{"ip": "@@ADDR@@", "port": 443,
                                        "status": {"failure": None, "success": True},
                                        "t0": 0.013, "t": 0.02, "transaction_id": 1}],
                       "tls_handshakes": [hs], "skipped_addresses": []}}
    text = json.dumps(m, separators=(",", ":"))
    # Non-string fields were written as strings: unquote them.
    for name in ("CHAIN", "VERIFICATION", "FAILURE"):
        text = text.replace(f'"@@{name}@@"', f"@@{name}@@")
    pieces = re.split(r"@@(\w+)@@", text)
    fixed = {
        "real": json.dumps(real, separators=(",", ":")),
        "mitm": json.dumps(mitm, separators=(",", ":")),
        "ok": json.dumps({"ok": True, "errors": [], "hostname_match": True}, separators=(",", ":")),
        "bad": json.dumps({"ok": False, "errors": [{"code": 18, "name": "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT",
                                                          "message": "self-signed certificate", "depth": 0}],
                           "hostname_match": True}, separators=(",", ":")),
    }
    return pieces, fixed


def _render(pieces, values):
    out = list(pieces)
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_schema(collector_bin, path):
    """The real collector creates (and migrates) the database, then stops."""
    port = _free_port()
    p = subprocess.Popen([collector_bin, "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:{path}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if p.poll() is not None:
                raise RuntimeError(f"parallax-collector exited {p.returncode} on {path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("parallax-collector did not start")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def uid_of(mst, cc, sha):
    return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(mst))}_{cc}_tlscertconsistency_{sha.hex()[:16]}"


def generate(collector_bin, path, count, tampered=False, seed=7, days=DAYS):
    """days: the span the measurements cover, ending now (a smaller count
    over a shorter span keeps the density the collector's 24-hour windows
    need)."""
    rnd = random.Random(seed)
    directory = os.path.dirname(os.path.abspath(path))
    make_schema(collector_bin, path)
    now_dt = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    now = int(now_dt.timestamp())
    real, mitm = chains(directory, now_dt)
    pieces, fixed = _template(real, mitm)
    keys = [Key(rnd) for _ in VANTAGES] + [Key(rnd)]  # the last: the rotating agent's new key
    rotated_at = now - int(days * ROTATED_DAYS / DAYS * 86400)
    start = now - int(days * 86400)
    step = (days * 86400 - 120) / max(count, 1)
    domains = [f"site{d}.example.test" for d in range(DOMAINS)]
    raw = {t: base64.b64encode(rnd.randbytes(n)).decode() for t, n in (("A", 64), ("AAAA", 76))}
    seen = {}  # key index -> [first, last] received_at
    rows = []
    for i in range(count):
        v = i % len(VANTAGES)
        cc, asn = VANTAGES[v]
        mst = int(start + i * step)
        k = v
        if v == ROTATING and mst >= rotated_at:
            k = len(VANTAGES)
        d = (i // len(VANTAGES)) % DOMAINS
        intercepted = cc == "CN" and d % 5 == 0
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mst))
        content = _render(pieces, {
            "MST": stamp, "CC": cc, "ASN": asn, "DOMAIN": domains[d],
            "REPORT": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(mst))
            + f"_tlscertconsistency_{cc}_{asn[2:]}_g{seed}x{i}",
            "ADDR": "198.51.100.7" if not intercepted else "198.51.100.66",
            "RAWA": raw["A"], "RAWAAAA": raw["AAAA"],
            "CHAIN": fixed["mitm" if intercepted else "real"],
            "VERIFICATION": fixed["bad" if intercepted else "ok"],
            "FAILURE": '"ssl_unknown_authority"' if intercepted else "null",
        }).encode()
        sha = hashlib.sha256(content).digest()
        received = mst + 30 + i % 600
        f = seen.setdefault(k, [received, received])
        f[0], f[1] = min(f[0], received), max(f[1], received)
        geo = i % 997 == 3
        rows.append((uid_of(mst, cc, sha), sha, content, keys[k].sign(content), keys[k].key_id, cc,
                     asn, "tls_cert_consistency", domains[d], domains[d], mst, received,
                     1 if geo else 0, "NL" if geo else None))
    bad = {}
    if tampered:
        # Valid measurements, damaged in the database.
        base = now - 3 * 86400
        for j, what in enumerate(("signature", "signature-other-content", "hash", "key")):
            cc, asn = VANTAGES[0]
            mst = base + j * 60
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mst))
            content = _render(pieces, {
                "MST": stamp, "CC": cc, "ASN": asn, "DOMAIN": domains[1],
                "REPORT": f"tampered_{what}_{seed}", "ADDR": "198.51.100.7",
                "RAWA": raw["A"], "RAWAAAA": raw["AAAA"], "CHAIN": fixed["real"],
                "VERIFICATION": fixed["ok"], "FAILURE": "null"}).encode()
            sha = hashlib.sha256(content).digest()
            sig, key_id, stored_sha = keys[0].sign(content), keys[0].key_id, sha
            if what == "signature":  # a byte of the signature itself flipped
                blob = bytearray(base64.b64decode("".join(sig.splitlines()[1:-1])))
                blob[-5] ^= 0x01
                b64 = base64.b64encode(bytes(blob)).decode()
                sig = ("-----BEGIN SSH SIGNATURE-----\n"
                       + "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
                       + "\n-----END SSH SIGNATURE-----\n")
            elif what == "signature-other-content":  # the content edited after signing
                sig = keys[0].sign(content.replace(b'"probe_asn":"AS3320"', b'"probe_asn":"AS3209"'))
            elif what == "hash":
                stored_sha = hashlib.sha256(content + b" ").digest()
            elif what == "key":  # signed by DE's key, recorded as US's
                key_id = keys[1].key_id
            uid = uid_of(mst, cc, sha)
            bad[uid] = what
            rows.append((uid, stored_sha, content, sig, key_id, cc, asn, "tls_cert_consistency",
                         domains[1], domains[1], mst, mst + 5, 0, None))
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")  # a bulk load; the collector itself uses FULL
    with con:
        for k, key in enumerate(keys):
            first, last = seen.get(k, [start, start])
            vb = rotated_at if k == ROTATING else None
            con.execute("INSERT INTO keys (key_id, public_key, first_seen, last_seen, valid_before) "
                        "VALUES (?, ?, ?, ?, ?)", (key.key_id, key.line, first, last, vb))
        con.executemany(
            "INSERT INTO measurements (uid, content_sha256, content, signature, key_id, probe_cc, "
            "probe_asn, test_name, input, domain, measurement_start_time, received_at, "
            "geo_mismatch, uploader_cc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.close()
    return {"count": count, "rows": len(rows), "tampered": bad,
            "keys": [k.key_id for k in keys], "rotated_key": keys[ROTATING].key_id,
            "rotated_at": rotated_at, "domains": domains, "since": start, "until": now,
            "ca": os.path.join(directory, "ca.pem")}


def window(collector_bin, path, vantages=1000, hours=24, groups=200, seed=11):
    """A day of hourly runs for one domain: `vantages` agent keys spread
    over `groups` (country, network) groups, each measuring every hour;
    five CN keys are intercepted in one run of the day (the 2014 pattern:
    Apple's address, a self-signed certificate). What a busy
    collector's compare reads over its default window (bench/compare-window)."""
    rnd = random.Random(seed)
    directory = os.path.dirname(os.path.abspath(path))
    make_schema(collector_bin, path)
    now_dt = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    now = int(now_dt.timestamp())
    real, mitm = chains(directory, now_dt)
    pieces, fixed = _template(real, mitm)
    raw = {t: base64.b64encode(rnd.randbytes(n)).decode() for t, n in (("A", 64), ("AAAA", 76))}
    domain = "site0.example.test"
    keys = [Key(rnd) for _ in range(vantages)]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rows = []
    start = now - hours * 3600 + 1800  # inside a 24-hour window for half an hour
    for k, key in enumerate(keys):
        g = k % groups
        cc = "CN" if g == 0 else letters[g // 26 % 26] + letters[g % 26]
        if cc == "CN" and g != 0:
            cc = "ZZ"  # one CN group: the intercepted one
        asn = f"AS{64512 + g}"
        for h in range(hours):
            mst = start + h * 3600 + k % 600
            intercepted = cc == "CN" and k < 5 * groups and h == hours // 2
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mst))
            content = _render(pieces, {
                "MST": stamp, "CC": cc, "ASN": asn, "DOMAIN": domain,
                "REPORT": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(mst))
                + f"_tlscertconsistency_{cc}_{asn[2:]}_w{seed}x{k}x{h}",
                "ADDR": "198.51.100.7",
                "RAWA": raw["A"], "RAWAAAA": raw["AAAA"],
                "CHAIN": fixed["mitm" if intercepted else "real"],
                "VERIFICATION": fixed["bad" if intercepted else "ok"],
                "FAILURE": '"ssl_unknown_authority"' if intercepted else "null",
            }).encode()
            sha = hashlib.sha256(content).digest()
            rows.append((uid_of(mst, cc, sha), sha, content, key.sign(content), key.key_id, cc, asn,
                         "tls_cert_consistency", domain, domain, mst, mst + 30, 0, None))
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    with con:
        for key in keys:
            con.execute("INSERT INTO keys (key_id, public_key, first_seen, last_seen) "
                        "VALUES (?, ?, ?, ?)", (key.key_id, key.line, start, now))
        con.executemany(
            "INSERT INTO measurements (uid, content_sha256, content, signature, key_id, probe_cc, "
            "probe_asn, test_name, input, domain, measurement_start_time, received_at, "
            "geo_mismatch, uploader_cc) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.close()
    return {"rows": len(rows), "vantages": vantages, "groups": groups, "domain": domain,
            "ca": os.path.join(directory, "ca.pem")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collector", required=True, help="the parallax-collector binary")
    ap.add_argument("--db", required=True, help="the SQLite file to create (must not exist)")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--tampered", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--window", type=int, metavar="VANTAGES",
                    help="instead: a day of hourly runs of one domain by this many keys")
    a = ap.parse_args()
    if os.path.exists(a.db):
        sys.exit(f"gen_store: {a.db} exists")
    t = time.monotonic()
    if a.window:
        info = window(a.collector, a.db, vantages=a.window)
    else:
        info = generate(a.collector, a.db, a.count, a.tampered, a.seed)
    info["seconds"] = round(time.monotonic() - t, 1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
