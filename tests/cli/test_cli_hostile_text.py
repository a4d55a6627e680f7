"""Hostile text never reaches the volunteer's terminal raw. A real
`openssl s_server` on 127.0.0.1 presents a self-signed certificate whose
subject (so also its issuer) holds ESC, CR, U+202E (right-to-left
override) and U+009B (the C1 CSI): it is measured by `parallax measure
--summary`, and it poses as an HTTPS collector, so libcurl's error quotes
its subject's CN. The measurement, signed with ssh-keygen, goes to a real
collector, and `parallax compare` prints its issuer. What each command
prints for people must hold no raw control byte, no C1 control and no
bidi control, and must show them as the escapes common/termsafe.h
documents; --json stays the collector's document byte for byte."""
import datetime
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import collectorlib as cl
import pxtest

DOMAIN = "hostile.example.test"
CN = "evil\x1b[31m\u202e\u009bname"
ORG = "Evil\x1b[2J\r\u202eCorp\u009b"
BIDI = {0x061C, 0x200E, 0x200F, 0x2028, 0x2029} | set(range(0x202A, 0x202F)) | \
    set(range(0x2066, 0x206A))


def escape_pieces(data):
    """The documented rendering of bytes, written independently of the C
    code: one piece per input character or stray byte."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out, i = [], 0
    while i < len(data):
        c = data[i]
        if c == 0x5C:
            out.append("\\\\")
            i += 1
            continue
        if c < 0x20 or c == 0x7F:
            out.append(f"\\x{c:02x}")
            i += 1
            continue
        if c < 0x80:
            out.append(chr(c))
            i += 1
            continue
        size = 2 if 0xC0 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF8 else 0
        try:
            ch = data[i:i + size].decode("utf-8") if size else ""
        except UnicodeDecodeError:
            ch = ""
        if len(ch) != 1:
            out.append(f"\\x{c:02x}")
            i += 1
            continue
        cp = ord(ch)
        out.append(f"\\u{cp:04x}" if 0x80 <= cp <= 0x9F or cp in BIDI else ch)
        i += size
    return out


def escape(data):
    return "".join(escape_pieces(data))


def escape_cut(data, limit):
    """The rendering cut to at most limit bytes, between pieces."""
    out, used = "", 0
    for piece in escape_pieces(data):
        n = len(piece.encode("utf-8"))
        if used + n > limit:
            break
        out, used = out + piece, used + n
    return out


class HostileServer:
    """openssl s_server -www with the hostile certificate, its own session
    so stop() ends it and nothing else."""

    def __init__(self, workdir, cert, key):
        for _ in range(5):
            self.port = cl.free_port()
            self.log = os.path.join(workdir, "s_server.out")
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", cert,
                     "-key", key, "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + 15 * cl.SLOW
            while self.proc.poll() is None and not cl.port_open(self.port):
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("openssl s_server does not listen")
                time.sleep(0.02)
            if self.proc.poll() is None:
                return
        raise AssertionError("openssl s_server cannot listen: " + open(self.log).read()[-500:])

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None


class HostileText(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-hostile-")
        cls.cert = os.path.join(cls.tmp, "hostile.pem")
        key = os.path.join(cls.tmp, "hostile.key")
        # No subjectAltName: libcurl then compares (and quotes) the CN.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cls.cert,
                        "-days", "2", "-utf8", "-subj", f"/CN={CN}/O={ORG}"],
                       check=True, capture_output=True)
        cls.server = HostileServer(cls.tmp, cls.cert, key)
        cls.collector = None
        try:
            cls.state = os.path.join(cls.tmp, "state")
            # The hostile server is the target and, through --collector,
            # where the measurement is uploaded to.
            cls.measure = pxtest.run(
                ["measure", "--no-system-resolver", "--address", "127.0.0.1", "--port",
                 str(cls.server.port), "--ca-file", cls.cert, "--timeout", "5000", "--summary",
                 "--state-dir", cls.state, "--collector", f"https://127.0.0.1:{cls.server.port}",
                 "--collector-ca", cls.cert, DOMAIN])
            cls.collector = cl.Collector(cls.tmp).start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.collector is not None:
            cls.collector.stop()
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_terminal_clean(self, data, what):
        """data (bytes) is valid UTF-8 without raw controls other than
        newline and tab, without C1 controls and without bidi controls."""
        text = data.decode("utf-8")  # raises on invalid UTF-8
        for pos, ch in enumerate(text):
            o = ord(ch)
            if (o < 0x20 and ch not in "\n\t") or o == 0x7F or 0x80 <= o <= 0x9F or o in BIDI:
                self.fail(f"{what}: raw U+{o:04X} at {pos}: {text[max(0, pos - 60):pos + 20]!r}")
        return text

    def measurement(self):
        self.assertEqual(self.measure.returncode, 0, self.measure.stderr)
        [line] = self.measure.stdout.splitlines()
        return line, json.loads(line)

    # ---- parallax measure --summary ----------------------------------------

    def test_measure_summary_and_upload_log(self):
        line, m = self.measurement()
        # The hostile bytes did reach the agent: the JSON has them, escaped
        # the JSON way (the ESC as \1B by OpenSSL's RFC 4514 rendering).
        [h] = m["test_keys"]["tls_handshakes"]
        subject = h["peer_certificates"][0]["subject"]
        self.assertIn("\u202e", subject)
        self.assertIn("\u009b", subject)
        self.assertEqual(h["peer_certificates"][0]["issuer"], subject)
        p = subprocess.run([pxtest.BIN, "measure", "--no-system-resolver", "--address", "127.0.0.1",
                            "--port", str(self.server.port), "--ca-file", self.cert, "--summary",
                            DOMAIN], capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"\xe2\x80\xae", p.stdout)  # JSON output: the raw UTF-8, as before
        err = self.assert_terminal_clean(p.stderr, "measure --summary")
        self.assertRegex(err, rf"\n{DOMAIN}  +1  +0  ssl_invalid_hostname\n")
        # The upload's failure quotes the certificate's CN (libcurl).
        err = self.assert_terminal_clean(self.measure.stderr.encode(), "measure --collector")
        self.assertIn(f"'{escape(CN)}'", err)
        self.assertIn("evil\\x1b[31m\\u202e\\u009bname", err)

    # ---- parallax status -----------------------------------------------------

    def test_status(self):
        self.measurement()
        with open(os.path.join(self.state, "spool", "upload-state.json")) as f:
            stored = json.load(f)["last_error"]
        self.assertIn(CN, stored)  # kept raw, as libcurl said it
        # State files are JSON anyone with the directory could have edited.
        with open(os.path.join(self.state, "runs.jsonl"), "w") as f:
            f.write(json.dumps({"started": "2014-10-20T12:00:00Z\x1b[2K\r", "exit_code": 0,
                                "targets": 1, "measured": 1, "held": 0, "bytes": 10,
                                "check_in": "collector\u202e\x08", "stopped_by": "x\x1b]0;t\x07"})
                    + "\n")
        with open(os.path.join(self.state, "consent"), "w") as f:
            json.dump({"consent_version": 1, "given_at": "today\x9b\u2066"}, f)
        p = subprocess.run([pxtest.BIN, "status", "--state-dir", self.state], capture_output=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = self.assert_terminal_clean(p.stdout, "status")
        self.assertIn(f"\nlast error: {escape(stored)} (", out)
        self.assertIn("\\u202e", out)
        self.assertIn("consent: given today\\u009b\\u2066 (text version 1)\n", out)
        self.assertIn("  2014-10-20T12:00:00Z\\x1b[2K\\x0d  exit 0  1/1 measured  0 held  "
                      "10 bytes  check-in: collector\\u202e\\x08  stopped by x\\x1b]0;t\\x07\n", out)

    # ---- parallax compare ----------------------------------------------------

    def submitted(self):
        """Submits the measurement once (signed by ssh-keygen); the
        compare document's query, once the collector has analysed it."""
        line, m = self.measurement()
        if not getattr(type(self), "_submitted", False):
            key = cl.SSHKey(self.tmp, "openssh_key")
            [(content, sig)] = key.sign([line])
            st, doc = self.collector.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
            type(self)._submitted = True
        start = datetime.datetime.strptime(m["measurement_start_time"], "%Y-%m-%d %H:%M:%S")
        window = {"since": (start - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "until": (start + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}

        def analysed():
            st, _, body = cl.get(self.collector.api("/api/v1/compare", domain=DOMAIN, **window))
            doc = json.loads(body) if st == 200 else {}
            return (body, doc) if doc.get("vantages") and doc.get("analysis_complete") else None
        body, doc = cl.wait_until(analysed, 30, "the collector's analysis")
        return window, body, doc

    def compare(self, *args):
        return subprocess.run([pxtest.BIN, "compare", *args], capture_output=True, timeout=120)

    def test_compare_table(self):
        window, _, doc = self.submitted()
        [g] = doc["vantages"]
        [a] = g["addresses"]
        self.assertIn("\u202e", a["issuer"])  # as the collector tells it
        p = self.compare("--collector", self.collector.url, "--domain", DOMAIN,
                         "--since", window["since"], "--until", window["until"])
        self.assertEqual(p.returncode, 0, p.stderr)
        out = self.assert_terminal_clean(p.stdout, "compare")
        issuer = escape_cut(a["issuer"], 36)
        self.assertIn("\\u202e", issuer)
        self.assertIn("\\u009b", issuer)
        n = g["vantage_count"]
        verdict = (f'{g["verdict"]} ({100 * g["confidence"]:.0f}% of {n} '
                   f'vantage{"" if n == 1 else "s"})')
        frm = ("dns+ctl" if a["resolved"] and a["control"] else "dns" if a["resolved"]
               else "control" if a["control"] else "-")
        row = (f'{escape(g["probe_cc"]):<3} {escape(g["probe_asn"]):<9} {a["address"]:<26} '
               f'{frm:<7} {a["leaf_sha256"][:16]:<17} {issuer:<36} '
               f'{"yes" if a["verified"] else "no":<5} {escape_cut(a["failure"] or "-", 24):<24} '
               f'{verdict}\n')
        self.assertIn("\n" + row, out)

    def test_compare_json_is_the_document(self):
        window, body, _ = self.submitted()
        p = self.compare("--collector", self.collector.url, "--domain", DOMAIN, "--json",
                         "--since", window["since"], "--until", window["until"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, body)
        self.assertIn("\u202e".encode(), p.stdout)

    def test_compare_error_quotes_the_certificate(self):
        p = self.compare("--collector", f"https://127.0.0.1:{self.server.port}", "--collector-ca",
                         self.cert, "--domain", DOMAIN)
        self.assertEqual(p.returncode, 1, p.stderr)
        err = self.assert_terminal_clean(p.stderr, "compare error")
        self.assertIn(f"parallax compare: SSL: certificate subject name '{escape(CN)}'", err)

    # ---- parallax verify -----------------------------------------------------

    def test_verify_export_claims(self):
        line, _ = self.measurement()
        key = cl.SSHKey(self.tmp, "verify_key")
        [(content, sig)] = key.sign([line])
        claimed = "SHA256:\x1b[2J\u202eforged\x9b"
        path = os.path.join(self.tmp, "export.jsonl")
        with open(path, "w") as f:
            f.write(json.dumps({"measurement_uid": "x", "key_id": claimed,
                                "content": content.decode(), "signature": sig}) + "\n")
        p = subprocess.run([pxtest.BIN, "verify", path], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        out = self.assert_terminal_clean(p.stdout, "verify")
        self.assertIn(f"{path}:1: FAILED: signed by {key.key_id}, but the line says "
                      f"{escape(claimed)}\n", out)

    # ---- flag and config errors -----------------------------------------------

    def test_flag_errors_quote_what_was_typed_escaped(self):
        # Values a script or a pasted line put on the command line, or a
        # config file someone else wrote, are quoted back escaped, by
        # every command that parses them.
        bad = "\x1b[31m\u202eevil\x9b"
        conf = os.path.join(self.tmp, "hostile.conf")
        with open(conf, "w") as f:
            f.write(f"max_targets = {bad}\n")
        cases = [
            (["measure", "--resolver", bad, "www.example.test"], "--resolver"),
            (["measure", "--address", bad, "www.example.test"], "--address"),
            (["measure", "--no-such" + bad], "unknown option"),
            (["run", "--max-targets", bad], "--max-targets"),
            (["run", "--config", conf], "hostile.conf:1: --max-targets"),
            (["upload", "--collector", bad], "--collector"),
            (["status", "--state-dir", self.state, "--zzz" + bad], "unknown option"),
            (["compare", "--collector", bad, "--domain", "x.test"], "--collector"),
            (["setup", "--probe-cc", bad], "--probe-cc"),
        ]
        for args, needle in cases:
            with self.subTest(args[0] + " " + needle):
                p = subprocess.run([pxtest.BIN] + args, capture_output=True, timeout=60,
                                   stdin=subprocess.DEVNULL)
                self.assertEqual(p.returncode, 2, p.stderr)
                err = self.assert_terminal_clean(p.stderr, " ".join(args[:2]))
                self.assertIn(needle, err)
                self.assertIn(escape(bad), err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
