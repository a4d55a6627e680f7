"""Verdicts that hold against real adversaries and over time (issues 11 and
19): agents in every country of the world run three rounds against a real
collector, while the world contains

- a rogue intermediate under the trusted root (EG, mail.example.net: the
  2015 CNNIC/MCS pattern) -> tls_divergent, although the chain validates;
- a state root the country's agents were made to trust (KZ,
  bank.example.net) -> tls_interception, although the agent says verified;
- a geo-DNS node serving the same leaf without its intermediate (BR,
  shop.example.com) -> consistent, the chain completed from the pool;
- a leaf rotated between rounds (rotate.example.com) and a leaf expired for
  everyone (expired.example.org) -> consistent everywhere;
- a ClientHello black hole (PK, video.example.com) -> tls_blocked, seen in
  every round;
- an on-path DNS injector that answers first and lets the genuine reply
  through late (TR, forum.example.org) -> dns_inconsistent, dns_injection;
- a censor that is on in round 1 only (CN's iCloud interception): the
  window still says tls_interception, as intermittent, and --latest says
  consistent.

Every other country must be consistent for those domains."""
import json
import os
import sys
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
ROUNDS = 3
ICLOUD, MAIL, BANK, SHOP = W["DOMAIN_ICLOUD"], W["DOMAIN_MAIL"], W["DOMAIN_BANK"], W["DOMAIN_SHOP"]
ROTATE, EXPIRED, VIDEO, FORUM = W["DOMAIN_ROTATE"], W["DOMAIN_EXPIRED"], W["DOMAIN_VIDEO"], W["DOMAIN_FORUM"]
[EG] = W["WORLD_TLS_ROGUE_CA"].split()
[KZ] = W["WORLD_TLS_STATE_ROOT"].split()
[BR] = W["WORLD_GEO_NODE"].split()
[PK] = W["WORLD_TLS_DROP"].split()
[TR] = W["WORLD_DNS_INJECT"].split()
[CN] = W["WORLD_TLS_INTERCEPT"].split()

# The verdicts over the whole window (all three rounds).
EXPECTED = {
    ICLOUD: {CN: "tls_interception"},
    MAIL: {EG: "tls_divergent"},
    BANK: {KZ: "tls_interception"},
    SHOP: {},
    ROTATE: {},
    EXPIRED: {},
    VIDEO: {PK: "tls_blocked"},
    FORUM: {TR: "dns_inconsistent"},
}


def port443(key):
    return f"{W[key]}:443"


