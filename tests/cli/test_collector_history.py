"""GET /api/v1/compare/history (issue 17, docs/api.md "Comparing over
time"): the comparison of one domain bucket by bucket. Real measurements
of the test world's www.icloud.com, signed by the agent and submitted to a
real collector (SQLite, and PostgreSQL as cli.test_collector_history.pg),
re-dated to three consecutive hours: Germany and the United States see the
real certificate every hour, China is handed the 2014 interception's
self-signed leaf (through PX_TLS_MITM) in the first and the third hour but
not the second. The history must say what /api/v1/compare says of each
hour alone, alternate for China, and mark the leaf changes where the hours
meet; every answer validates against compare-history.schema.json, every
refusal against error.schema.json."""
import datetime
import json
import os
import shutil
import tempfile

import collectorlib as cl
import pxtest

HISTORY = pxtest.load_schema("compare-history.schema.json")
COMPARE = pxtest.load_schema("compare.schema.json")
DOMAIN = "www.icloud.com"
# The first measured hour: six hours ago, on the hour (the test PKI's
# certificates are valid from a day ago, and the collector judges a chain
# at its measurement's time).
H0 = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, minute=0, second=0,
                                                            microsecond=0)
      - datetime.timedelta(hours=6))


def routed_to_mitm(m):
    """The 2014 pattern as a vantage behind the interceptor records it:
    DNS answered the real address, and the handshake there got the
    self-signed leaf (the network routed it to the MITM). The test world
    serves that leaf at another address (--address PX_TLS_MITM): this
    files the MITM handshake and its connect under the real address and
    drops the real ones, leaving the certificates as received."""
    real, mitm = pxtest.PEER["PX_TLS_ICLOUD"], pxtest.PEER["PX_TLS_MITM"]
    tk = m["test_keys"]
    tk["tcp_connect"] = [dict(c, ip=real) for c in tk["tcp_connect"] if c["ip"] == mitm]
    hs = []
    for h in tk["tls_handshakes"]:
        ip, port = h["address"].rsplit(":", 1)
        if ip == mitm:
            hs.append(dict(h, address=f"{real}:{port}"))
    tk["tls_handshakes"] = hs
    assert hs and tk["tcp_connect"], m
    return m


