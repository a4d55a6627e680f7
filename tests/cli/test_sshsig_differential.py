"""parallax accepts exactly the SSHSIG signatures `ssh-keygen -Y verify`
accepts (Ed25519 keys only, the one deliberate difference).

A real key signs a measurement with `ssh-keygen -Y sign`; a corpus of a few
hundred altered signatures (the armour, the base64, the blob's structure,
the Ed25519 values, small-order keys, and fixed-seed random flips,
insertions and deletions) is then judged by both programs:

    ssh-keygen -Y verify -f allowed_signers -I ID -n parallax-measurement-v1 -s F < M
    parallax verify --allowed-signers allowed_signers M...   (M.sig beside M)

and every case must get the same answer. A few answers of ssh-keygen that
docs/signatures.md states are pinned as well, so the corpus cannot quietly
stop covering them. Needs ssh-keygen; no network, no test peers."""
import base64
import collections
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

import collectorlib as cl
import pxtest

NS = "parallax-measurement-v1"
CONTENT = ('{"measurement_start_time":"2024-05-01 10:00:00","probe_cc":"DE","probe_asn":"AS3320",'
           '"test_name":"tls_cert_consistency","input":"www.example.com",'
           '"test_keys":{"chain_sha256":["9f2a"],"failure":null}}').encode()
BEGIN = b"-----BEGIN SSH SIGNATURE-----"
END = b"-----END SSH SIGNATURE-----"


def ssh_string(b):
    return len(b).to_bytes(4, "big") + b


def split_blob(blob):
    """(version bytes, [key, namespace, reserved, hash, signature]) of a
    well-formed blob."""
    out, off = [], 10
    while off < len(blob):
        field, off = cl._ssh_string(blob, off)
        out.append(field)
    return blob[6:10], out


def make_blob(version=b"\0\0\0\1", key=b"", ns=NS.encode(), reserved=b"", hash_alg=b"sha512",
              sig=b"", tail=b""):
    return (b"SSHSIG" + version + ssh_string(key) + ssh_string(ns) + ssh_string(reserved)
            + ssh_string(hash_alg) + ssh_string(sig) + tail)


def armour(blob, width=70):
    b64 = base64.b64encode(blob)
    lines = [b64[i:i + width] for i in range(0, len(b64), width)]
    return BEGIN + b"\n" + b"\n".join(lines) + b"\n" + END + b"\n"


def signed_data(message, hash_alg="sha512"):
    return (b"SSHSIG" + ssh_string(NS.encode()) + ssh_string(b"") + ssh_string(hash_alg.encode())
            + ssh_string(hashlib.new(hash_alg, message).digest()))


