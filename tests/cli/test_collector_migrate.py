"""`parallax-collector migrate` (issue 7): a SQLite collector database of
100,000 really signed measurements (tests/tools/gen_store.py; 10,000 in
the sanitizer build) plus four tampered rows, copied into PostgreSQL by a
migration that is killed with SIGKILL, then stopped with SIGTERM, then
run to the end, then run once more. Afterwards: the source file is
unchanged; every good measurement is in PostgreSQL exactly once with the
same bytes, signature, key and flags; the tampered rows were refused,
each named with its reason, and the exit status says so; a collector on
the SQLite file and one on PostgreSQL serve the same allowed_signers (the
rotated key's valid-before included), the same raw measurements, the same
compare answers and the same check-in control addresses. And bad usage
is refused with exit 2 and a one-line reason.

PostgreSQL only (registered as cli.test_collector_migrate.pg, without the
test peers)."""
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

import collectorlib as cl
import pxtest

sys.path.insert(0, os.path.join(pxtest.SOURCE, "tests", "tools"))
import gen_store  # noqa: E402

COUNT = 10000 if pxtest.SANITIZED else 100000


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Migrate(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-migrate-")
        cls.src = os.path.join(cls.tmp, "collector.sqlite")
        t = time.monotonic()
        cls.info = gen_store.generate(cl.COLLECTOR_BIN, cls.src, COUNT, tampered=True,
                                      days=gen_store.DAYS * COUNT / 100000)
        print(f"generated {cls.info['rows']} rows in {time.monotonic() - t:.1f} s",
              file=sys.stderr)
        cls.targets = os.path.join(cls.tmp, "targets")
        with open(cls.targets, "w") as f:
            f.write("".join(d + "\n" for d in cls.info["domains"][:6]))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def migrate(self, *args, env=None):
        return subprocess.Popen([cl.COLLECTOR_BIN, "migrate"] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)

    @staticmethod
    def answer(response):
        """(status, content type, body) of a (status, headers, body): the
        Date header differs between any two answers."""
        status, headers, body = response
        return status, headers.get("content-type"), body

    def collector(self, name, database):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        c = cl.Collector(d, database=database, extra=[
            "--ca-file", self.info["ca"], "--allow-nonpublic-addresses", "--targets", self.targets])
        self.addCleanup(c.stop)
        return c.start(timeout=60)

    def test_bad_usage(self):
        pg = cl.PG["PX_PG_URL"]
        missing = os.path.join(self.tmp, "nothing-here.sqlite")
        cases = [
            ([], "--from sqlite:PATH and --to"),
            (["--from", f"sqlite:{self.src}"], "both needed"),
            (["--from", self.src, "--to", pg], "is not sqlite:PATH"),
            (["--from", f"sqlite:{self.src}", "--to", "mysql://x@y/z"], "is not a postgresql:// URL"),
            (["--from", f"sqlite:{missing}", "--to", pg], "No such file or directory"),
            (["--from", f"sqlite:{self.src}", "--to", pg, "--batch", "0"], "--batch"),
            (["--from", f"sqlite:{self.src}", "--to", pg, "--frobnicate"], "unknown option"),
            (["--from", f"sqlite:{self.src}", "--to", pg, "extra"], "unexpected argument"),
        ]
        for args, why in cases:
            p = subprocess.run([cl.COLLECTOR_BIN, "migrate"] + args, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, (args, p.stderr))
            self.assertIn(why, p.stderr, args)
            self.assertEqual(p.stdout, "", args)
        # A database that does not answer: a runtime failure, not usage.
        port = cl.free_port()
        p = subprocess.run([cl.COLLECTOR_BIN, "migrate", "--from", f"sqlite:{self.src}", "--to",
                            f"postgresql://nobody@127.0.0.1:{port}/none"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("cannot connect", p.stderr)
        p = subprocess.run([cl.COLLECTOR_BIN, "migrate", "--help"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0)
        for flag in ("--from", "--to", "--batch"):
            self.assertIn(flag, p.stdout)

    def test_the_log_is_carried(self):
        """A SQLite collector's measurement log (docs/transparency.md) moves
        to PostgreSQL in its order: migrate checks the root, and a
        researcher's head saved from the SQLite collector is extended by
        the PostgreSQL one (same key, same leaves), every measurement
        served as logged."""
        d = os.path.join(self.tmp, "logged")
        os.makedirs(d)
        src = os.path.join(d, "collector.sqlite")
        gen_store.generate(cl.COLLECTOR_BIN, src, 60, days=1)
        saved = os.path.join(d, "sth.json")
        sq = self.collector("logged-sqlite", cl.Database(d, store="sqlite", path=src))
        self.assertIn("60 stored measurement(s) added to the log", sq.log())
        p = pxtest.run(["audit", "--collector", sq.url, "--since-sth", saved, "--measurements"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("60 leaves replayed", p.stdout)
        sq.stop()
        pg_db = cl.Database(d, store="postgresql")
        p = self.migrate("--from", f"sqlite:{src}", "--to", pg_db.url)
        out, err = p.communicate(timeout=300 * cl.SLOW)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn("log: carried in order: the destination's first 60 leaves make the "
                      "source's root", out)
        self.assertIn("log: 1 signed tree head(s) kept by the destination too", out)
        pg = self.collector("logged-pg", pg_db)
        pg.stop()
        pg.extra += ["--sth-key", os.path.join(d, "sth-key")]  # the SQLite collector's key
        pg.start(timeout=60)
        # The head the researcher saved is served again, as it was signed.
        with open(saved) as f:
            head = json.load(f)
        st, _, raw = cl.get(pg.api("/api/v1/log/sth", tree_size=60))
        self.assertEqual((st, json.loads(raw)), (200, head))
        p = pxtest.run(["audit", "--collector", pg.url, "--since-sth", saved, "--measurements"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("it extends the saved head of size 60", p.stdout)

    def test_migrate_interrupted_and_resumed(self):
        t_start = time.monotonic()
        info = self.info
        source_sha = file_sha256(self.src)
        pg_db = cl.Database(self.tmp, store="postgresql")
        # A collector already on the destination analyses as rows arrive.
        pg = self.collector("pg-side", pg_db)
        args = ["--from", f"sqlite:{self.src}", "--to", pg_db.url]

        def last_id():
            rows = pg_db.sql("SELECT coalesce(max(last_id), 0) FROM migrations")
            return int(rows[0][0]) if rows else 0

        def run_until(fraction, sig):
            p = self.migrate(*args)
            deadline = time.monotonic() + 400 * cl.SLOW
            while last_id() < info["rows"] * fraction:
                if p.poll() is not None:  # (a message argument would be evaluated: wait)
                    self.fail(f"migrate ended first, exit {p.returncode}: {p.communicate()}")
                self.assertLess(time.monotonic(), deadline, "migration too slow")
                time.sleep(0.1)
            p.send_signal(sig)
            out, err = p.communicate(timeout=60 * cl.SLOW)
            return p.returncode, out, err

        def no_duplicates():
            n, distinct = pg_db.sql("SELECT count(*), count(DISTINCT uid) FROM measurements")[0]
            self.assertEqual(n, distinct)
            return int(n)

        # 1: killed outright, somewhere in the first third.
        rc, _, err = run_until(0.25, signal.SIGKILL)
        self.assertEqual(rc, -9, err)
        # (Progress lines come every 2 s: a small store may be killed
        # before the first; the last run's summary has the rate.)
        first = no_duplicates()
        self.assertGreater(first, 0)
        self.assertLess(first, COUNT)
        # 2: stopped politely later on: the batch in flight commits.
        rc, _, err = run_until(0.6, signal.SIGTERM)
        self.assertEqual(rc, 1, err)
        self.assertIn("resuming after source id", err)
        self.assertIn("run the same command again to continue", err)
        second = no_duplicates()
        self.assertGreater(second, first)
        # 3: to the end. Refused rows make the exit status 1.
        p = self.migrate(*args)
        out, err = p.communicate(timeout=300 * cl.SLOW)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("resuming after source id", err)
        self.assertIn("rows/s", err)
        self.assertIn(f"holds {COUNT} of these measurements and {len(info['keys'])} of these keys "
                      "unchanged", out)
        self.assertIn("refused: 4", out)
        self.assertIn("counts: agree", out)
        self.assertIn("log: the source has none (written by an older collector, or loaded in "
                      "bulk)", out)
        reasons = {"signature": "bad signature", "signature-other-content": "bad signature",
                   "hash": "content hash mismatch", "key": "not by the recorded key"}
        for uid, what in info["tampered"].items():
            line = next((x for x in out.splitlines() if uid in x), "")
            self.assertIn(reasons[what], line, out)
        # 4: once more: nothing left to copy, the same verdict.
        p = self.migrate(*args)
        out2, err2 = p.communicate(timeout=300 * cl.SLOW)
        self.assertEqual(p.returncode, 1, err2)
        self.assertIn("this run: 0 rows", err2)
        self.assertEqual(out2, out)
        print(f"migrated (4 runs) in {time.monotonic() - t_start:.1f} s", file=sys.stderr)

        # ---- the source is untouched -----------------------------------
        self.assertEqual(file_sha256(self.src), source_sha)
        # The SQLite side's collector runs on a copy (its analysis writes).
        copy = os.path.join(self.tmp, "sqlite-side", "collector.sqlite")
        os.makedirs(os.path.dirname(copy))
        shutil.copyfile(self.src, copy)
        sq = self.collector("sqlite-side", cl.Database(self.tmp, store="sqlite", path=copy))

        # ---- every good measurement once, the same bytes ----------------
        self.assertEqual(no_duplicates(), COUNT)
        self.assertEqual(pg_db.integrity()[1], "ok")
        con = sqlite3.connect(f"file:{self.src}?mode=ro", uri=True)
        want = {}
        for uid, content, sig, key_id, received, geo, ucc in con.execute(
                "SELECT uid, content, signature, key_id, received_at, geo_mismatch, "
                "coalesce(uploader_cc, '') FROM measurements"):
            if uid not in info["tampered"]:
                want[uid] = (hashlib.md5(content).hexdigest(), hashlib.md5(sig.encode()).hexdigest(),
                             key_id, str(received), "t" if geo else "f", ucc)
        con.close()
        got = {r[0]: tuple(r[1:]) for r in pg_db.sql(
            "SELECT uid, md5(content), md5(signature), key_id, received_at, geo_mismatch, "
            "coalesce(uploader_cc, '') FROM measurements")}
        self.assertEqual(len(want), COUNT)
        self.assertEqual(set(got), set(want))
        self.assertEqual([u for u in want if got[u] != want[u]], [])
        self.assertTrue(any(v[4] == "t" for v in want.values()))
        for uid in sorted(want)[::COUNT // 20]:
            self.assertEqual(self.answer(sq.raw(uid)), self.answer(pg.raw(uid)))
            self.assertEqual(self.answer(sq.signature(uid)), self.answer(pg.signature(uid)))
        for uid in info["tampered"]:
            self.assertEqual(pg.raw(uid)[0], 404)

        # ---- the keys: allowed_signers the same, rotation included -----
        signers = pg.allowed_signers()
        self.assertEqual(signers, sq.allowed_signers())
        rotated = [x for x in signers.splitlines() if x.startswith(info["rotated_key"] + " ")]
        self.assertEqual(len(rotated), 1)
        self.assertIn("valid-before=", rotated[0])

        # ---- the analysis: the same compare and control addresses -----
        window = {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["since"])),
                  "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["until"] + 60))}

        def compare(c, domain, **extra):
            deadline = time.monotonic() + 300 * cl.SLOW
            while True:
                st, _, raw = cl.get(c.api("/api/v1/compare", domain=domain, **window, **extra),
                                    timeout=60)
                self.assertEqual(st, 200, raw)
                doc = json.loads(raw)
                if doc["analysis_complete"]:
                    return doc
                self.assertLess(time.monotonic(), deadline, "analysis too slow")

        def seen(doc):
            return sum(g["observed"]["measurements"] for g in doc["vantages"])

        for domain in (info["domains"][0], info["domains"][1], info["domains"][5]):
            a, b = compare(sq, domain, latest="1"), compare(pg, domain, latest="1")
            self.assertEqual(a, b)
            self.assertGreaterEqual(len(a["vantages"]), len(gen_store.VANTAGES), a)
            a, b = compare(sq, domain), compare(pg, domain)
            if domain != info["domains"][1]:
                self.assertEqual(a, b)
                continue
            # The tampered rows (all of this domain, days old) are still in
            # the SQLite file, whose own analysis counts them over the
            # window; the migration refused them, so PostgreSQL does not.
            self.assertEqual(seen(a) - seen(b), len(info["tampered"]), (a, b))
            self.assertEqual([g["verdict"] for g in a["vantages"]],
                             [g["verdict"] for g in b["vantages"]])

        # The node that drained the migrated backlog vacuumed the queue
        # itself (every 20,000 deletions), not leaving its dead entries to
        # slow every catch-up check until autovacuum comes by.
        if COUNT >= 40000:
            deadline = time.monotonic() + 30
            while True:
                n = int(pg_db.sql("SELECT coalesce(sum(vacuum_count), 0) FROM pg_stat_user_tables "
                                  f"WHERE relname = 'analysis_queue' AND schemaname = "
                                  f"'{pg_db.schema}'")[0][0])
                if n >= 1:
                    break
                self.assertLess(time.monotonic(), deadline, "the analysis queue was never "
                                "vacuumed by the collector")
                time.sleep(0.5)

        def checkin(c):
            st, _, raw = cl.post(c.url + "/api/v1/check-in",
                                 {"software_name": "parallax", "software_version": "test",
                                  "probe_cc": "DE", "probe_asn": "AS3320"})
            self.assertEqual(st, 200, raw)
            return json.loads(raw)["targets"]

        targets = checkin(pg)
        self.assertEqual(targets, checkin(sq))
        self.assertTrue(all(t["control_addresses"] for t in targets), targets)
        self.assertEqual(pg.stop(), 0, pg.log())
        self.assertEqual(sq.stop(), 0, sq.log())
        print(f"whole test {time.monotonic() - t_start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    cl.require_store()
    if cl.STORE != "postgresql" or cl.PG.get("PX_PG_READY") != "1":
        print("SKIPPED: needs the PostgreSQL test cluster (cli.test_collector_migrate.pg)",
              file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
