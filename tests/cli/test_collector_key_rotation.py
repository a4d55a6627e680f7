"""Key rotation on the collector, with real keys and signatures made by
OpenSSH (`ssh-keygen -t ed25519`, `ssh-keygen -Y sign`): the statement
signed by both keys, the old key kept in allowed_signers with
valid-before, measurements it signed before the rotation still accepted
and still verifying with `ssh-keygen -Y verify -Overify-time=…` and with
`parallax verify`, measurements after it refused. Also: a database of the
previous schema version migrates."""
import datetime
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

import collectorlib as cl
import pxtest

NAMESPACE = "parallax-key-rotation-v1"
REQUEST = pxtest.load_schema("key-rotation-request.schema.json")
STATEMENT = pxtest.load_schema("key-rotation-statement.schema.json")
RESPONSE = pxtest.load_schema("key-rotation-response.schema.json")


def key_line(key):
    """The public key as the statement names it: no comment."""
    return " ".join(key.pub.split()[:2])


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def statement(old, new, rotated_at):
    doc = {"old_key": key_line(old), "new_key": key_line(new), "rotated_at": iso(rotated_at)}
    cl.check(STATEMENT, doc, "rotation statement")
    return cl.compact(doc)


def rotation_body(old, new, rotated_at, content=None, old_signer=None, new_signer=None,
                  namespace=NAMESPACE):
    content = content if content is not None else statement(old, new, rotated_at)
    (_, old_sig), = (old_signer or old).sign([content], namespace=namespace)
    (_, new_sig), = (new_signer or new).sign([content], namespace=namespace)
    return {"format": "json", "content": content, "old_signature": old_sig,
            "new_signature": new_sig}


def rotate(c, body, status=200):
    """POSTs a rotation (dict, checked against the request schema when a
    200 is expected, or raw bytes); returns the answer checked against the
    response or error schema."""
    if isinstance(body, dict):
        if status == 200:
            cl.check(REQUEST, body, "rotation request")
        body = json.dumps(body).encode()
    st, headers, raw = cl.post(c.url + "/api/v1/key_rotation", body,
                               headers={"Content-Type": "application/json"})
    if st != status:
        raise AssertionError(f"expected HTTP {status}, got {st}: {raw[:300]!r}")
    return cl.json_body(st, headers, raw, RESPONSE if st == 200 else cl.ERROR,
                        f"rotation answer (HTTP {st})")


