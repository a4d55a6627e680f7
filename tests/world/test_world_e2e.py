"""The multi-country world end to end (issue 4): agents in six simulated
countries run real rounds against a real collector; the comparison must
name exactly the interference the world contains -- interception of the
real iCloud address in CN, DNS redirection in IR, a handshake reset in RU --
and leave the geo-CDN, the clean countries and the site that is down
everywhere alone. The web page is checked in headless Chromium."""
import html.parser
import json
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("PX_SOURCE_DIR", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "cli"))
import pxtest  # noqa: E402
import worldlib  # noqa: E402
from worldlib import URL, W, in_ns  # noqa: E402

BIN = pxtest.BIN
COLLECTOR_BIN = os.environ.get("PX_COLLECTOR_BIN", os.path.join(os.path.dirname(BIN), "parallax-collector"))


COUNTRIES = W["WORLD_VANTAGES"].split()

# What the world contains, and so what the comparison must say.
EXPECTED = {
    W["DOMAIN_ICLOUD"]: {"CN": "tls_interception"},
    W["DOMAIN_APPLEID"]: {},
    W["DOMAIN_CDN"]: {},
    W["DOMAIN_NEWS"]: {"IR": "dns_inconsistent"},
    W["DOMAIN_SOCIAL"]: {"RU": "tls_blocked"},
    W["DOMAIN_DOWN"]: {},
}


