"""Measurements for bench/collector-ingest: distinct, really signed, of
realistic size and spread.

Each vantage is one agent: its own Ed25519 key, country, network (real ASNs
and operator names) and resolver. A measurement is one domain measured by
one agent at one time within the last year: DNS A and AAAA answers (the
domain's addresses, varying by country as geo-DNS does), a TCP connect and a
TLS handshake presenting a leaf + intermediate chain made for that domain
under a bench root (pass --ca-file root.pem to the collector so the
analysis re-validates them as it would real ones). Domains are measured with
a Zipf-like popularity, the often-interfered services first; in a few
countries some of those are intercepted (a self-signed certificate per
country and domain, the 2014 pattern), reset, or answered with another
address. Every row has its own content (time, report id, DNS wire bytes),
so the content hash, uid and signature are distinct and verify.

Generation runs in a process pool (signing and JSON are the cost); the
caller inserts the rows.
"""
import base64
import datetime
import hashlib
import json
import multiprocessing
import os
import random
import sqlite3
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

NS = b"parallax-measurement-v1"
YEAR = 365 * 86400

# (country, ASN, network name, relative activity): one agent each.
VANTAGES = [
    ("US", 7922, "Comcast Cable", 5), ("US", 701, "Verizon Business", 3),
    ("DE", 3320, "Deutsche Telekom AG", 4), ("DE", 3209, "Vodafone GmbH", 2),
    ("GB", 2856, "British Telecommunications PLC", 3), ("FR", 3215, "Orange S.A.", 3),
    ("NL", 1136, "KPN B.V.", 2), ("RU", 12389, "Rostelecom", 4), ("RU", 8359, "MTS PJSC", 2),
    ("CN", 4134, "Chinanet", 4), ("CN", 4837, "China Unicom", 2),
    ("IR", 58224, "Iran Telecommunication Company PJS", 3), ("IR", 44244, "Irancell", 2),
    ("TR", 9121, "Turk Telekomunikasyon", 2), ("IN", 9829, "BSNL", 2),
    ("IN", 55836, "Reliance Jio Infocomm", 3), ("BR", 28573, "Claro NXT", 2),
    ("JP", 2516, "KDDI Corporation", 2), ("KR", 4766, "Korea Telecom", 2),
    ("EG", 8452, "TE Data", 2), ("SA", 25019, "Saudi Telecom Company", 1),
    ("PK", 17557, "Pakistan Telecommunication Company", 2), ("VN", 45899, "VNPT Corp", 1),
    ("TH", 23969, "TOT Public Company", 1), ("ID", 7713, "Telkom Indonesia", 2),
    ("MY", 4788, "TM Net", 1), ("KZ", 9198, "JSC Kazakhtelecom", 2),
    ("BY", 6697, "Republican Unitary Telecommunication Enterprise Beltelecom", 1),
    ("UA", 15895, "Kyivstar PJSC", 2), ("TM", 20661, "Turkmentelecom", 1),
    ("MM", 9988, "Myanma Posts and Telecommunication", 1), ("VE", 8048, "CANTV", 1),
    ("CU", 27725, "Empresa de Telecomunicaciones de Cuba", 1), ("AE", 5384, "Emirates Telecommunications", 1),
    ("HK", 4760, "HKT Limited", 1), ("SY", 29256, "Syrian Telecom", 1),
    ("ET", 24757, "Ethio Telecom", 1), ("NG", 29465, "MTN Nigeria", 1),
    ("MX", 8151, "UNINET", 2), ("AR", 7303, "Telecom Argentina", 1),
    ("PL", 5617, "Orange Polska", 1), ("IT", 3269, "Telecom Italia", 2),
    ("ES", 3352, "Telefonica de Espana", 1), ("CA", 812, "Rogers Communications", 2),
    ("AU", 1221, "Telstra", 1),
]
# Countries that interfere, and how: interception, resets, DNS answers.
CENSORS = {"CN": (0.35, 0.25, 0.2), "IR": (0.3, 0.3, 0.2), "TM": (0.4, 0.3, 0.1),
           "KZ": (0.25, 0.05, 0.0), "RU": (0.05, 0.2, 0.05), "SY": (0.2, 0.2, 0.1),
           "BY": (0.05, 0.1, 0.05), "MM": (0.05, 0.2, 0.1), "CU": (0.0, 0.1, 0.1)}