class Adversaries(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.collector = None
        cls.dir = worldlib.up("px-adversaries-")
        cls.st = worldlib.state_file(cls.dir)
        cls.collector = worldlib.start_collector(COLLECTOR_BIN, cls.dir, cls.st["WORLD_CA"], list(EXPECTED))
        for cc in COUNTRIES:
            # KZ's volunteers trust the state root too (TRUST_KZ).
            worldlib.setup_agent(BIN, cls.dir, cc, cls.st["WORLD_CA_" + cc])
        # Round 1: every censor on, rotate.example.com serves leaf a.
        # Round 2: CN's censor off, leaf b. Round 3: CN still off, leaf a.
        cls.rounds = []
        for n in range(1, ROUNDS + 1):
            if n == 2:
                worldlib.world_sh("censor", cls.dir, CN, "off")
            if n > 1:
                worldlib.world_sh("rotate", cls.dir)
            cls.rounds.append(worldlib.run_round(BIN, cls.dir, COUNTRIES))
        cls.compare = {d: cls.run_compare("--domain", d, "--json") for d in EXPECTED}
        cls.compare_text = cls.run_compare("--domain", ICLOUD)
        cls.compare_latest = cls.run_compare("--domain", ICLOUD, "--latest", "--json")

    @classmethod
    def run_compare(cls, *args):
        """(exit status, stdout, stderr) of `parallax compare`: an option the
        agent does not know yet fails one test, not all of them."""
        p = in_ns("core", BIN, "compare", "--collector", URL, *args, check=False)
        return p.returncode, p.stdout, p.stderr

    @classmethod
    def tearDownClass(cls):
        worldlib.stop(getattr(cls, "collector", None))
        if getattr(cls, "dir", None):
            worldlib.down(cls.dir)

    # --- helpers ------------------------------------------------------------

    def doc(self, domain, which=None):
        rc, out, err = which if which is not None else self.compare[domain]
        self.assertEqual(rc, 0, f"parallax compare for {domain}: {err}")
        doc = json.loads(out)
        errors = list(pxtest.load_schema("compare.schema.json").iter_errors(doc))
        self.assertEqual(errors, [], f"{domain}: {[e.message for e in errors[:3]]}")
        self.assertTrue(doc["analysis_complete"])
        return doc

    def group(self, doc, cc):
        [g] = [g for g in doc["vantages"] if g["probe_cc"] == cc]
        return g

    def rows(self, g, key):
        return [a for a in g["addresses"] if a["address"] == port443(key)]

    def exported(self, cc, domain):
        """The measurements of cc for domain, oldest first."""
        p = in_ns("core", "curl", "-fsS", f"{URL}/api/v1/export.jsonl?probe_cc={cc}&domain={domain}")
        ms = [json.loads(json.loads(line)["content"]) for line in p.stdout.splitlines()]
        return sorted(ms, key=lambda m: m["measurement_start_time"])

    def leaves_at(self, m, key):
        return [h["peer_certificates"][0]["sha256"] for h in m["test_keys"]["tls_handshakes"]
                if h["address"] == port443(key) and h.get("peer_certificates")]

    # --- the world did what it should (holds whatever the collector says) ---

    def test_every_round_succeeded(self):
        for n, results in enumerate(self.rounds, 1):
            for cc, (rc, err) in results.items():
                self.assertEqual(rc, 0, f"round {n}, {cc}: {err}")
                self.assertIn("uploaded", err)

    def test_the_agents_met_the_adversaries(self):
        # What each country's agent recorded, round by round: the censor
        # switched off after round 1, the leaf rotated, the others constant.
        cn = self.exported(CN, ICLOUD)
        self.assertEqual(len(cn), ROUNDS)
        self.assertEqual([self.leaves_at(m, "ICLOUD_V4")[:1] for m in cn],
                         [[self.st["SHA256_MITM"]]] + [[self.st["SHA256_ICLOUD"]]] * (ROUNDS - 1))
        rot = {cc: [self.leaves_at(m, "ROTATE")[:1] for m in self.exported(cc, ROTATE)] for cc in COUNTRIES}
        a, b = [self.st["SHA256_ROTATE_A"]], [self.st["SHA256_ROTATE_B"]]
        self.assertEqual(rot, {cc: [a, b, a] for cc in COUNTRIES})
        for m in self.exported(EG, MAIL):
            self.assertEqual(self.leaves_at(m, "MAIL")[:1], [self.st["SHA256_ROGUE_MAIL"]])
        for m in self.exported(KZ, BANK):
            [h] = [h for h in m["test_keys"]["tls_handshakes"] if h["address"] == port443("BANK")][:1]
            self.assertEqual(h["peer_certificates"][0]["sha256"], self.st["SHA256_STATE_BANK"])
            self.assertTrue(h["verification"]["ok"], h["verification"])  # kz-trust.pem
        for m in self.exported(BR, SHOP):
            [h] = [h for h in m["test_keys"]["tls_handshakes"] if h["address"] == port443("SHOP_NODE")]
            self.assertEqual(len(h["peer_certificates"]), 1)
            self.assertEqual(h["peer_certificates"][0]["sha256"], self.st["SHA256_SHOP"])
        for m in self.exported(PK, VIDEO):
            fails = [h["failure"] for h in m["test_keys"]["tls_handshakes"] if h["address"] == port443("VIDEO")]
            self.assertEqual(set(fails), {"generic_timeout_error"}, fails)
        for m in self.exported(TR, FORUM):
            answers = [a.get("ipv4") for q in m["test_keys"]["queries"] if q["query_type"] == "A"
                       for a in q.get("answers") or []]
            self.assertEqual(answers, [W["BLOCKPAGE"]])

    def test_tr_agent_kept_the_late_genuine_reply(self):
        # The injector's genuine answer came 75 ms after the forged one, well
        # inside the default --dns-late-window (1000 ms).
        for m in self.exported(TR, FORUM):
            late = m["test_keys"].get("dns_late_replies")
            self.assertTrue(late, "no test_keys.dns_late_replies")
            addrs = [a.get("ipv4") for r in late for a in r.get("answers") or []]
            self.assertIn(W["FORUM"], addrs)

    # --- the verdicts -------------------------------------------------------

    def test_verdicts_for_every_domain_and_country(self):
        got, want = {}, {}
        for domain, flagged in EXPECTED.items():
            doc = self.doc(domain)
            got[domain] = {g["probe_cc"]: g["verdict"] for g in doc["vantages"]}
            want[domain] = {cc: flagged.get(cc, "consistent") for cc in COUNTRIES}
            for g in doc["vantages"]:
                self.assertEqual(g["probe_asn"], W["ASN_" + g["probe_cc"]])
                self.assertEqual(g["vantage_count"], 1)
        self.assertEqual(got, want)

    def test_rogue_intermediate_is_divergent(self):
        eg = self.group(self.doc(MAIL), EG)
        self.assertEqual(eg["verdict"], "tls_divergent")
        [ev] = [e for e in eg["evidence"] if e["rule"] == "tls_divergent"]
        self.assertEqual(ev["address"], port443("MAIL"))
        self.assertEqual(ev["leaf_sha256"], self.st["SHA256_ROGUE_MAIL"])
        self.assertIn("Parallax World Rogue Intermediate CA", ev["issuer"])
        # The chain does validate for the collector too: that is the point.
        for row in self.rows(eg, "MAIL"):
            self.assertTrue(row["verified"], row)

    def test_state_root_is_interception(self):
        kz = self.group(self.doc(BANK), KZ)
        self.assertEqual(kz["verdict"], "tls_interception")
        [ev] = [e for e in kz["evidence"] if e["rule"] == "tls_interception"]
        self.assertEqual(ev["address"], port443("BANK"))
        self.assertEqual(ev["leaf_sha256"], self.st["SHA256_STATE_BANK"])
        self.assertFalse(ev["self_signed"])
        [row] = self.rows(kz, "BANK")
        self.assertFalse(row["verified"])
        self.assertTrue(row["agent_verified"])  # the agent trusts the state root

    def test_missing_intermediate_is_completed_from_the_pool(self):
        doc = self.doc(SHOP)
        br = self.group(doc, BR)
        self.assertEqual(br["verdict"], "consistent")
        [row] = self.rows(br, "SHOP_NODE")
        self.assertEqual(row["leaf_sha256"], self.st["SHA256_SHOP"])
        self.assertTrue(row["verified"], row)
        self.assertIs(row.get("completed_from_pool"), True, row)
        for g in doc["vantages"]:
            for row in self.rows(g, "SHOP"):
                self.assertTrue(row["verified"], (g["probe_cc"], row))
                self.assertIs(row.get("completed_from_pool", False), False, (g["probe_cc"], row))

    def test_rotated_leaf_is_consistent(self):
        doc = self.doc(ROTATE)
        leaves = {self.st["SHA256_ROTATE_A"], self.st["SHA256_ROTATE_B"]}
        self.assertEqual({g["probe_cc"]: g["verdict"] for g in doc["vantages"]},
                         {cc: "consistent" for cc in COUNTRIES})
        # Every measurement of the window counts: each group saw both leaves.
        for g in doc["vantages"]:
            rows = self.rows(g, "ROTATE")
            self.assertEqual({r["leaf_sha256"] for r in rows}, leaves, g["probe_cc"])
            self.assertTrue(all(r["verified"] for r in rows), rows)

    def test_expired_everywhere_is_consistent(self):
        for g in self.doc(EXPIRED)["vantages"]:
            self.assertEqual(g["verdict"], "consistent", g["probe_cc"])
            [row] = self.rows(g, "EXPIRED")
            self.assertEqual(row["leaf_sha256"], self.st["SHA256_EXPIRED"])
            self.assertFalse(row["verified"])

    def test_black_hole_is_blocking(self):
        pk = self.group(self.doc(VIDEO), PK)
        self.assertEqual(pk["verdict"], "tls_blocked")
        [ev] = [e for e in pk["evidence"] if e["rule"] == "tls_blocked"]
        self.assertEqual(ev["address"], port443("VIDEO"))
        self.assertEqual(ev["failure"], "generic_timeout_error")
        obs = pk["observed"]
        self.assertEqual((obs["measurements"], obs["anomalous"], obs["ongoing"]), (ROUNDS, ROUNDS, True))

    def test_injection_is_dns_inconsistent(self):
        tr = self.group(self.doc(FORUM), TR)
        self.assertEqual(tr["verdict"], "dns_inconsistent")
        rules = [e["rule"] for e in tr["evidence"]]
        self.assertIn("dns_injection", rules)

    def test_intermittent_censor_over_the_window(self):
        cn = self.group(self.doc(ICLOUD), CN)
        self.assertEqual(cn["verdict"], "tls_interception")
        [ev] = [e for e in cn["evidence"] if e["rule"] == "tls_interception"]
        self.assertEqual(ev["leaf_sha256"], self.st["SHA256_MITM"])
        obs = cn["observed"]
        self.assertEqual((obs["measurements"], obs["anomalous"], obs["ongoing"]), (ROUNDS, 1, False))
        self.assertLessEqual(obs["first_seen"], obs["last_seen"])
        # Everyone else saw one measurement after another without anomaly.
        for g in self.doc(ICLOUD)["vantages"]:
            if g["probe_cc"] != CN:
                self.assertEqual((g["observed"]["measurements"], g["observed"]["anomalous"]), (ROUNDS, 0))

    def test_intermittent_censor_in_the_table(self):
        rc, out, err = self.compare_text
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        start = [i for i, l in enumerate(lines) if l.startswith(CN + " ")]
        self.assertEqual(len(start), 1, out)
        block = [lines[start[0]]]
        for line in lines[start[0] + 1:]:
            if line[:2].isupper() and line[2:3] == " ":
                break  # the next group
            block.append(line)
        self.assertIn("tls_interception", block[0])
        self.assertIn("intermittent", "\n".join(block).lower(), out)

    def test_latest_measurement_alone_is_consistent(self):
        doc = self.doc(ICLOUD, self.compare_latest)
        got = {g["probe_cc"]: g["verdict"] for g in doc["vantages"]}
        self.assertEqual(got, {cc: "consistent" for cc in COUNTRIES})
        self.assertEqual(len(self.group(doc, CN)["measurements"]), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