class RowParser(html.parser.HTMLParser):
    """The rows of the comparison table: data attributes and text."""

    def __init__(self):
        super().__init__()
        self.rows, self.row = [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-cc" in a:
            self.row = {"cc": a["data-cc"], "verdict": a.get("data-verdict"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.row is not None:
            self.row["text"] += data + " "


class World(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.collector = None
        cls.dir = worldlib.up("px-world-")
        cls.ca = os.path.join(cls.dir, "pki", "ca.pem")
        cls.collector = worldlib.start_collector(COLLECTOR_BIN, cls.dir, cls.ca,
                                                 list(EXPECTED) + [W["DOMAIN_WHOAMI"]])
        # Each volunteer sets up once (consent, config, key), then the
        # timer's command runs: two rounds, the first finds which addresses
        # verify where, the second gets them as control addresses.
        for cc in COUNTRIES:
            worldlib.setup_agent(BIN, cls.dir, cc, cls.ca)
        cls.rounds = [worldlib.run_round(BIN, cls.dir, COUNTRIES) for _ in range(2)]
        cls.docs = {}
        for domain in EXPECTED:
            p = in_ns("core", BIN, "compare", "--collector", URL, "--domain", domain, "--json")
            cls.docs[domain] = json.loads(p.stdout)

    @classmethod
    def config(cls, cc):
        return worldlib.agent_config(cls.dir, cc)

    @classmethod
    def state(cls, cc):
        return worldlib.agent_state(cls.dir, cc)

    @classmethod
    def tearDownClass(cls):
        worldlib.stop(getattr(cls, "collector", None))
        if getattr(cls, "dir", None):
            worldlib.down(cls.dir)

    def test_whoami_stays_on_the_volunteers_machine(self):
        # The resolver answered each vantage with its own address: the
        # measurement is about the volunteer and is kept local, and no
        # vantage address reaches the collector's database.
        for cc in COUNTRIES:
            held = [f for f in os.listdir(os.path.join(self.state(cc), "held")) if f.endswith(".json")]
            self.assertEqual(len(held), 2, cc)  # one per round
            with open(os.path.join(self.state(cc), "held", held[0][:-5] + ".reason")) as f:
                self.assertIn("an address of this machine", f.read())
        p = in_ns("core", "curl", "-fsS", f'{URL}/api/v1/measurements?domain={W["DOMAIN_WHOAMI"]}')
        self.assertEqual(json.loads(p.stdout)["results"], [])
        db = b""
        for suffix in ("", "-wal"):
            if os.path.exists(os.path.join(self.dir, "collector.sqlite" + suffix)):
                with open(os.path.join(self.dir, "collector.sqlite" + suffix), "rb") as f:
                    db += f.read()
        for cc in COUNTRIES:
            for key in ("VANTAGE_ADDR_", "VANTAGE_ADDR6_"):
                # Whole addresses: DE's 198.51.100.10 is a prefix of the
                # resolver 198.51.100.101, which measurements rightly name.
                pattern = rb"(?<![0-9a-fA-F.:])" + re.escape(W[key + cc].encode()) + rb"(?![0-9a-fA-F])"
                self.assertIsNone(re.search(pattern, db), (cc, key))

    def test_every_round_succeeded(self):
        for n, results in enumerate(self.rounds, 1):
            for cc, (rc, err) in results.items():
                self.assertEqual(rc, 0, f"round {n}, {cc}: {err}")
                self.assertIn("uploaded", err)

    def test_verdicts_for_every_domain_and_country(self):
        schema = pxtest.load_schema("compare.schema.json")
        for domain, flagged in EXPECTED.items():
            doc = self.docs[domain]
            errors = list(schema.iter_errors(doc))
            self.assertEqual(errors, [], f"{domain}: {errors[:3]}")
            self.assertTrue(doc["analysis_complete"])
            got = {g["probe_cc"]: g["verdict"] for g in doc["vantages"]}
            want = {cc: flagged.get(cc, "consistent") for cc in COUNTRIES}
            self.assertEqual(got, want, domain)
            for g in doc["vantages"]:
                self.assertEqual(g["probe_asn"], W["ASN_" + g["probe_cc"]])
                self.assertEqual(g["vantage_count"], 1)
                self.assertEqual(g["confidence"], 1.0)

    def test_interception_evidence_names_the_self_signed_certificate(self):
        mitm_sha, _ = pxtest.fingerprints(os.path.join(self.dir, "pki", "mitm.pem"))
        icloud_sha, _ = pxtest.fingerprints(os.path.join(self.dir, "pki", "icloud.pem"))
        doc = self.docs[W["DOMAIN_ICLOUD"]]
        cn = [g for g in doc["vantages"] if g["probe_cc"] == "CN"][0]
        [ev] = cn["evidence"]
        self.assertEqual(ev["rule"], "tls_interception")
        self.assertEqual(ev["address"], f'{W["ICLOUD_V4"]}:443')
        self.assertEqual(ev["leaf_sha256"], mitm_sha)
        self.assertTrue(ev["self_signed"])
        self.assertEqual(ev["subject"], "CN=www.icloud.com,O=www.icloud.com,C=cn")
        self.assertIn(18, ev["collector_errors"])
        self.assertEqual(ev["others_leaf_sha256"], [icloud_sha])
        self.assertGreaterEqual(len(ev["others_groups"]), 2)
        # The interception is on the path: CN's DNS answer was the real one.
        by_addr = {a["address"]: a for a in cn["addresses"]}
        self.assertTrue(by_addr[f'{W["ICLOUD_V4"]}:443']["resolved"])
        self.assertFalse(by_addr[f'{W["ICLOUD_V4"]}:443']["verified"])
        # IPv6 is not intercepted in the world, and verifies.
        self.assertTrue(by_addr[f'[{W["ICLOUD_V6"]}]:443']["verified"])
        # Everyone else saw Apple's chain there, from the test root.
        for g in doc["vantages"]:
            if g["probe_cc"] != "CN":
                v4 = [a for a in g["addresses"] if a["address"] == f'{W["ICLOUD_V4"]}:443'][0]
                self.assertEqual(v4["leaf_sha256"], icloud_sha)
                self.assertEqual(v4["seen_by"], len(COUNTRIES) - 1)

    def test_redirection_and_blocking_evidence(self):
        ir = [g for g in self.docs[W["DOMAIN_NEWS"]]["vantages"] if g["probe_cc"] == "IR"][0]
        [ev] = ir["evidence"]
        self.assertEqual(ev["answers"], [W["BLOCKPAGE"]])
        self.assertIn(W["NEWS"], ev["others_answers"])
        ru = [g for g in self.docs[W["DOMAIN_SOCIAL"]]["vantages"] if g["probe_cc"] == "RU"][0]
        [ev] = ru["evidence"]
        self.assertEqual(ev["address"], f'{W["SOCIAL"]}:443')
        self.assertEqual(ev["failure"], "connection_reset")

    def test_geo_cdn_serves_two_valid_certificates(self):
        doc = self.docs[W["DOMAIN_CDN"]]
        leaves = {a["leaf_sha256"] for g in doc["vantages"] for a in g["addresses"] if a["verified"]}
        self.assertEqual(len(leaves), 2)

    def test_second_round_used_control_addresses(self):
        # The CN agent's second measurement of iCloud lists the control
        # addresses the collector handed out, the real iCloud address among
        # them (which it then saw intercepted).
        p = in_ns("core", "curl", "-fsS",
                  f'{URL}/api/v1/export.jsonl?probe_cc=CN&domain={W["DOMAIN_ICLOUD"]}')
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual(len(lines), 2)
        last = json.loads(lines[-1]["content"])
        self.assertIn(W["ICLOUD_V4"], last["test_keys"]["control_addresses"])
        self.assertEqual(last["annotations"]["check_in"], "collector")

    def test_compare_table(self):
        p = in_ns("core", BIN, "compare", "--collector", URL, "--domain", W["DOMAIN_ICLOUD"])
        lines = p.stdout.splitlines()
        cn = [l for l in lines if l.startswith("CN ")]
        self.assertEqual(len(cn), 1, p.stdout)
        self.assertIn("tls_interception", cn[0])
        self.assertIn("evidence: tls_interception", p.stdout)
        self.assertIn("(self-signed)", p.stdout)
        # Which address came from where, the collector's errors by name, a
        # legend; the JSON has the names beside the numbers.
        self.assertRegex(cn[0], r"\b(dns|control|dns\+ctl)\b")
        self.assertIn("collector's verification: X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT", p.stdout)
        self.assertIn("from: dns = this group's resolvers", p.stdout)
        for g in self.docs[W["DOMAIN_ICLOUD"]]["vantages"]:
            for ev in g["evidence"]:
                if "collector_errors" in ev:
                    self.assertEqual(len(ev["collector_error_names"]), len(ev["collector_errors"]))
        p = in_ns("core", BIN, "compare", "--collector", URL, "--domain", "unknown.example")
        self.assertIn("no measurements of unknown.example in the window", p.stdout)

    def test_web_page_in_headless_chromium(self):
        chromium = shutil.which("chromium")
        if chromium is None:
            self.skipTest("chromium is not installed")
        profile = tempfile.mkdtemp(dir=self.dir)
        p = in_ns("core", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                  "--dump-dom", f'{URL}/?domain={W["DOMAIN_ICLOUD"]}', timeout=120)
        parser = RowParser()
        parser.feed(p.stdout)
        rows = {r["cc"]: r for r in parser.rows}
        self.assertEqual(set(rows), set(COUNTRIES), p.stdout[-2000:])
        self.assertEqual(rows["CN"]["verdict"], "tls_interception")
        mitm_sha, _ = pxtest.fingerprints(os.path.join(self.dir, "pki", "mitm.pem"))
        self.assertIn(mitm_sha[:16], rows["CN"]["text"])
        self.assertIn("self-signed", rows["CN"]["text"])
        for cc in COUNTRIES:
            if cc != "CN":
                self.assertEqual(rows[cc]["verdict"], "consistent")


if __name__ == "__main__":
    unittest.main(verbosity=2)