KNOWN = ["icloud.com", "www.icloud.com", "appleid.apple.com", "setup.icloud.com", "www.apple.com",
         "www.google.com", "www.youtube.com", "www.facebook.com", "www.instagram.com",
         "twitter.com", "www.wikipedia.org", "signal.org", "www.whatsapp.com", "telegram.org",
         "www.torproject.org", "www.bbc.com", "www.nytimes.com", "github.com", "mail.google.com",
         "drive.google.com", "www.dropbox.com", "www.reddit.com", "www.linkedin.com",
         "www.amazon.com", "www.netflix.com", "www.tiktok.com", "www.twitch.tv", "discord.com",
         "www.theguardian.com", "www.dw.com", "www.rferl.org", "www.voanews.com",
         "www.hrw.org", "www.amnesty.org", "rsf.org", "www.economist.com", "www.reuters.com",
         "www.washingtonpost.com", "www.bloomberg.com", "www.france24.com", "meduza.io",
         "www.bbc.co.uk", "protonmail.com", "mail.proton.me", "www.psiphon.ca", "getlantern.org",
         "www.hotspotshield.com", "nordvpn.com", "www.expressvpn.com", "mullvad.net",
         "www.microsoft.com", "login.microsoftonline.com", "outlook.live.com",
         "www.skype.com", "zoom.us", "www.viber.com", "line.me", "www.wechat.com",
         "www.paypal.com", "wordpress.com", "medium.com", "www.blogger.com", "archive.org",
         "web.archive.org", "www.change.org", "www.avaaz.org", "ooni.org", "explorer.ooni.org"]
STEMS = ["news", "daily", "times", "post", "radio", "tv", "press", "herald", "mail", "shop",
         "bank", "cloud", "chat", "video", "music", "forum", "wiki", "travel", "sport", "games"]
TLDS = ["com", "org", "net", "info", "de", "fr", "ru", "ir", "cn", "co.uk", "com.br", "in", "jp"]


def domains(n=1000):
    out = list(KNOWN)
    i = 0
    while len(out) < n:
        out.append(f"www.{STEMS[i % len(STEMS)]}{i // len(STEMS)}.{TLDS[i % len(TLDS)]}")
        i += 1
    return out


def ssh_string(b):
    return len(b).to_bytes(4, "big") + b


def pub_blob(key):
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return ssh_string(b"ssh-ed25519") + ssh_string(pub)


def key_id(key):
    return "SHA256:" + base64.b64encode(hashlib.sha256(pub_blob(key)).digest()).decode().rstrip("=")


def key_line(key):
    return "ssh-ed25519 " + base64.b64encode(pub_blob(key)).decode()


def sshsig_sign(key, message, blob=None):
    blob = blob or pub_blob(key)
    signed = (b"SSHSIG" + ssh_string(NS) + ssh_string(b"") + ssh_string(b"sha512") +
              ssh_string(hashlib.sha512(message).digest()))
    sig = ssh_string(b"ssh-ed25519") + ssh_string(key.sign(signed))
    out = (b"SSHSIG" + (1).to_bytes(4, "big") + ssh_string(blob) + ssh_string(NS) +
           ssh_string(b"") + ssh_string(b"sha512") + ssh_string(sig))
    b64 = base64.b64encode(out).decode()
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


# ---- certificates ---------------------------------------------------------

def _name(cn, o, c="US"):
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, c),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, pub, signer, lo, hi, ca, sans=None, pathlen=None):
    """ca: a CA certificate (pathlen: its path length constraint)."""
    ku = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
              encipher_only=False, decipher_only=False)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
         .serial_number(x509.random_serial_number()).not_valid_before(lo).not_valid_after(hi)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None),
                        critical=True)
         .add_extension(x509.KeyUsage(**ku), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                        critical=False))
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                            critical=False)
    return b.sign(signer, hashes.SHA256())


def _nb(cert):
    return getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before


def _na(cert):
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after


def _entry(cert):
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    fmt = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"format": "base64", "data": base64.b64encode(der).decode(),
            "sha256": hashlib.sha256(der).hexdigest(), "spki_sha256": hashlib.sha256(spki).hexdigest(),
            "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "san": sans, "not_before": fmt(_nb(cert)), "not_after": fmt(_na(cert)),
            "self_signed": cert.subject == cert.issuer}


