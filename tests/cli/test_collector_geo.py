"""Geolocation in the collector, end to end: small MaxMind DB files built by
libmaxmind-db-writer-perl (tests/tools/make-mmdb.pl), a real
parallax-collector with --geoip-db and --trusted-proxy, check-ins and
submissions "from" documentation addresses through X-Forwarded-For. The
client address is answered to its owner and reaches nothing else: not the
SQLite file (nor its WAL), not the log, not /metrics."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import collectorlib as cl
import pxtest

MAKE_MMDB = os.path.join(pxtest.SOURCE, "tests", "tools", "make-mmdb.pl")
CHECKIN_REQUEST = pxtest.load_schema("checkin-request.schema.json")
CHECKIN_RESPONSE = pxtest.load_schema("checkin-response.schema.json")

# What make-mmdb.pl writes.
CN = "203.0.113.7"
DE = "198.51.100.20"
US_REGISTERED = "192.0.2.5"
FR6 = "2001:db8::7"
UNKNOWN = "127.0.0.2"  # loopback: in no database, and not a trusted proxy


def require_writer():
    p = subprocess.run(["perl", "-MMaxMind::DB::Writer::Tree", "-e", "1"], capture_output=True)
    if p.returncode != 0:
        print("SKIPPED: MaxMind::DB::Writer::Tree is missing (apt-get install "
              "libmaxmind-db-writer-perl)", file=sys.stderr)
        sys.exit(77)


def make_mmdb(directory):
    subprocess.run(["perl", MAKE_MMDB, directory], check=True, capture_output=True, timeout=60)
    return {name: os.path.join(directory, f"{name}.mmdb")
            for name in ("country", "networks", "combined", "other")}


def raw_post(port, path, body, xff=None, source=None):
    """(status, parsed JSON) of a POST from source (an address on
    127.0.0.0/8) with an optional X-Forwarded-For."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0) if source else None)
    try:
        headers = {"Content-Type": "application/json"}
        if xff is not None:
            headers["X-Forwarded-For"] = xff
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