def redirected_to_mitm(m):
    """DNS-level redirection: the vantage's resolver answered the MITM's
    address instead of the real one, and the handshake there got the
    self-signed leaf (from a measurement made with --address PX_TLS_MITM,
    its answers rewritten and the real address's connect and handshake
    dropped)."""
    real, mitm = pxtest.PEER["PX_TLS_ICLOUD"], pxtest.PEER["PX_TLS_MITM"]
    tk = m["test_keys"]
    for q in tk["queries"]:
        for a in q.get("answers") or []:
            if a.get("ipv4") == real:
                a["ipv4"] = mitm
    tk["tcp_connect"] = [c for c in tk["tcp_connect"] if c["ip"] == mitm]
    tk["tls_handshakes"] = [h for h in tk["tls_handshakes"]
                            if h["address"].rsplit(":", 1)[0] == mitm]
    assert tk["tcp_connect"] and tk["tls_handshakes"], m
    return m


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class History(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-history-")
        clean = json.loads(cl.measure_lines(DOMAIN)[0])
        raw_mitm = cl.measure_lines(DOMAIN, extra=("--address", pxtest.PEER["PX_TLS_MITM"]))[0]
        mitm = routed_to_mitm(json.loads(raw_mitm))
        cls.clean, cls.redirected = clean, redirected_to_mitm(json.loads(raw_mitm))
        # One agent (one key, one vantage) per country.
        cls.pairs, i = [], 0
        for cc, asn in (("DE", "AS3320"), ("US", "AS7922"), ("CN", "AS4134")):
            lines = []
            for hour in range(3):
                base = mitm if cc == "CN" and hour != 1 else clean
                # Two measurements a group and hour, at :05:00 and :06:37.
                for k in range(2):
                    start = H0 + datetime.timedelta(hours=hour, minutes=5, seconds=97 * k)
                    lines.append(cl.variant(base, i, start=start, cc=cc, asn=asn, step=0))
                    i += 1
            cls.pairs += cl.Agent(os.path.join(cls.tmp, "agent-" + cc)).sign(lines)
        mitm_leaves = {h["peer_certificates"][0]["sha256"]
                       for h in mitm["test_keys"]["tls_handshakes"] if h.get("peer_certificates")}
        clean_leaves = {h["peer_certificates"][0]["sha256"]
                        for h in clean["test_keys"]["tls_handshakes"] if h.get("peer_certificates")}
        assert len(mitm_leaves) == 1 and not mitm_leaves & clean_leaves, (mitm_leaves, clean_leaves)
        cls.clean_leaves, cls.mitm_leaves = sorted(clean_leaves), sorted(mitm_leaves)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        # The collector trusts the test world's root, as the agents do.
        self.c = cl.Collector(tempfile.mkdtemp(dir=self.tmp), extra=("--ca-file", pxtest.CA))
        self.addCleanup(self.c.stop)
        self.c.start()
        for content, sig in self.pairs:
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)

    def history(self, **params):
        st, headers, body = cl.get(self.c.api("/api/v1/compare/history", **params), timeout=60)
        doc = cl.json_body(st, headers, body, HISTORY, "compare/history")
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(doc["analysis_complete"], doc)
        return doc

    def compare(self, since, until):
        st, headers, body = cl.get(self.c.api("/api/v1/compare", domain=DOMAIN,
                                              since=since, until=until), timeout=60)
        self.assertEqual(st, 200, body[:300])
        return cl.json_body(st, headers, body, COMPARE, "compare")

    def verdicts(self, bucket):
        return {f'{v["probe_cc"]}/{v["probe_asn"]}': v["verdict"] for v in bucket["vantages"]}

    def test_intermittent_interception_alternates(self):
        # An hour before the first measurement: an empty bucket comes too.
        since, until = H0 - datetime.timedelta(hours=1), H0 + datetime.timedelta(hours=3)
        doc = self.history(domain=DOMAIN, since=iso(since), until=iso(until), bucket="hour")
        self.assertEqual((doc["bucket"], doc["probe_cc"], doc["measurements"]), ("hour", None, 18))
        b = doc["buckets"]
        self.assertEqual([x["since"] for x in b],
                         [iso(since + datetime.timedelta(hours=k)) for k in range(4)])
        self.assertEqual([x["until"] for x in b],
                         [iso(since + datetime.timedelta(hours=k + 1)) for k in range(4)])
        self.assertEqual((b[0]["measurements"], b[0]["vantages"]), (0, []))
        self.assertEqual([x["measurements"] for x in b[1:]], [6, 6, 6])
        cn = [self.verdicts(x).get("CN/AS4134") for x in b[1:]]
        self.assertEqual(cn, ["tls_interception", "consistent", "tls_interception"], doc)
        for x in b[1:]:
            v = self.verdicts(x)
            self.assertEqual((v["DE/AS3320"], v["US/AS7922"]), ("consistent", "consistent"), x)
            # Each bucket is what /api/v1/compare says of that hour alone.
            alone = self.compare(x["since"], x["until"])
            self.assertEqual(v, {f'{g["probe_cc"]}/{g["probe_asn"]}': g["verdict"]
                                 for g in alone["vantages"]})
            for row in x["vantages"]:
                g = next(g for g in alone["vantages"] if g["probe_cc"] == row["probe_cc"])
                self.assertEqual(row["observed"], g["observed"])
                self.assertEqual((row["confidence"], row["vantage_count"]),
                                 (g["confidence"], g["vantage_count"]))
                self.assertEqual(row["evidence_count"], len(g["evidence"]))
                self.assertEqual(row["observed"]["measurements"], 2)
        china = [next(r for r in x["vantages"] if r["probe_cc"] == "CN") for x in b[1:]]
        self.assertEqual([r["evidence_rules"] for r in china],
                         [["tls_interception"], [], ["tls_interception"]])
        self.assertEqual([r["leaves"] for r in china],
                         [self.mitm_leaves, self.clean_leaves, self.mitm_leaves])
        # The leaf changed where hour 1 met hour 2 and hour 2 met hour 3,
        # only for China, and the DNS answers (the same resolver every
        # hour: --address adds an address, it does not answer) never did.
        self.assertEqual(doc["changes"], [
            {"at": b[2]["since"], "group": "CN/AS4134", "kind": "leaf",
             "from": self.mitm_leaves, "to": self.clean_leaves},
            {"at": b[3]["since"], "group": "CN/AS4134", "kind": "leaf",
             "from": self.clean_leaves, "to": self.mitm_leaves}])
        self.assertEqual(len({json.dumps(r["answers"]) for r in china}), 1, china)
        self.assertTrue(china[0]["answers"], china)

    def test_dns_answer_change_is_marked(self):
        # Four and three hours before H0: China's resolver starts answering
        # the MITM's address in the second hour.
        t0 = H0 - datetime.timedelta(hours=4)
        pairs, i = [], 1000
        for cc, asn in (("DE", "AS3320"), ("US", "AS7922"), ("CN", "AS4134")):
            lines = []
            for hour in range(2):
                base = self.redirected if cc == "CN" and hour == 1 else self.clean
                start = t0 + datetime.timedelta(hours=hour, minutes=5)
                lines.append(cl.variant(base, i, start=start, cc=cc, asn=asn, step=0))
                i += 1
            pairs += cl.Agent(os.path.join(self.c.workdir, "agent-" + cc)).sign(lines)
        for content, sig in pairs:
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
        until = t0 + datetime.timedelta(hours=2)
        doc = self.history(domain=DOMAIN, since=iso(t0), until=iso(until), probe_cc="CN")
        real, mitm = pxtest.PEER["PX_TLS_ICLOUD"], pxtest.PEER["PX_TLS_MITM"]
        [first], [second] = (b["vantages"] for b in doc["buckets"])
        self.assertEqual((first["answers"], second["answers"]), ([real], [mitm]))
        self.assertEqual((first["leaves"], second["leaves"]), (self.clean_leaves, self.mitm_leaves))
        at = doc["buckets"][1]["since"]
        self.assertEqual(doc["changes"], [
            {"at": at, "group": "CN/AS4134", "kind": "leaf",
             "from": self.clean_leaves, "to": self.mitm_leaves},
            {"at": at, "group": "CN/AS4134", "kind": "answer", "from": [real], "to": [mitm]}])
        self.assertEqual(first["verdict"], "consistent")
        alone = self.compare(doc["buckets"][1]["since"], doc["buckets"][1]["until"])
        [cn] = [g for g in alone["vantages"] if g["probe_cc"] == "CN"]
        self.assertEqual(second["verdict"], cn["verdict"])
        self.assertNotEqual(second["verdict"], "consistent")

    def test_probe_cc_narrows_the_rows_not_the_judgement(self):
        since, until = iso(H0), iso(H0 + datetime.timedelta(hours=3))
        full = self.history(domain=DOMAIN, since=since, until=until)
        doc = self.history(domain=DOMAIN, since=since, until=until, probe_cc="CN")
        self.assertEqual(doc["probe_cc"], "CN")
        self.assertEqual(doc["bucket"], "hour")  # three hours: hourly by default
        for x, y in zip(doc["buckets"], full["buckets"]):
            self.assertEqual(x["measurements"], y["measurements"])
            self.assertEqual(x["vantages"], [r for r in y["vantages"] if r["probe_cc"] == "CN"])
        self.assertEqual(doc["changes"], full["changes"])
        self.assertEqual([r["verdict"] for x in doc["buckets"] for r in x["vantages"]],
                         ["tls_interception", "consistent", "tls_interception"])
        none = self.history(domain=DOMAIN, since=since, until=until, probe_cc="FR")
        self.assertEqual([x["vantages"] for x in none["buckets"]], [[], [], []])
        self.assertEqual(none["changes"], [])

    def test_buckets_fall_on_utc_boundaries(self):
        # A window starting mid-hour: its first bucket is cut to it, and a
        # day bucket holds all three hours, judged together as compare
        # judges them (the interception stays visible).
        since = H0 + datetime.timedelta(minutes=30)
        until = H0 + datetime.timedelta(hours=2, minutes=30)
        doc = self.history(domain=DOMAIN, since=iso(since), until=iso(until))
        self.assertEqual([(x["since"], x["until"]) for x in doc["buckets"]], [
            (iso(since), iso(H0 + datetime.timedelta(hours=1))),
            (iso(H0 + datetime.timedelta(hours=1)), iso(H0 + datetime.timedelta(hours=2))),
            (iso(H0 + datetime.timedelta(hours=2)), iso(until))])
        # :30 to the hour holds none of the first hour's (:05:00, :06:37).
        self.assertEqual([x["measurements"] for x in doc["buckets"]], [0, 6, 6])
        day = self.history(domain=DOMAIN, since=iso(H0), until=iso(H0 + datetime.timedelta(hours=3)),
                           bucket="day")
        [only] = day["buckets"]
        self.assertEqual((only["since"], only["until"], only["measurements"]),
                         (iso(H0), iso(H0 + datetime.timedelta(hours=3)), 18))
        self.assertEqual(self.verdicts(only)["CN/AS4134"], "tls_interception")
        self.assertEqual(day["changes"], [])
        # Longer than a week: daily by default.
        since, until = H0 - datetime.timedelta(days=9), H0 + datetime.timedelta(days=1)
        week = self.history(domain=DOMAIN, since=iso(since), until=iso(until))
        midnight = since.replace(hour=0)
        days = -(-(until - midnight) // datetime.timedelta(days=1))  # UTC days touched
        self.assertEqual((week["bucket"], len(week["buckets"])), ("day", days))
        self.assertEqual(week["buckets"][0]["since"], iso(since))
        self.assertEqual(week["buckets"][1]["since"], iso(midnight + datetime.timedelta(days=1)))
        self.assertEqual(week["buckets"][-1]["until"], iso(until))
        self.assertEqual(sum(x["measurements"] for x in week["buckets"]), 18)

    def test_bad_parameters_are_400(self):
        base = {"domain": DOMAIN, "since": iso(H0), "until": iso(H0 + datetime.timedelta(hours=3))}
        for params, word in (
                (dict(base, limit="5"), "unknown parameter"),
                (dict(base, latest="1"), "unknown parameter"),
                ({k: v for k, v in base.items() if k != "domain"}, "domain"),
                (dict(base, domain="not a host"), "domain"),
                (dict(base, since=base["until"]), "before"),
                (dict(base, since=iso(H0 + datetime.timedelta(hours=4))), "before"),
                (dict(base, since="yesterday"), "since"),
                (dict(base, until="2014-10-20 10:00"), "until"),
                (dict(base, bucket="week"), "bucket"),
                (dict(base, bucket=""), "bucket"),
                (dict(base, probe_cc="cn"), "probe_cc"),
                (dict(base, probe_cc="CHN"), "probe_cc"),
                # 501 hours: too many buckets (a day's would do).
                (dict(base, since=iso(H0 - datetime.timedelta(hours=498)), bucket="hour"),
                 "at most 500")):
            with self.subTest(params=params):
                doc = cl.error_body(cl.get(self.c.api("/api/v1/compare/history", **params)),
                                    400, "bad_query")
                self.assertIn(word, doc["detail"])
        # 500 hours exactly is allowed.
        doc = self.history(**dict(base, since=iso(H0 - datetime.timedelta(hours=497)),
                                  bucket="hour"))
        self.assertEqual(len(doc["buckets"]), 500)
        self.assertEqual(doc["measurements"], 18)


if __name__ == "__main__":
    pxtest.main()