def make_pki(doms, now, root_pem_path):
    """A root (written to root_pem_path), two intermediates, a leaf per
    domain and an interception certificate per censoring country and
    popular domain; returns {"chain": {domain: [entries]}, "mitm": {...}}."""
    lo = datetime.datetime.utcfromtimestamp(now - YEAR - 40 * 86400)
    hi = datetime.datetime.utcfromtimestamp(now + 400 * 86400)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _cert(_name("Bench Root X1", "Bench Trust"), _name("Bench Root X1", "Bench Trust"),
                 root_key.public_key(), root_key, lo, hi, True)
    with open(root_pem_path, "wb") as f:
        f.write(root.public_bytes(serialization.Encoding.PEM))
    inters = []
    for n in ("R3", "E1"):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048) if n == "R3" else \
            ec.generate_private_key(ec.SECP256R1())
        c = _cert(_name(f"Bench {n}", "Bench Trust"), root.subject, k.public_key(), root_key,
                  lo, hi, True, pathlen=0)
        inters.append((k, c, _entry(c)))
    leaf_keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)] + \
        [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    chain = {}
    for i, d in enumerate(doms):
        ik, ic, ie = inters[i % 2]
        base = d[4:] if d.startswith("www.") else d
        leaf = _cert(_name(d, "Bench Sites"), ic.subject, leaf_keys[i % 6].public_key(), ik, lo, hi,
                     False, sans=[d, base] if base != d else [d])
        chain[d] = [_entry(leaf), ie]
    mitm = {}
    mk = ec.generate_private_key(ec.SECP256R1())
    for cc in CENSORS:
        for d in doms[:20]:
            c = _cert(_name(d, d, cc), _name(d, d, cc), mk.public_key(), mk, lo, hi, False)
            mitm[(cc, d)] = [_entry(c)]
    return {"chain": chain, "mitm": mitm}


# ---- measurements ---------------------------------------------------------

def _addresses(domain, cc):
    h = hashlib.sha256(domain.encode()).digest()
    firsts = [23, 31, 104, 142, 151, 157, 185, 199, 216]
    v4 = [f"{firsts[h[k] % len(firsts)]}.{h[k + 1]}.{h[k + 2]}.{1 + h[k + 3] % 254}"
          for k in range(0, 16, 4)]
    # geo-DNS: each country sees two of the domain's four addresses
    g = hashlib.sha256((domain + cc).encode()).digest()[0] % 3
    return v4[g:g + 2], f"2a00:{h[16]:x}{h[17]:02x}:{h[18]:x}::{h[19]:x}"


def _query(qtype, domain, resolver, answers, rnd, tid, failure=None):
    kind = "ipv4" if qtype == "A" else "ipv6"
    raw = rnd.randbytes(40 + len(domain) + 28 * len(answers))
    return {"engine": "udp", "resolver_address": f"{resolver}:53", "hostname": domain,
            "query_type": qtype, "rcode": 0, "truncated": False,
            "answers": [{"answer_type": qtype, kind: a, "ttl": rnd.choice((60, 300, 3600))}
                        for a in answers],
            "raw_response": base64.b64encode(raw).decode(), "failure": failure,
            "t0": round(rnd.uniform(0.0001, 0.002), 6), "t": round(rnd.uniform(0.005, 0.2), 6),
            "transaction_id": tid}


def measurement(i, ctx):
    """Row i of the data set: (content bytes, vantage index, domain, start)."""
    rnd = random.Random(ctx["seed"] * 1_000_003 + i)
    v = rnd.choices(range(len(VANTAGES)), cum_weights=ctx["vcum"])[0]
    cc, asn, net, _ = VANTAGES[v]
    d = ctx["domains"][rnd.choices(range(len(ctx["domains"])), cum_weights=ctx["dcum"])[0]]
    t = ctx["t_end"] - rnd.randrange(ctx["span"])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    run = t - rnd.randrange(600)
    v4, v6 = _addresses(d, cc)
    resolver = f"{(asn * 7) % 200 + 20}.{asn % 251}.{(asn >> 3) % 251}.53"
    mitm_p, reset_p, dns_p = CENSORS.get(cc, (0, 0, 0))
    popular = (cc, d) in ctx["mitm"]
    x = rnd.random()
    if popular and x < dns_p:
        v4 = [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.1"]
    queries = [_query("A", d, resolver, v4, rnd, 1), _query("AAAA", d, resolver, [v6], rnd, 2)]
    ip = v4[0]
    t0 = round(rnd.uniform(0.2, 0.3), 6)
    tcp = [{"ip": ip, "port": 443, "status": {"failure": None, "success": True},
            "t0": t0, "t": round(t0 + rnd.uniform(0.01, 0.3), 6), "transaction_id": 1}]
    hs = {"address": f"{ip}:443", "server_name": d, "tls_version": "TLSv1.3",
          "cipher_suite": rnd.choice(("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                      "TLS_CHACHA20_POLY1305_SHA256")),
          "negotiated_protocol": rnd.choice(("h2", "http/1.1")), "no_tls_verify": False,
          "peer_certificates": ctx["chain"][d],
          "verification": {"ok": True, "errors": [], "hostname_match": True},
          "server_alert": None, "failure": None, "failure_detail": None,
          "t0": round(t0 + 0.31, 6), "t": round(t0 + rnd.uniform(0.35, 1.2), 6),
          "transaction_id": 1}
    if popular and dns_p <= x < dns_p + mitm_p:
        hs["peer_certificates"] = ctx["mitm"][(cc, d)]
        hs["tls_version"], hs["cipher_suite"] = "TLSv1.2", "TLS_RSA_WITH_AES_256_CBC_SHA"
        hs["verification"] = {"ok": False, "errors": [{"code": 18, "name": "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT",
                                                "message": "self-signed certificate", "depth": 0}],
                              "hostname_match": True}
        hs["failure"] = "ssl_unknown_authority"
    elif popular and dns_p + mitm_p <= x < dns_p + mitm_p + reset_p:
        hs.update(peer_certificates=[], tls_version="", cipher_suite="", negotiated_protocol="",
                  verification=None, failure="connection_reset",
                  failure_detail="ECONNRESET after ClientHello")
    m = {"data_format_version": "0.2.0", "measurement_start_time": stamp,
         "test_start_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run)),
         "probe_cc": cc, "probe_asn": f"AS{asn}", "probe_network_name": net,
         "probe_ip": "127.0.0.1", "resolver_ip": resolver, "resolver_asn": f"AS{asn}",
         "resolver_network_name": net, "software_name": "parallax", "software_version": "0.1.0",
         "test_name": "tls_cert_consistency", "test_version": "0.1.0",
         "test_runtime": round(rnd.uniform(0.3, 4.0), 6), "input": d,
         "report_id": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run)) +
         f"_tlscertconsistency_{cc}_{asn}_{rnd.getrandbits(64):016x}",
         "annotations": {"engine_name": "parallax", "engine_version": "0.1.0",
                         "libuv_version": "1.44.2", "openssl_version": "OpenSSL 3.0.15",
                         "c_ares_version": "1.18.1", "jansson_version": "2.14",
                         "platform": "linux", "architecture": rnd.choice(("amd64", "arm64")),
                         "trust_store": "debian:ca-certificates 20230311",
                         "clock_offset": f"{rnd.uniform(-0.5, 0.5):.3f}"},
         "test_keys": {"queries": queries, "tcp_connect": tcp, "tls_handshakes": [hs],
                       "skipped_addresses": []}}
    return json.dumps(m, separators=(",", ":")).encode(), v, d, t


# ---- the pool -------------------------------------------------------------

_CTX = None


def _init(ctx):
    global _CTX
    _CTX = dict(ctx)
    _CTX["keys"] = [Ed25519PrivateKey.from_private_bytes(k) for k in ctx["key_bytes"]]
    _CTX["blobs"] = [pub_blob(k) for k in _CTX["keys"]]


def _rows(span):
    """Collector rows for indices [a, b)."""
    a, b = span
    c = _CTX
    out = []
    for i in range(a, b):
        content, v, d, t = measurement(i, c)
        sha = hashlib.sha256(content).digest()
        cc = VANTAGES[v][0]
        uid = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(t))}_{cc}_tlscertconsistency_{sha.hex()[:16]}"
        sig = sshsig_sign(c["keys"][v], content, c["blobs"][v])
        out.append((uid, sha, content, sig, c["kids"][v], cc, f"AS{VANTAGES[v][1]}",
                    "tls_cert_consistency", d, d, t, t + 60 + (i % 3000)))
    return out