# ---- Ed25519 arithmetic, enough to sign for a small-order key ---------------
# A key of small order "signs" anything: with A the identity, [S]B = R + [h]A
# holds for R = [r]B, S = r whatever the message. Both verifiers must judge
# such keys (and their non-canonical encodings) alike.

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a, b = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    c, d = 2 * D * t1 * t2 % P, 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def base_mult(k):
    """The encoding of [k]B."""
    q, p = (0, 1, 1, 0), (BX, BY, 1, BX * BY % P)
    while k:
        if k & 1:
            q = _add(q, p)
        p, k = _add(p, p), k >> 1
    zi = pow(q[2], P - 2, P)
    x, y = q[0] * zi % P, q[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def small_order_signature(raw_key, order, message, rnd):
    """A signature by raw_key (a point of the given order) over message:
    R = [r]B, S = r, with r drawn until [h]A is the identity."""
    data = signed_data(message)
    while True:
        r = rnd.randrange(1, L)
        R = base_mult(r)
        h = int.from_bytes(hashlib.sha512(R + raw_key + data).digest(), "little") % L
        if h % order == 0:
            return R + r.to_bytes(32, "little")


ENC = lambda v: v.to_bytes(32, "little")  # noqa: E731
# name: (encoding, order of the point, or 0 when we cannot sign for it)
WEAK_KEYS = {
    "identity": (ENC(1), 1),
    "identity-sign-bit": (ENC(1 | 1 << 255), 1),
    "identity-y-plus-p": (ENC(1 + P), 1),
    "order-2": (ENC(P - 1), 2),
    "order-4": (ENC(0), 4),
    "order-4-y-is-p": (ENC(P), 4),
    "not-a-point-we-can-sign-for": (ENC(2), 0),
}


class Corpus:
    def __init__(self):
        self.cases = []

    def add(self, category, name, sig, principal="agent", message=CONTENT, expect=None):
        """expect: ssh-keygen's answer, when docs/signatures.md states it."""
        self.cases.append(dict(category=category, name=name, sig=sig, principal=principal,
                               message=message, expect=expect))


class Differential(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if shutil.which("ssh-keygen") is None:
            raise unittest.SkipTest("ssh-keygen is not installed")
        cls.dir = tempfile.mkdtemp(prefix="px-sshsig-diff-")
        cls.keys = {}
        for name, kind in (("agent", "ed25519"), ("other", "ed25519"), ("stranger", "ed25519"),
                           ("rsa", "rsa"), ("ecdsa", "ecdsa"), ("ca", "ed25519")):
            path = os.path.join(cls.dir, name)
            cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", path]
            if kind == "rsa":
                cmd[4:4] = ["-b", "2048"]
            subprocess.run(cmd, check=True, capture_output=True)
            with open(path + ".pub") as f:
                cls.keys[name] = " ".join(f.read().split()[:2])
        # A certificate of the agent's key, for the known difference.
        subprocess.run(["ssh-keygen", "-q", "-s", os.path.join(cls.dir, "ca"), "-I", "certified",
                        "-n", "certified", os.path.join(cls.dir, "agent.pub")],
                       check=True, capture_output=True)
        lines = [f'{p} namespaces="{NS}" {cls.keys[p]}' for p in ("agent", "other", "rsa", "ecdsa")]
        lines.append(f'certified cert-authority,namespaces="{NS}" {cls.keys["ca"]}')
        for name, (raw, _) in WEAK_KEYS.items():
            blob = ssh_string(b"ssh-ed25519") + ssh_string(raw)
            lines.append(f'weak-{name} namespaces="{NS}" ssh-ed25519 '
                         + base64.b64encode(blob).decode())
        cls.allowed = os.path.join(cls.dir, "allowed_signers")
        with open(cls.allowed, "w") as f:
            f.write("\n".join(lines) + "\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def sign(self, key, message=CONTENT, namespace=NS, options=()):
        d = tempfile.mkdtemp(dir=self.dir)
        m = os.path.join(d, "m.json")
        with open(m, "wb") as f:
            f.write(message)
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", os.path.join(self.dir, key),
                        "-n", namespace, *options, m], check=True, capture_output=True)
        with open(m + ".sig", "rb") as f:
            return f.read()

    # ---- the two verifiers, over a whole corpus ------------------------------

    def judge(self, cases):
        d = tempfile.mkdtemp(dir=self.dir)
        paths = []
        for i, c in enumerate(cases):
            p = os.path.join(d, f"case{i:04d}.json")
            with open(p, "wb") as f:
                f.write(c["message"])
            with open(p + ".sig", "wb") as f:
                f.write(c["sig"])
            paths.append(p)
            with open(p, "rb") as m:
                r = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", self.allowed, "-I",
                                    c["principal"], "-n", NS, "-s", p + ".sig"],
                                   stdin=m, capture_output=True, timeout=30)
            c["ssh"] = r.returncode == 0
            c["ssh_says"] = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[-1:]
        r = pxtest.run(["verify", "--allowed-signers", self.allowed] + paths, timeout=120)
        said = {}
        for line in r.stdout.splitlines():
            path, _, rest = line.partition(": ")
            said[path] = rest
        for c, p in zip(cases, paths):
            self.assertIn(p, said, f"parallax verify said nothing of {c['name']}:\n{r.stdout}{r.stderr}")
            c["px"] = said[p].startswith("verified")
            c["px_says"] = said[p]
        return cases

    # ---- the corpus ----------------------------------------------------------

    def build_corpus(self):
        c = Corpus()
        sig = self.sign("agent")
        blob = cl.sshsig_decode(sig.decode())
        version, (key, ns, reserved, hash_alg, sigblob) = split_blob(blob)
        raw_sig = sigblob[19:]
        self.assertEqual(armour(blob), sig, "ssh-keygen -Y sign no longer writes what we expect")
        b64 = base64.b64encode(blob)
        body = b"\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))

        def arm(pre=b"", nl1=b"\n", body=body, nl2=b"\n", end=END, post=b"\n", begin=BEGIN):
            return pre + begin + nl1 + body + nl2 + end + post

        A = "armour"
        c.add(A, "as ssh-keygen -Y sign wrote it", sig, expect=True)
        c.add(A, "leading space", arm(pre=b" "), expect=False)
        c.add(A, "leading newline", arm(pre=b"\n"), expect=False)
        c.add(A, "a line of text before BEGIN", arm(pre=b"signature:\n"), expect=False)
        c.add(A, "UTF-8 BOM before BEGIN", arm(pre=b"\xef\xbb\xbf"))
        c.add(A, "CRLF line ends throughout", arm().replace(b"\n", b"\r\n"), expect=False)
        c.add(A, "CR before the newline of BEGIN", arm(nl1=b"\r\n"), expect=False)
        c.add(A, "space after BEGIN", arm(nl1=b" \n"))
        c.add(A, "no newline after BEGIN", arm(nl1=b""))
        c.add(A, "blank line after BEGIN", arm(nl1=b"\n\n"))
        c.add(A, "lower-case BEGIN", arm(begin=BEGIN.lower()))
        c.add(A, "BEGIN with one dash less", arm(begin=BEGIN[1:]))
        c.add(A, "CRLF in the body only", arm(body=body.replace(b"\n", b"\r\n"), nl2=b"\r\n"),
              expect=True)
        c.add(A, "no newline before END", arm(nl2=b""))
        c.add(A, "blank line before END", arm(nl2=b"\n\n"))
        c.add(A, "line of spaces before END", arm(nl2=b"\n   \n"))
        c.add(A, "line of text before END", arm(nl2=b"\nhello\n"))
        c.add(A, "lower-case END", arm(end=END.lower()))
        c.add(A, "END with one dash less", arm(end=END[:-1]))
        c.add(A, "END with a dash more", arm(end=END + b"-"))
        c.add(A, "no END line", arm(end=b"", post=b""))
        c.add(A, "no newline after END", arm(post=b""))
        c.add(A, "text after END", arm(post=b"\nunsigned text rides along\n"), expect=True)
        c.add(A, "text glued to END", arm(post=b"garbage"))
        c.add(A, "NUL bytes after END", arm(post=b"\n\0\0\0"))
        c.add(A, "64 KiB after END", arm(post=b"\n" + b"x" * 65536))
        c.add(A, "a second signature after END", arm(post=b"\n" + sig))
        c.add(A, "END twice", arm(post=b"\n" + END + b"\n"))
        c.add(A, "only the header", BEGIN + b"\n")
        c.add(A, "header and footer, no body", BEGIN + b"\n" + END + b"\n")
        c.add(A, "empty body line", arm(body=b""), expect=False)
        c.add(A, "empty file", b"")
        c.add(A, "NUL inside the body", arm(body=body[:20] + b"\0" + body[20:]))
        c.add(A, "NUL as the body's last byte", arm(body=body + b"\0"))
        c.add(A, "NUL on a line of its own before END", arm(nl2=b"\n\0\n"))
        c.add(A, "two NULs at the body's end", arm(body=body + b"\0\0"))
        c.add(A, "NUL then space at the body's end", arm(body=body + b"\0 "))
        c.add(A, "NUL before BEGIN", arm(pre=b"\0"))
        c.add(A, "the raw blob, no armour", blob, expect=False)
        c.add(A, "the base64 alone", b64 + b"\n")

        B = "base64"
        lines = body.split(b"\n")
        for width in (1, 4, 64, 76, len(b64)):
            c.add(B, f"wrapped at {width}",
                  arm(body=b"\n".join(b64[i:i + width] for i in range(0, len(b64), width))))
        c.add(B, "blank lines between lines", arm(body=body.replace(b"\n", b"\n\n")))
        for ch, name in ((b" ", "space"), (b"\t", "tab"), (b"\v", "vertical tab"),
                         (b"\f", "form feed"), (b"\r", "CR")):
            c.add(B, f"{name} inside a line", arm(body=body[:9] + ch + body[9:]))
        for ch in (b"\x1c", b"\x85", b"\xa0", b"\x7f", b"-", b"_", b".", b"*"):
            c.add(B, f"byte {ch!r} inside a line", arm(body=body[:9] + ch + body[9:]))
        c.add(B, "leading spaces on every line", arm(body=b"\n".join(b"  " + l for l in lines)))
        c.add(B, "trailing spaces on every line", arm(body=b"\n".join(l + b"  " for l in lines)))
        c.add(B, "URL-safe alphabet", arm(body=body.replace(b"+", b"-").replace(b"/", b"_")))
        # The blob is 1 byte past a multiple of 3: "==" ends the text.
        self.assertTrue(body.endswith(b"=="))
        c.add(B, "padding dropped", arm(body=body[:-2]), expect=False)
        c.add(B, "one '=' of two", arm(body=body[:-1]))
        c.add(B, "three '='", arm(body=body + b"="))
        c.add(B, "four more '='", arm(body=body + b"===="))
        c.add(B, "space between the two '='", arm(body=body[:-1] + b" ="))
        c.add(B, "newline between the two '='", arm(body=body[:-1] + b"\n="))
        c.add(B, "space before the padding", arm(body=body[:-2] + b" =="))
        c.add(B, "spaces after the padding", arm(body=body + b"   "))
        c.add(B, "base64 after the padding", arm(body=body + b"AAAA"))
        c.add(B, "padding in the middle", arm(body=body[:8] + b"==" + body[8:]))
        # The last digit before "==" carries 4 bits of data and 4 unused ones.
        alpha = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = alpha.index(body[-3])
        self.assertEqual(last & 15, 0)
        for k in range(1, 16):
            c.add(B, f"unused bits set ({k:04b})", arm(body=body[:-3] + alpha[last | k:(last | k) + 1]
                                                       + b"=="), expect=False if k == 1 else None)
        # One or no padding: a blob of another length (reserved is free).
        for n in (1, 2):
            b2 = make_blob(version, key, ns, b"x" * n, hash_alg, sigblob)
            t = base64.b64encode(b2)
            c.add(B, f"{2 - n} padding characters (reserved of {n})", armour(b2))
            c.add(B, f"{2 - n} padding characters, one more '='",
                  BEGIN + b"\n" + t + b"=\n" + END + b"\n")
            if t.endswith(b"="):
                c.add(B, f"{2 - n} padding characters, dropped",
                      BEGIN + b"\n" + t.rstrip(b"=") + b"\n" + END + b"\n")

        S = "structure"

        def blob_case(name, expect=None, **kw):
            parts = dict(version=version, key=key, ns=ns, reserved=reserved, hash_alg=hash_alg,
                         sig=sigblob)
            parts.update(kw)
            c.add(S, name, armour(make_blob(**parts)), expect=expect)

        blob_case("rebuilt unchanged", expect=True)
        for v in (0, 2, 0x100, 0x80000001, 0xFFFFFFFF):
            blob_case(f"version {v}", version=v.to_bytes(4, "big"),
                      expect={0: True, 2: False}.get(v))
        c.add(S, "magic SSHSIH", armour(b"SSHSIH" + blob[6:]))
        c.add(S, "magic lower-case", armour(b"sshsig" + blob[6:]))
        c.add(S, "truncated after the version", armour(blob[:10]))
        for cut in (1, 4, 40, len(blob) - 12):
            c.add(S, f"last {cut} bytes cut", armour(blob[:-cut]))
        for tail in (b"\0", b"\0\0\0\0", ssh_string(b"more")):
            c.add(S, f"{len(tail)} trailing bytes after the blob", armour(blob + tail),
                  expect=False)
        blob_case("reserved: 1 byte", reserved=b"x", expect=True)
        blob_case("reserved: NUL", reserved=b"\0")
        blob_case("reserved: 64 KiB", reserved=os.urandom(65536))
        blob_case("reserved: a whole second signature", reserved=blob)
        for alg in (b"sha256", b"SHA512", b"sha384", b"sha1", b"md5", b"", b"sha512\0",
                    b"sha512\0\0", b"\0sha512", b"sha51", b"sha5122", b"sha256,sha512", b"sha*",
                    b" sha512"):
            blob_case(f"hash {alg!r} (signed with sha512)", hash_alg=alg,
                      expect={b"sha512\0": True, b"sha256": False}.get(alg))
        for n in (b"file", b"", b"parallax-measurement-v", b"parallax-measurement-v12",
                  b"PARALLAX-MEASUREMENT-V1", NS.encode() + b"\0", NS.encode() + b"\0\0",
                  b"parallax\0measurement-v1", b"\0" + NS.encode()):
            blob_case(f"namespace {n!r}", ns=n,
                      expect={NS.encode() + b"\0": True, b"file": False}.get(n))
        raw_key = key[19:]
        for name, k in (("type with a trailing NUL", ssh_string(b"ssh-ed25519\0") + key[15:]),
                        ("type with two NULs", ssh_string(b"ssh-ed25519\0\0") + key[15:]),
                        ("type ssh-rsa", ssh_string(b"ssh-rsa") + key[15:]),
                        ("type ssh-ed25519-cert-v01@openssh.com",
                         ssh_string(b"ssh-ed25519-cert-v01@openssh.com") + key[15:]),
                        ("type sk-ssh-ed25519@openssh.com",
                         ssh_string(b"sk-ssh-ed25519@openssh.com") + key[15:]),
                        ("type upper-case", ssh_string(b"SSH-ED25519") + key[15:]),
                        ("31-byte key", ssh_string(b"ssh-ed25519") + ssh_string(raw_key[:31])),
                        ("33-byte key", ssh_string(b"ssh-ed25519") + ssh_string(raw_key + b"\0")),
                        ("trailing byte", key + b"\0"),
                        ("trailing empty string", key + ssh_string(b"")),
                        ("empty", b""),
                        ("type only", ssh_string(b"ssh-ed25519")),
                        ("another listed key", base64.b64decode(self.keys["other"].split()[1])),
                        ("an unlisted key", base64.b64decode(self.keys["stranger"].split()[1]))):
            blob_case(f"public key: {name}", key=k,
                      expect={"type with a trailing NUL": True, "trailing byte": False}.get(name))
        for name, s in (("type with a trailing NUL", ssh_string(b"ssh-ed25519\0") + sigblob[15:]),
                        ("type with two NULs", ssh_string(b"ssh-ed25519\0\0") + sigblob[15:]),
                        ("type ssh-rsa", ssh_string(b"ssh-rsa") + sigblob[15:]),
                        ("type rsa-sha2-512", ssh_string(b"rsa-sha2-512") + sigblob[15:]),
                        ("trailing byte", sigblob + b"\0"),
                        ("trailing empty string", sigblob + ssh_string(b"")),
                        ("63 bytes", ssh_string(b"ssh-ed25519") + ssh_string(raw_sig[:63])),
                        ("65 bytes", ssh_string(b"ssh-ed25519") + ssh_string(raw_sig + b"\0")),
                        ("32 bytes", ssh_string(b"ssh-ed25519") + ssh_string(raw_sig[:32])),
                        ("empty signature", ssh_string(b"ssh-ed25519") + ssh_string(b"")),
                        ("empty", b""),
                        ("the raw 64 bytes, no type", raw_sig)):
            blob_case(f"signature: {name}", sig=s,
                      expect={"type with a trailing NUL": True, "trailing byte": False}.get(name))
        # A real sha256 signature, and one relabelled sha512.
        sig256 = self.sign("agent", options=("-O", "hashalg=sha256"))
        _, f256 = split_blob(cl.sshsig_decode(sig256.decode()))
        self.assertEqual(f256[3], b"sha256")
        c.add(S, "made with sha256", sig256, expect=True)
        c.add(S, "made with sha256, labelled sha512",
              armour(make_blob(version, *f256[:3], b"sha512", f256[4])), expect=False)
        c.add(S, "made with sha256, labelled sha256 + NUL",
              armour(make_blob(version, *f256[:3], b"sha256\0", f256[4])))
        c.add(S, "version 0, reserved set, strings NUL-terminated, text after END",
              armour(make_blob(b"\0\0\0\0", ssh_string(b"ssh-ed25519\0") + key[15:], ns + b"\0",
                               b"unsigned", hash_alg + b"\0",
                               ssh_string(b"ssh-ed25519\0") + sigblob[15:]))[:-1] + b"tail\n",
              expect=True)

        E = "ed25519"
        R, s_int = raw_sig[:32], int.from_bytes(raw_sig[32:], "little")

        def sig_case(name, r=R, s=None, expect=None):
            s = raw_sig[32:] if s is None else s
            c.add(E, name, armour(make_blob(version, key, ns, reserved, hash_alg,
                                            ssh_string(b"ssh-ed25519") + ssh_string(r + s))),
                  expect=expect)

        for k in range(1, 16):
            if s_int + k * L < 2**256:
                sig_case(f"S + {k}L", s=(s_int + k * L).to_bytes(32, "little"),
                         expect=True if k == 1 and s_int + L < 2**253 else
                         (False if k == 2 else None))
        sig_case("S = 0", s=bytes(32))
        sig_case("S = L", s=L.to_bytes(32, "little"))
        sig_case("S = 2^253 - 1", s=(2**253 - 1).to_bytes(32, "little"))
        sig_case("S - 1", s=((s_int - 1) % L).to_bytes(32, "little"))
        sig_case("all zero", r=bytes(32), s=bytes(32))
        rnd = random.Random(10)
        for i in range(6):
            bit = rnd.randrange(256)
            sig_case(f"R bit {bit} flipped", r=bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b
                                                     for j, b in enumerate(R)))
            bit = rnd.randrange(256)
            sig_case(f"S bit {bit} flipped", s=bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b
                                                     for j, b in enumerate(raw_sig[32:])))
        sig_case("R and S swapped", r=raw_sig[32:], s=R)
        other = self.sign("other")
        c.add(E, "made by another listed key", other, principal="other", expect=True)
        c.add(E, "made by an unlisted key", self.sign("stranger"), expect=False)
        c.add(E, "another key swapped in", cl.sshsig_swap_key(sig.decode(), self.keys["other"])
              .encode(), principal="other", expect=False)
        c.add(E, "made in another namespace", self.sign("agent", namespace="file"))
        c.add(E, "made in the rotation namespace",
              self.sign("agent", namespace="parallax-key-rotation-v1"))
        c.add(E, "made over another message", self.sign("agent", message=CONTENT + b" "),
              expect=False)
        c.add(E, "the message with a newline added", sig, message=CONTENT + b"\n", expect=False)
        c.add(E, "the message with one byte changed", sig, message=CONTENT.replace(b"DE", b"DK"))
        c.add(E, "an empty message", sig, message=b"")

        W = "weak keys"
        wr = random.Random(11)
        for name, (raw, order) in WEAK_KEYS.items():
            wkey = ssh_string(b"ssh-ed25519") + ssh_string(raw)
            if order:
                s64 = small_order_signature(raw, order, CONTENT, wr)
                c.add(W, f"{name}: forged over the message",
                      armour(make_blob(version, wkey, ns, b"", b"sha512",
                                       ssh_string(b"ssh-ed25519") + ssh_string(s64))),
                      principal=f"weak-{name}", expect=True if name == "identity" else None)
            for rname, r64 in (("R = identity, S = 0", ENC(1) + bytes(32)),
                               ("R = identity with the sign bit, S = 0", ENC(1 | 1 << 255) + bytes(32)),
                               ("R = identity + p, S = 0", ENC(1 + P) + bytes(32)),
                               ("the agent's signature", raw_sig)):
                c.add(W, f"{name}: {rname}",
                      armour(make_blob(version, wkey, ns, b"", b"sha512",
                                       ssh_string(b"ssh-ed25519") + ssh_string(r64))),
                      principal=f"weak-{name}")

        # Fixed-seed random damage: to the armoured text, and to the blob
        # (re-armoured, so that it reaches the parser).
        rnd = random.Random(20240501)
        pool = b" \t\n\r\v\f=-\0AZaz09+/" + bytes([rnd.randrange(256) for _ in range(16)])
        for i in range(120):
            p = rnd.randrange(len(sig))
            t = bytearray(sig)
            t[p] ^= 1 << rnd.randrange(8)
            c.add("random: armour bit flips", f"bit flip at {p}", bytes(t))
        for i in range(60):
            p = rnd.randrange(len(sig) + 1)
            ins = bytes(rnd.choice(pool) for _ in range(rnd.randrange(1, 4)))
            c.add("random: armour insertions", f"{ins!r} inserted at {p}", sig[:p] + ins + sig[p:])
        for i in range(60):
            p, n = rnd.randrange(len(sig)), rnd.randrange(1, 4)
            c.add("random: armour deletions", f"{n} bytes deleted at {p}", sig[:p] + sig[p + n:])
        for i in range(80):
            t = bytearray(blob)
            p = rnd.randrange(len(t))
            if i % 4 == 3:
                t[p:p + 1] = b""
                what = f"byte {p} deleted"
            elif i % 4 == 2:
                t[p:p] = bytes([rnd.randrange(256)])
                what = f"byte inserted at {p}"
            else:
                t[p] ^= 1 << rnd.randrange(8)
                what = f"bit flip at byte {p}"
            c.add("random: blob damage", what, armour(bytes(t)))
        return c.cases

    # ---- the tests -----------------------------------------------------------

    def test_same_answer_as_ssh_keygen(self):
        cases = self.judge(self.build_corpus())
        table = collections.OrderedDict()
        for c in cases:
            row = table.setdefault(c["category"], collections.Counter())
            row["cases"] += 1
            row["both accept" if c["ssh"] and c["px"] else "both refuse" if not (c["ssh"] or c["px"])
                else "differ"] += 1
        print(f"\n{'category':28} {'cases':>6} {'both accept':>12} {'both refuse':>12} {'differ':>7}")
        for cat, row in table.items():
            print(f"{cat:28} {row['cases']:6} {row['both accept']:12} {row['both refuse']:12} "
                  f"{row['differ']:7}")
        total = collections.Counter()
        for row in table.values():
            total.update(row)
        print(f"{'total':28} {total['cases']:6} {total['both accept']:12} {total['both refuse']:12} "
              f"{total['differ']:7}")
        sys.stdout.flush()

        wrong = [f"{c['category']}: {c['name']}: ssh-keygen {'accepts' if c['ssh'] else 'refuses'} "
                 f"({c['ssh_says']}), parallax {'accepts' if c['px'] else 'refuses'} ({c['px_says']})"
                 for c in cases if c["ssh"] != c["px"]]
        self.assertEqual(wrong, [], "parallax and ssh-keygen disagree")
        pinned = [f"{c['category']}: {c['name']}: ssh-keygen {'accepts' if c['ssh'] else 'refuses'} "
                  f"({c['ssh_says']}); docs/signatures.md says it "
                  f"{'accepts' if c['expect'] else 'refuses'}"
                  for c in cases if c["expect"] is not None and c["expect"] != c["ssh"]]
        self.assertEqual(pinned, [], "ssh-keygen no longer behaves as documented")
        self.assertGreaterEqual(len(cases), 300)
        self.assertGreaterEqual(total["both accept"], 40, "too few accepted cases to mean much")

    def test_known_difference_other_key_types(self):
        """RSA, ECDSA and certificate signatures verify with ssh-keygen and
        are refused by parallax, which takes Ed25519 keys only."""
        cases = [dict(category="other key types", name=n, sig=s, principal=p, message=CONTENT)
                 for n, s, p in (("RSA", self.sign("rsa"), "rsa"),
                                 ("ECDSA", self.sign("ecdsa"), "ecdsa"),
                                 ("Ed25519 certificate",
                                  self.sign("agent-cert.pub"), "certified"))]
        for c in self.judge(cases):
            self.assertTrue(c["ssh"], f"{c['name']}: ssh-keygen refuses it: {c['ssh_says']}")
            self.assertFalse(c["px"], f"{c['name']}: parallax accepts it")
            self.assertIn("not an Ed25519 key", c["px_says"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
