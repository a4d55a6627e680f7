"""A poison row must cost one measurement's analysis, never the collector.

The analysis runs in a worker process (collector/analysis/analysis_worker.c). Test
builds honour PX_TEST_ANALYSIS_CRASH / _STALL: the worker really crashes
(SIGSEGV) or hangs on a measurement holding the marker. Each such
measurement is quarantined with its reason (GET /api/v1/quarantine, the
listing's "analysis", /metrics), the collector keeps serving, and a
restart over the database comes up and does not analyse them again. Rows
written behind the collector's back (content that is no JSON, and the
original poison pill: control_addresses holding a number) are read
safely after a restart."""
import datetime
import hashlib
import json
import os
import subprocess
import tempfile
import time

import collectorlib as cl
import pxtest

CRASH = "px-poison-crash-7f3a"
STALL = "px-poison-stall-91c2"
QUARANTINE = pxtest.load_schema("quarantine.schema.json")
COMPARE = pxtest.load_schema("compare.schema.json")


def test_build():
    p = subprocess.run([cl.COLLECTOR_BIN, "--version"], capture_output=True, text=True)
    return "test build" in p.stdout


class Quarantine(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not test_build():
            raise AssertionError("parallax-collector was built without PX_TEST_HOOKS: "
                                 "these tests inject faults through them (make check builds "
                                 "with -DPX_TEST_HOOKS=ON)")
        cls.tmp = tempfile.mkdtemp(prefix="px-quarantine-")
        cls.base = json.loads(cl.measure_lines(
            "www.example.test", extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0])
        # One agent per vantage: a comparison counts each key's latest.
        cls.keys = [cl.SSHKey(cls.tmp, f"agent{i}") for i in range(6)]
        cls.key = cls.keys[0]

    def measurement(self, i, cc, asn, marker=None):
        start = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(hours=2)
        m = json.loads(cl.variant(self.base, i, start=start, cc=cc, asn=asn))
        if marker is not None:
            m["annotations"]["note"] = marker
        return cl.compact(m)

    def quarantine(self, c):
        st, _, body = cl.get(c.api("/api/v1/quarantine"))
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        cl.check(QUARANTINE, doc, "quarantine")
        return doc

    def compare(self, c):
        st, _, body = cl.get(c.api("/api/v1/compare", domain="www.example.test"), timeout=60)
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        cl.check(COMPARE, doc, "compare")
        return doc

    def analysis(self, c):
        return {r["measurement_uid"]: r["analysis"] for r in c.list_all()}

    def test_poison_rows_are_quarantined_and_survive_restarts(self):
        env = {"PX_TEST_ANALYSIS_CRASH": CRASH, "PX_TEST_ANALYSIS_STALL": STALL,
               "PX_TEST_ANALYSIS_TIMEOUT_MS": "1500"}
        c = cl.Collector(self.tmp, env=env).start()
        try:
            good = [self.measurement(i, cc, asn) for i, (cc, asn) in
                    enumerate([("DE", "AS3320"), ("US", "AS7922"), ("FR", "AS3215")])]
            crash = self.measurement(10, "CN", "AS4134", CRASH)
            stall = self.measurement(11, "IR", "AS58224", STALL)
            uids = {}
            order = [(0, good[0]), (3, crash), (1, good[1]), (4, stall), (2, good[2])]
            for k, content in order:
                (content, sig), = self.keys[k].sign([content])
                st, doc = c.submit(cl.submit_body(content, sig))
                self.assertEqual(st, 200, doc)
                uids[content.decode()] = doc["measurement_uid"]
            # The comparison waits for the analysis to cover everything
            # acknowledged: it gets there, past the crash and the stall.
            doc = self.compare(c)
            self.assertTrue(doc["analysis_complete"], doc)
            self.assertEqual(c.healthz()[0], 200)
            groups = {(g["probe_cc"], g["probe_asn"]) for g in doc["vantages"]}
            self.assertEqual(groups, {("DE", "AS3320"), ("US", "AS7922"), ("FR", "AS3215")})

            q = self.quarantine(c)
            self.assertEqual(q["metadata"]["total"], 2)
            reasons = {r["measurement_uid"]: r["reason"] for r in q["results"]}
            self.assertEqual(set(reasons), {uids[crash], uids[stall]})
            # The ASan build turns the SIGSEGV into its report and exit 1.
            self.assertRegex(reasons[uids[crash]],
                             r"killed by signal 11|exited with status [1-9]")
            self.assertIn("stalled", reasons[uids[stall]])
            status = self.analysis(c)
            self.assertEqual(status[uids[crash]], "quarantined")
            self.assertEqual(status[uids[stall]], "quarantined")
            for g in good:
                self.assertEqual(status[uids[g]], "analysed")
            metrics = c.metrics()
            self.assertEqual(metrics[("parallax_collector_analysis_quarantined", ())], 2)
            self.assertEqual(metrics[("parallax_collector_analysis_quarantined_total", ())], 2)
            # The quarantined measurements are still stored and served.
            self.assertEqual(c.raw(uids[crash])[2], crash.encode())
        finally:
            self.assertEqual(c.stop(), 0, c.log())

        # A restart over the poison rows comes up and leaves them alone.
        c.start()
        try:
            self.assertEqual(c.healthz()[0], 200)
            self.assertTrue(self.compare(c)["analysis_complete"])
            metrics = c.metrics()
            self.assertEqual(metrics[("parallax_collector_analysis_quarantined", ())], 2)
            self.assertEqual(metrics[("parallax_collector_analysis_quarantined_total", ())], 0)
            self.assertEqual(self.quarantine(c)["metadata"]["total"], 2)
        finally:
            self.assertEqual(c.stop(), 0, c.log())

        # Rows no collector would accept any more, written behind its back:
        # the first version's poison pill and content that is no JSON.
        pill = json.loads(self.measurement(20, "KZ", "AS9198"))
        pill["test_keys"]["control_addresses"] = [1]
        pill = cl.compact(pill)
        self.insert_raw(c.database, pill, "20991231000000_KZ_tlscertconsistency_pill")
        self.insert_raw(c.database, '{"test_keys": not json', "20991231000000_KZ_tlscertconsistency_junk")
        c.start()
        try:
            self.assertTrue(self.compare(c)["analysis_complete"])
            status = self.analysis(c)
            self.assertEqual(status["20991231000000_KZ_tlscertconsistency_pill"], "analysed")
            self.assertEqual(status["20991231000000_KZ_tlscertconsistency_junk"], "quarantined")
            reasons = {r["measurement_uid"]: r["reason"] for r in self.quarantine(c)["results"]}
            self.assertIn("cannot read", reasons["20991231000000_KZ_tlscertconsistency_junk"])
            self.assertEqual(c.healthz()[0], 200)
        finally:
            self.assertEqual(c.stop(), 0, c.log())

    def insert_raw(self, db, content, uid):
        """A row the way an old collector (or an intruder) could have
        written it, bypassing validation."""
        t = int(time.time()) - 3600
        sha = hashlib.sha256(content.encode()).hexdigest()
        content = content.replace("'", "''")  # an SQL literal
        key = self.key.key_id
        if not db.pg:
            db.sql("INSERT INTO measurements (uid, content_sha256, content, signature, key_id, "
                   "probe_cc, probe_asn, test_name, input, domain, measurement_start_time, "
                   f"received_at) VALUES ('{uid}', X'{sha}', CAST('{content}' AS BLOB), 'x', "
                   f"'{key}', 'KZ', 'AS9198', 'tls_cert_consistency', 'www.example.test', "
                   f"'www.example.test', {t}, {t})")
            return
        db.sql(f"SELECT px_ensure_month({t}); "
               "WITH m AS (INSERT INTO measurements (uid, content_sha256, content, signature, "
               "key_id, probe_cc, probe_asn, test_name, input, domain, measurement_start_time, "
               f"received_at) VALUES ('{uid}', decode('{sha}', 'hex'), "
               f"convert_to('{content}', 'UTF8'), 'x', '{key}', 'KZ', 'AS9198', "
               "'tls_cert_consistency', 'www.example.test', 'www.example.test', "
               f"{t}, {t}) RETURNING id, measurement_start_time), "
               "u AS (INSERT INTO measurement_uids SELECT "
               f"'{uid}', measurement_start_time, id FROM m) "
               "INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
               "SELECT measurement_start_time, id FROM m")


if __name__ == "__main__":
    pxtest.main()