def _bodies(span):
    return [json.dumps({"format": "json", "content": r[2].decode(), "signature": r[3]},
                       separators=(",", ":")) for r in _rows(span)]


class DataSet:
    """The keys, certificates and distributions; rows come from pool()."""

    def __init__(self, work, seed, t_end=None, ndomains=1000):
        self.t_end = int(t_end or time.time())
        self.root_pem = os.path.join(work, f"bench-root-{seed}.pem")
        keys = [Ed25519PrivateKey.generate() for _ in VANTAGES]
        self.kids = [key_id(k) for k in keys]
        self.key_lines = [key_line(k) for k in keys]
        self.domains = domains(ndomains)
        pki = make_pki(self.domains, self.t_end, self.root_pem)
        vcum, acc = [], 0
        for v in VANTAGES:
            acc += v[3]
            vcum.append(acc)
        dcum, acc = [], 0.0
        for r in range(len(self.domains)):
            acc += 1.0 / (r + 3) ** 0.9
            dcum.append(acc)
        self.ctx = {"seed": seed, "span": YEAR, "t_end": self.t_end, "vcum": vcum, "dcum": dcum,
                    "domains": self.domains, "chain": pki["chain"], "mitm": pki["mitm"],
                    "kids": self.kids,
                    "key_bytes": [k.private_bytes(serialization.Encoding.Raw,
                                                  serialization.PrivateFormat.Raw,
                                                  serialization.NoEncryption()) for k in keys]}

    def _map(self, fn, n, chunk):
        spans = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
        procs = max(1, min(os.cpu_count() or 1, 4))
        with multiprocessing.get_context("fork").Pool(procs, _init, (self.ctx,)) as pool:
            yield from pool.imap(fn, spans)

    def rows(self, n, chunk=2000):
        """Batches of collector rows (uid, sha256, content, signature, key_id,
        probe_cc, probe_asn, test_name, input, domain, start, received_at)."""
        return self._map(_rows, n, chunk)

    def write_bodies(self, path, n, span=86400):
        """n submission bodies, one a line, started within span seconds
        before t_end (what a collector receives: recent measurements);
        returns the average content size."""
        self.ctx.update(span=span, seed=self.ctx["seed"] + 1_000_000)
        size = 0
        with open(path, "w") as f:
            for batch in self._map(_bodies, n, 2000):
                for line in batch:
                    size += len(json.loads(line)["content"])
                    f.write(line + "\n")
        self.ctx.update(span=YEAR, seed=self.ctx["seed"] - 1_000_000)
        return size // max(n, 1)

    def fill_sqlite(self, db, n):
        """Bulk-loads n rows into a collector SQLite database whose schema
        the collector made; returns the average content size."""
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")  # bulk load only; the collector uses FULL
        first = self.t_end - YEAR
        con.executemany("INSERT INTO keys (key_id, public_key, first_seen, last_seen) "
                        "VALUES (?, ?, ?, ?)",
                        [(k, line, first, self.t_end) for k, line in zip(self.kids, self.key_lines)])
        size = 0
        for batch in self.rows(n):
            size += sum(len(r[2]) for r in batch)
            con.executemany("INSERT INTO measurements (uid, content_sha256, content, signature, "
                            "key_id, probe_cc, probe_asn, test_name, input, domain, "
                            "measurement_start_time, received_at) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            con.commit()
        con.execute("ANALYZE")
        con.commit()
        con.close()
        return size // max(n, 1)


class Existing:
    """A query database an earlier run made and kept: what the timing
    needs from it (root certificate beside it as PATH.pem)."""

    def __init__(self, path):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.kids = [r[0] for r in con.execute("SELECT key_id FROM keys ORDER BY key_id")]
        self.rows, t = con.execute("SELECT count(*), max(measurement_start_time) "
                                   "FROM measurements").fetchone()
        con.close()
        self.t_end = t + 1
        self.root_pem = path + ".pem"
        self.domains = domains(1000)
