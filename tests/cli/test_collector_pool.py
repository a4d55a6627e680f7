"""Chain completion (issue 11): a server that sends its leaf without the
intermediate is a misconfiguration, never interference. The collector
completes such chains from the intermediates it has seen in stored chains
(its pool), says so (completed_from_pool), re-analyses a measurement that
arrived before its intermediate was known, and keeps the pool across
restarts. The pool never acts as a root."""
import copy
import datetime
import json
import tempfile
import time

import collectorlib as cl
import pxtest

COMPARE = pxtest.load_schema("compare.schema.json")


class Pool(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-pool-")
        cls.base = json.loads(cl.measure_lines("www.example.test")[0])
        hs = cls.base["test_keys"]["tls_handshakes"][0]
        assert len(hs["peer_certificates"]) >= 2, "the test world's chain has its intermediate"
        cls.keys = [cl.SSHKey(cls.tmp, f"agent{i}") for i in range(6)]

    def variant(self, i, cc, asn, leaf_only=False, hours_ago=2):
        start = (datetime.datetime.utcnow().replace(microsecond=0)
                 - datetime.timedelta(hours=hours_ago))
        m = json.loads(cl.variant(self.base, i, start=start, cc=cc, asn=asn))
        if leaf_only:
            for h in m["test_keys"]["tls_handshakes"]:
                h["peer_certificates"] = h["peer_certificates"][:1]
        return cl.compact(m)

    def submit(self, c, key, content):
        (content, sig), = key.sign([content])
        st, doc = c.submit(cl.submit_body(content, sig))
        self.assertEqual(st, 200, doc)

    def group(self, c, cc):
        st, _, body = cl.get(c.api("/api/v1/compare", domain="www.example.test"), timeout=60)
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        cl.check(COMPARE, doc, "compare")
        return next(g for g in doc["vantages"] if g["probe_cc"] == cc)

    def wait_completed(self, c, cc, timeout=20):
        deadline = time.monotonic() + timeout * cl.SLOW
        while True:
            g = self.group(c, cc)
            rows = g["addresses"]
            if rows and all(r["verified"] and r["completed_from_pool"] for r in rows
                            if r["completed"]):
                return g
            if time.monotonic() > deadline:
                self.fail(f"{cc} never completed from the pool: {json.dumps(g)}")
            time.sleep(0.2)

    def test_leaf_without_intermediate(self):
        c = cl.Collector(self.tmp, extra=["--ca-file", pxtest.CA]).start()
        try:
            # First the node missing its intermediate: nothing in the pool yet.
            self.submit(c, self.keys[0], self.variant(0, "BR", "AS28573", leaf_only=True))
            g = self.group(c, "BR")
            self.assertFalse(any(r["verified"] for r in g["addresses"]), g)
            # Then everyone else, with the whole chain: the intermediate
            # joins the pool and BR's measurement is summarised again.
            for k, (cc, asn) in enumerate([("DE", "AS3320"), ("US", "AS7922"), ("FR", "AS3215")]):
                self.submit(c, self.keys[k + 1], self.variant(k + 1, cc, asn))
            g = self.wait_completed(c, "BR")
            self.assertEqual(g["verdict"], "consistent", g)
            for cc in ("DE", "US", "FR"):
                for r in self.group(c, cc)["addresses"]:
                    self.assertFalse(r["completed_from_pool"], r)
        finally:
            self.assertEqual(c.stop(), 0, c.log())
        # The pool survives a restart: a new leaf-only measurement is
        # completed at once.
        c.start()
        try:
            self.submit(c, self.keys[4], self.variant(9, "CL", "AS7418", leaf_only=True,
                                                      hours_ago=1))
            g = self.wait_completed(c, "CL", timeout=10)
            self.assertEqual(g["verdict"], "consistent", g)
            rows = c.database.sql("SELECT count(*) FROM intermediate_pool")
            self.assertGreaterEqual(int(rows[0][0]), 1)
        finally:
            self.assertEqual(c.stop(), 0, c.log())

    def test_pool_is_never_a_root(self):
        """A chain whose root the collector does not trust stays
        unverified, whatever intermediates the pool holds."""
        c = cl.Collector(tempfile.mkdtemp(dir=self.tmp), extra=["--ca-file", pxtest.CA]).start()
        try:
            for k, (cc, asn) in enumerate([("DE", "AS3320"), ("US", "AS7922")]):
                self.submit(c, self.keys[k], self.variant(20 + k, cc, asn))
            unknown = json.loads(cl.measure_lines("unknownroot.example.test")[0])
            m = json.loads(cl.variant(unknown, 30, cc="JP", asn="AS2516",
                                      start=datetime.datetime.utcnow().replace(microsecond=0)
                                      - datetime.timedelta(hours=1)))
            m["input"] = "www.example.test"  # compared with the others
            for h in m["test_keys"]["tls_handshakes"]:
                h["server_name"] = "www.example.test"
            self.submit(c, self.keys[3], cl.compact(m))
            g = self.group(c, "JP")
            self.assertFalse(any(r["verified"] or r["completed_from_pool"]
                                 for r in g["addresses"]), g)
        finally:
            self.assertEqual(c.stop(), 0, c.log())


if __name__ == "__main__":
    pxtest.main()