class Geo(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-geo-")
        cls.db = make_mmdb(cls.tmp)
        cls.base = json.loads(cl.measure_lines("www.example.test",
                                               extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0])
        cls.key = cl.SSHKey(cls.tmp, "geo_key")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)

    def collector(self, extra=None):
        if extra is None:
            extra = ["--geoip-db", self.db["country"], "--geoip-db", self.db["networks"],
                     "--trusted-proxy", "127.0.0.1/32"]
        c = cl.Collector(self.dir, extra=extra)
        self.addCleanup(self._stop, c)
        return c.start()

    def _stop(self, c):
        rc = c.stop()
        self.assertEqual(rc, 0, "the collector did not stop cleanly on SIGTERM:\n" + c.log())

    def checkin(self, c, body=None, xff=None, source=None, status=200):
        body = body if body is not None else {"software_name": "parallax",
                                              "software_version": "test"}
        if status == 200:
            cl.check(CHECKIN_REQUEST, body, "check-in request")
        st, doc = raw_post(c.port, "/api/v1/check-in", json.dumps(body).encode(), xff, source)
        self.assertEqual(st, status, doc)
        return cl.check(CHECKIN_RESPONSE if st == 200 else cl.ERROR, doc, "check-in answer")

    def submit(self, c, content, xff=None):
        (content, sig), = self.key.sign([content])
        body = cl.check(cl.SUBMIT_REQUEST, cl.submit_body(content, sig), "submit request")
        st, doc = raw_post(c.port, "/api/v1/submit_measurement", json.dumps(body).encode(), xff)
        return st, cl.check(cl.SUBMIT_RESPONSE if st == 200 else cl.ERROR, doc, "submit answer")

    # ---- check-in --------------------------------------------------------

    def test_checkin_answers_country_network_and_address(self):
        c = self.collector()
        cases = [
            (CN, "CN", "AS4134", "CHINANET"),
            (DE, "DE", "AS3320", "Deutsche Telekom AG"),
            # No country in the record, only the registered country.
            (US_REGISTERED, "US", "AS64500", "Réseau d'essai ✓"),
            (FR6, "FR", "AS3215", "Orange S.A."),
            (UNKNOWN, "ZZ", "AS0", None),
        ]
        for addr, cc, asn, name in cases:
            with self.subTest(addr=addr):
                doc = self.checkin(c, xff=addr)
                self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                                 (cc, asn, name))
                self.assertEqual(doc["client_address"], addr)
        # Hops a client writes itself come first and are not believed: the
        # right-most untrusted address is the client.
        doc = self.checkin(c, xff=f"{DE}, {CN}")
        self.assertEqual((doc["probe_cc"], doc["client_address"]), ("CN", CN))
        # Not through the trusted proxy: X-Forwarded-For means nothing, the
        # peer is the client.
        doc = self.checkin(c, xff=CN, source="127.0.0.3")
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["client_address"]),
                         ("ZZ", "AS0", "127.0.0.3"))

    def test_checkin_request_values_win(self):
        c = self.collector()
        doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                               "probe_cc": "de"}, xff=CN)
        # The country the agent was configured with; the network still
        # from the database, with its name.
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                         ("DE", "AS4134", "CHINANET"))
        doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                               "probe_asn": "3320"}, xff=CN)
        # A configured ASN the database does not name: no name rather than
        # another network's.
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                         ("CN", "AS3320", None))
        self.assertEqual(doc["client_address"], CN)

    def test_checkin_geolocate_false(self):
        c = self.collector()
        doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                               "geolocate": False}, xff=CN)
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                         ("ZZ", "AS0", None))
        self.assertNotIn("client_address", doc)
        doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                               "geolocate": False, "probe_cc": "BR", "probe_asn": "AS28573"},
                           xff=CN)
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                         ("BR", "AS28573", None))
        self.assertNotIn("client_address", doc)
        doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                               "geolocate": True}, xff=DE)
        self.assertEqual((doc["probe_cc"], doc["client_address"]), ("DE", DE))
        for bad in ("no", 0, None):
            doc = self.checkin(c, {"software_name": "parallax", "software_version": "t",
                                   "geolocate": bad}, xff=CN, status=400)
            self.assertEqual(doc["error"], "malformed_request")

    def test_checkin_without_databases_still_echoes(self):
        # No --geoip-db: nothing is looked up, but an agent behind NAT still
        # learns the address to scrub.
        c = self.collector(["--trusted-proxy", "127.0.0.1/32"])
        doc = self.checkin(c, xff=CN)
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"],
                          doc["client_address"]), ("ZZ", "AS0", None, CN))

    def test_one_file_with_both_layouts(self):
        c = self.collector(["--geoip-db", self.db["combined"], "--trusted-proxy", "127.0.0.1/32"])
        doc = self.checkin(c, xff=CN)
        self.assertEqual((doc["probe_cc"], doc["probe_asn"], doc["probe_network_name"]),
                         ("CN", "AS4134", "CHINANET"))
        self.assertIn("geolocation from", c.log())

    def test_unusable_database_is_a_startup_error(self):
        bad = os.path.join(self.dir, "not.mmdb")
        with open(bad, "w") as f:
            f.write("not a database\n")
        missing = os.path.join(self.dir, "missing.mmdb")
        for path, words in ((missing, "cannot open"), (bad, "is not a MaxMind DB"),
                            (self.db["other"], "provides neither")):
            with self.subTest(path=path):
                p = subprocess.run([cl.COLLECTOR_BIN, "--listen", f"127.0.0.1:{cl.free_port()}",
                                    "--db", f"sqlite:{self.dir}/x.sqlite",
                                    "--geoip-db", self.db["country"], "--geoip-db", path],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(path, p.stderr)
                self.assertIn(words, p.stderr)

    # ---- submissions -----------------------------------------------------

    def test_mismatch_is_stored_and_flagged_and_the_address_kept_nowhere(self):
        c = self.collector()
        contents = {
            "de_from_cn": cl.variant(self.base, 1, cc="DE", asn="AS3320"),
            "de_from_de": cl.variant(self.base, 2, cc="DE", asn="AS3320"),
            "zz_from_cn": cl.variant(self.base, 3, cc="ZZ", asn="AS0"),
            "cn_from_unknown": cl.variant(self.base, 4, cc="CN", asn="AS4134"),
            "de_from_fr6": cl.variant(self.base, 5, cc="DE", asn="AS3320"),
        }
        sources = {"de_from_cn": CN, "de_from_de": DE, "zz_from_cn": CN,
                   "cn_from_unknown": UNKNOWN, "de_from_fr6": FR6}
        expected = {"de_from_cn": True, "de_from_de": False, "zz_from_cn": False,
                    "cn_from_unknown": False, "de_from_fr6": True}
        for content in contents.values():
            for addr in (CN, DE, FR6, US_REGISTERED):
                self.assertNotIn(addr, content, "the test would find its own bytes")
        uids = {}
        for name, content in contents.items():
            st, doc = self.submit(c, content, xff=sources[name])
            self.assertEqual(st, 200, (name, doc))
            uids[doc["measurement_uid"]] = name
        # Check-ins too, so their addresses are in memory of the process.
        self.checkin(c, xff=US_REGISTERED)
        # Sent again from elsewhere: still one row, flag as first stored.
        st, doc = self.submit(c, contents["de_from_de"], xff=CN)
        self.assertEqual((st, doc["duplicate"]), (200, True))

        results = c.list_all()
        self.assertEqual(len(results), len(contents))
        for r in results:
            self.assertEqual(r["geo_mismatch"], expected[uids[r["measurement_uid"]]],
                             uids[r["measurement_uid"]])
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_geo_mismatch_total", ())], 2)
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], len(contents))
        # The uploader's country, never its address, is what the row keeps.
        rows = dict(c.database.sql("SELECT uid, coalesce(uploader_cc, '-') FROM measurements"))
        self.assertEqual({uids[u]: cc for u, cc in rows.items()},
                         {"de_from_cn": "CN", "de_from_de": "-", "zz_from_cn": "-",
                          "cn_from_unknown": "-", "de_from_fr6": "FR"})

        def assert_absent(data, where):
            for addr in (CN, DE, FR6, US_REGISTERED):
                self.assertNotIn(addr.encode(), data, f"{addr} in {where}")
                packed = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
                self.assertNotIn(packed, data, f"{addr} (binary) in {where}")

        def assert_db_clean():
            for name, data in c.database.raw_bytes().items():
                assert_absent(data, name)

        st, _, text = cl.get(c.url + "/metrics")
        self.assertEqual(st, 200)
        assert_absent(text, "/metrics")
        assert_db_clean()   # while running: the WAL holds the recent commits
        self.assertEqual(c.stop(), 0)
        assert_db_clean()   # after the checkpoint at close
        with open(c.log_path, "rb") as f:
            assert_absent(f.read(), "the collector's log")


if __name__ == "__main__":
    require_writer()
    pxtest.main()