def signer_entries(text):
    """{key id: options} of an allowed_signers text."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            principal, options = line.split()[:2]
            out[principal] = options
    return out


def ssh_verify_at(workdir, signers_text, key_id, content, signature, at=None):
    """`ssh-keygen -Y verify`, judged at `at` (YYYYMMDDHHMMSSZ) if given."""
    d = tempfile.mkdtemp(dir=workdir)
    try:
        a, s = os.path.join(d, "allowed_signers"), os.path.join(d, "m.json.sig")
        with open(a, "w") as f:
            f.write(signers_text)
        with open(s, "w") as f:
            f.write(signature)
        extra = [f"-Overify-time={at}"] if at else []
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", a, "-I", key_id,
                               "-n", cl.NAMESPACE, "-s", s] + extra,
                              input=content, capture_output=True, timeout=30)
    finally:
        shutil.rmtree(d)


def stamp_of(content):
    """measurement_start_time of content as OpenSSH wants a time."""
    mst = json.loads(content)["measurement_start_time"]
    return mst.replace("-", "").replace(" ", "").replace(":", "") + "Z"


class Rotation(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-rotation-")
        cls.base = json.loads(cl.measure_lines("www.example.test",
                                               extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        self.c = cl.Collector(self.dir)
        self.addCleanup(self._stop, self.c)
        self.c.start()
        self.old = cl.SSHKey(self.dir, "old_key")
        self.new = cl.SSHKey(self.dir, "new_key")

    def _stop(self, c):
        rc = c.stop()
        self.assertEqual(rc, 0, "the collector did not stop cleanly on SIGTERM:\n" + c.log())

    def submit(self, key, content):
        (content, sig), = key.sign([content])
        return self.c.submit(cl.submit_body(content, sig))

    def now_variant(self, i, ahead=60):
        """A measurement that starts after now (so after any rotation)."""
        start = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        return cl.variant(self.base, i, start=start + datetime.timedelta(seconds=ahead))

    def test_rotation_end_to_end(self):
        before = [cl.variant(self.base, i) for i in range(2)]  # 2014: before any rotation
        for content in before:
            st, doc = self.submit(self.old, content)
            self.assertEqual((st, doc["key_id"]), (200, self.old.key_id), doc)

        rotated_at = int(time.time()) - 30
        body = rotation_body(self.old, self.new, rotated_at)
        doc = rotate(self.c, body)
        self.assertEqual(doc, {"old_key_id": self.old.key_id, "new_key_id": self.new.key_id,
                               "valid_before": iso(rotated_at)})
        # The same statement again (a retry): the same answer.
        self.assertEqual(rotate(self.c, body), doc)
        self.assertIn(f"key {self.old.key_id} rotated to {self.new.key_id}", self.c.log())

        signers = self.c.allowed_signers()
        entries = signer_entries(signers)
        vb = datetime.datetime.fromtimestamp(rotated_at, datetime.timezone.utc).strftime(
            "%Y%m%d%H%M%SZ")
        self.assertEqual(entries[self.old.key_id],
                         f'namespaces="parallax-measurement-v1",valid-before="{vb}"')
        self.assertEqual(entries[self.new.key_id], 'namespaces="parallax-measurement-v1"')
        self.assertIn(f'{self.new.key_id} namespaces="parallax-measurement-v1" {key_line(self.new)}',
                      signers)

        # Signed before the rotation, uploaded after it (a spool drained
        # late): accepted.
        late = cl.variant(self.base, 5)
        st, doc = self.submit(self.old, late)
        self.assertEqual(st, 200, doc)
        # Started after the rotation, signed with the old key: refused.
        after = self.now_variant(6)
        st, doc = self.submit(self.old, after)
        self.assertEqual((st, doc["error"]), (400, "key_rotated"), doc)
        self.assertIn(self.old.key_id, doc["detail"])
        # One second before valid_before is fine, valid_before itself not.
        edge = json.loads(cl.variant(self.base, 7))
        for delta, status in ((-1, 200), (0, 400)):
            edge["measurement_start_time"] = datetime.datetime.fromtimestamp(
                rotated_at + delta, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            st, doc = self.submit(self.old, cl.compact(edge))
            self.assertEqual(st, status, (delta, doc))
        # The new key signs it.
        st, doc = self.submit(self.new, after)
        self.assertEqual((st, doc["key_id"]), (200, self.new.key_id), doc)
        m = self.c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_rejected_total",
                            (("reason", "key_rotated"),))], 2)
        self.assertEqual(m[("parallax_collector_key_rotations_total", ())], 2)

        # Everything stored verifies with OpenSSH at its own time; the old
        # key's measurements need -Overify-time once the key has a
        # valid-before, and nothing verifies after it.
        lines, raw = self.c.export()
        self.assertEqual(len(lines), 5)
        signers = self.c.allowed_signers()
        for line in lines:
            content = line["content"].encode()
            p = ssh_verify_at(self.dir, signers, line["key_id"], content, line["signature"],
                              stamp_of(content))
            self.assertEqual(p.returncode, 0, p.stderr)
            if line["key_id"] == self.old.key_id:
                p = ssh_verify_at(self.dir, signers, line["key_id"], content, line["signature"])
                self.assertNotEqual(p.returncode, 0, "valid-before was not honoured")
        (content, sig), = self.old.sign([after])
        p = ssh_verify_at(self.dir, signers, self.old.key_id, content, sig, stamp_of(content))
        self.assertNotEqual(p.returncode, 0)

        # parallax verify judges each measurement at its own time too.
        sig_file = os.path.join(self.dir, "allowed_signers")
        with open(sig_file, "w") as f:
            f.write(signers)
        export = os.path.join(self.dir, "export.jsonl")
        with open(export, "wb") as f:
            f.write(raw)
        p = pxtest.run(["verify", "--allowed-signers", sig_file, export])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("5 verified, 0 failed", p.stdout)
        # A valid-before earlier than the 2014 measurements: those fail.
        with open(sig_file, "w") as f:
            f.write(signers.replace(f'valid-before="{vb}"', 'valid-before="20141020120100Z"'))
        p = pxtest.run(["verify", "--allowed-signers", sig_file, export])
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("2 verified, 3 failed", p.stdout)

    def test_rotated_at_is_clamped_and_the_earliest_kept(self):
        t0 = int(time.time())
        doc = rotate(self.c, rotation_body(self.old, self.new, t0 + 120))  # clock a bit ahead
        vb = datetime.datetime.strptime(doc["valid_before"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        self.assertTrue(t0 <= vb <= time.time() + 1, (t0, doc))
        earlier = rotate(self.c, rotation_body(self.old, self.new, t0 - 3600))
        self.assertEqual(earlier["valid_before"], iso(t0 - 3600))
        again = rotate(self.c, rotation_body(self.old, self.new, t0 - 60))
        self.assertEqual(again["valid_before"], iso(t0 - 3600))
        # Too far ahead: refused, nothing changes.
        err = rotate(self.c, rotation_body(self.old, self.new, t0 + 3600), 400)
        self.assertEqual(err["error"], "malformed_request")
        self.assertIn("future", err["detail"])

    def test_a_retired_key_cannot_come_back(self):
        third = cl.SSHKey(self.dir, "third_key")
        t = int(time.time()) - 100
        rotate(self.c, rotation_body(self.old, self.new, t))
        err = rotate(self.c, rotation_body(self.new, self.old, t + 50), 400)
        self.assertEqual(err["error"], "key_rotated")
        # A chain is fine, and repeating its first link changes nothing.
        rotate(self.c, rotation_body(self.new, third, t + 50))
        self.assertEqual(rotate(self.c, rotation_body(self.old, self.new, t))["valid_before"], iso(t))
        entries = signer_entries(self.c.allowed_signers())
        self.assertIn("valid-before", entries[self.old.key_id])
        self.assertIn("valid-before", entries[self.new.key_id])
        self.assertNotIn("valid-before", entries[third.key_id])

    def test_refusals_change_nothing(self):
        stranger = cl.SSHKey(self.dir, "stranger")
        t = int(time.time()) - 10
        good = rotation_body(self.old, self.new, t)
        content = good["content"]
        cases = [
            # (name, body, status, error)
            ("old signature by another key",
             rotation_body(self.old, self.new, t, old_signer=stranger), 400, "bad_signature"),
            ("new signature by another key",
             rotation_body(self.old, self.new, t, new_signer=stranger), 400, "bad_signature"),
            ("signatures swapped",
             dict(good, old_signature=good["new_signature"], new_signature=good["old_signature"]),
             400, "bad_signature"),
            ("measurement namespace",
             rotation_body(self.old, self.new, t, namespace=cl.NAMESPACE), 400, "bad_signature"),
            ("signature of other bytes",
             dict(good, content=content + " "), 400, "bad_signature"),
            ("not a signature", dict(good, old_signature="hello"), 400, "bad_signature"),
            ("same key twice", rotation_body(self.old, self.old, t), 400, "malformed_request"),
            ("key with a comment",
             rotation_body(self.old, self.new, t, content=content.replace(
                 key_line(self.new), key_line(self.new) + " me@example")), 400,
             "malformed_request"),
            ("statement with more",
             rotation_body(self.old, self.new, t, content=content[:-1] + ',"why":"lost"}'), 400,
             "malformed_request"),
            ("statement not JSON",
             rotation_body(self.old, self.new, t, content="rotate please"), 400,
             "malformed_request"),
            ("time without Z",
             rotation_body(self.old, self.new, t, content=content.replace("Z\"", "\"")), 400,
             "malformed_request"),
            ("before 2000", rotation_body(self.old, self.new, 0), 400, "malformed_request"),
            ("unknown member", dict(good, comment="x"), 400, "malformed_request"),
            ("missing member", {k: v for k, v in good.items() if k != "new_signature"}, 400,
             "malformed_request"),
            ("other format", dict(good, format="text"), 400, "malformed_request"),
            ("not JSON", b"{", 400, "malformed_request"),
            ("duplicate member",
             json.dumps(good)[:-1].encode() + b', "format": "json"}', 400, "malformed_request"),
            ("too large", dict(good, content=content + " " * 20000), 413, "too_large"),
        ]
        signers_before = self.c.allowed_signers()
        for name, body, status, code in cases:
            with self.subTest(name):
                err = rotate(self.c, body, status)
                self.assertEqual(err["error"], code, err)
                self.assertTrue(err["detail"])
                self.assertEqual(self.c.allowed_signers(), signers_before)
        self.assertEqual(self.c.healthz(), (200, {"status": "ok"}))
        # And the good one still goes through afterwards.
        self.assertEqual(rotate(self.c, good)["valid_before"], iso(t))


class Migration(pxtest.TestCase):
    """A database written by the previous collector (schema version 2) opens
    and migrates: every old row stays, unflagged, and rotation works on it."""

    # Migrations 1 and 2 as they shipped (collector/store/store_sqlite.c never
    # edits a shipped migration).
    V2 = """
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    CREATE TABLE keys (key_id TEXT PRIMARY KEY, public_key TEXT NOT NULL,
      first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);
    CREATE TABLE measurements (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE,
      content_sha256 BLOB NOT NULL UNIQUE, content BLOB NOT NULL, signature TEXT NOT NULL,
      key_id TEXT NOT NULL REFERENCES keys(key_id), probe_cc TEXT NOT NULL,
      probe_asn TEXT NOT NULL, test_name TEXT NOT NULL, input TEXT NOT NULL,
      domain TEXT NOT NULL, measurement_start_time INTEGER NOT NULL,
      received_at INTEGER NOT NULL);
    CREATE INDEX measurements_time ON measurements(measurement_start_time, id);
    CREATE INDEX measurements_cc ON measurements(probe_cc, measurement_start_time, id);
    CREATE INDEX measurements_asn ON measurements(probe_asn, measurement_start_time, id);
    CREATE INDEX measurements_domain ON measurements(domain, measurement_start_time, id);
    CREATE INDEX measurements_key ON measurements(key_id, measurement_start_time, id);
    CREATE TABLE summaries (measurement_id INTEGER PRIMARY KEY REFERENCES measurements(id),
      uid TEXT NOT NULL, key_id TEXT NOT NULL, probe_cc TEXT NOT NULL,
      probe_asn TEXT NOT NULL, domain TEXT NOT NULL,
      measurement_start_time INTEGER NOT NULL, summary TEXT NOT NULL);
    CREATE INDEX summaries_domain ON summaries(domain, measurement_start_time);
    CREATE TABLE analysis_state (id INTEGER PRIMARY KEY CHECK (id = 1), last_id INTEGER NOT NULL);
    INSERT INTO analysis_state VALUES (1, 0);
    INSERT INTO schema_version VALUES (1);
    INSERT INTO schema_version VALUES (2);
    """

    def test_version_2_database_migrates(self):
        if cl.STORE != "sqlite":
            self.skipTest("a database of the SQLite store's schema version 2")
        tmp = tempfile.mkdtemp(prefix="px-collector-migrate-")
        self.addCleanup(shutil.rmtree, tmp, True)
        base = json.loads(cl.measure_lines("www.example.test",
                                           extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0])
        key, successor = cl.SSHKey(tmp, "old_agent"), cl.SSHKey(tmp, "new_agent")
        content = cl.variant(base, 7, cc="DE", asn="AS3320")
        (blob, sig), = key.sign([content])
        path = os.path.join(tmp, "collector.sqlite")
        db = sqlite3.connect(path)
        db.executescript(self.V2)
        when = 1413806400
        db.execute("INSERT INTO keys VALUES (?, ?, ?, ?)", (key.key_id, key_line(key), when, when))
        m = json.loads(content)
        t = int(datetime.datetime.strptime(m["measurement_start_time"], "%Y-%m-%d %H:%M:%S")
                .replace(tzinfo=datetime.timezone.utc).timestamp())
        db.execute("INSERT INTO measurements (uid, content_sha256, content, signature, key_id, "
                   "probe_cc, probe_asn, test_name, input, domain, measurement_start_time, "
                   "received_at) VALUES (?, ?, ?, ?, ?, 'DE', 'AS3320', ?, ?, ?, ?, ?)",
                   ("20141020120707_DE_tlscertconsistency_0123456789abcdef",
                    hashlib.sha256(blob).digest(), blob, sig, key.key_id, m["test_name"],
                    m["input"], m["input"].split(":")[0], t, when))
        db.commit()
        db.close()

        c = cl.Collector(tmp).start()
        try:
            results = c.list_all()
            self.assertEqual(len(results), 1)
            self.assertIs(results[0]["geo_mismatch"], False)
            self.assertEqual(signer_entries(c.allowed_signers()),
                             {key.key_id: 'namespaces="parallax-measurement-v1"'})
            # The same bytes again: a duplicate of the old row.
            st, doc = c.submit(cl.submit_body(blob, sig))
            self.assertEqual((st, doc["duplicate"]), (200, True))
            rotated_at = int(time.time()) - 5
            rotate(c, rotation_body(key, successor, rotated_at))
            entries = signer_entries(c.allowed_signers())
            self.assertIn("valid-before", entries[key.key_id])
            self.assertIn(successor.key_id, entries)
        finally:
            self.assertEqual(c.stop(), 0, c.log())
        db = sqlite3.connect(path)
        version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        mcols = {r[1] for r in db.execute("PRAGMA table_info(measurements)")}
        kcols = {r[1] for r in db.execute("PRAGMA table_info(keys)")}
        vb = db.execute("SELECT valid_before FROM keys WHERE key_id = ?", (key.key_id,)).fetchone()
        scols = {r[1] for r in db.execute("PRAGMA table_info(summaries)")}
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.close()
        self.assertGreaterEqual(version, 6)  # every migration since applied
        self.assertIn("claims_mismatch", scols)
        self.assertTrue({"quarantine", "analysis_version"} <= tables, tables)
        self.assertTrue({"geo_mismatch", "uploader_cc"} <= mcols, mcols)
        self.assertIn("valid_before", kcols)
        self.assertEqual(vb, (rotated_at,))


if __name__ == "__main__":
    pxtest.main()
