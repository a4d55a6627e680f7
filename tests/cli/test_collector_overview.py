"""The overview (issue 17, docs/api.md): / without domain= is a
server-rendered matrix of domains x countries that needs no script, and
GET /api/v1/overview is the same matrix as JSON. Real measurements of the
test world, signed by agents in four countries, through a real collector
(SQLite, and PostgreSQL as cli.test_collector_overview.pg): China's view of
www.icloud.com is the 2014 interception (--address PX_TLS_MITM), everyone
else's is the real one. The page is read with Python's html.parser, the
JSON checked against schemas/overview.schema.json and, cell by cell,
against GET /api/v1/compare, whose verdicts it must only regroup."""
import html.parser
import json
import os
import shutil
import tempfile
import urllib.parse

import collectorlib as cl
import pxtest

OVERVIEW = pxtest.load_schema("overview.schema.json")
COMPARE = pxtest.load_schema("compare.schema.json")
# Least to most severe, as collector/analysis/verdict.c ranks them.
RANKED = ["insufficient_data", "consistent", "tls_divergent", "tls_blocked",
          "dns_inconsistent", "tls_interception"]
CSP = "default-src 'self'; frame-ancestors 'none'"
HOSTILE = "\"><script>alert('x')</script><img src=x onerror=alert(1)>&amp;"


def on_the_real_address(line):
    """The interceptor's handshake as the 2014 path showed it: at iCloud's
    own address. The loopback world cannot put the MITM on that address (the
    namespace world does it with DNAT), so its real handshake, made with
    --address PX_TLS_MITM, is moved there, and the handshake with the real
    server dropped, before the agent signs the measurement."""
    icloud, mitm = pxtest.PEER["PX_TLS_ICLOUD"], pxtest.PEER["PX_TLS_MITM"]
    m = json.loads(line)
    tk = m["test_keys"]
    tk["tls_handshakes"] = [h for h in tk["tls_handshakes"]
                            if not h["address"].startswith(icloud + ":")]
    tk["tcp_connect"] = [c for c in tk["tcp_connect"] if c["ip"] != icloud]
    assert any(h["address"].startswith(mitm + ":") for h in tk["tls_handshakes"]), line[:300]
    out = cl.compact(m).replace(mitm, icloud)
    cl.check(cl.MEASUREMENT, json.loads(out), "moved measurement")
    return out


class Page(html.parser.HTMLParser):
    """The elements a test asserts on: every start tag (with attributes),
    the overview table's cells row by row (text, links, attributes), its
    caption, and the text of elements with an id."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.rows, self.caption, self.by_id = [], [], None, {}
        self._in_table = self._in_caption = False
        self._cell = None
        self._ids = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table" and a.get("id") == "overview":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("th", "td"):
            self._cell = {"tag": tag, "attrs": a, "text": "", "links": []}
            self.rows[-1].append(self._cell)
        elif self._in_table and tag == "caption":
            self._in_caption, self.caption = True, ""
        elif tag == "a" and self._cell is not None:
            self._cell["links"].append(a.get("href"))
        if "id" in a and tag not in ("br", "input"):
            self._ids.append((tag, a["id"]))
            self.by_id[a["id"]] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag in ("th", "td"):
            self._cell = None
        elif tag == "caption":
            self._in_caption = False
        if self._ids and self._ids[-1][0] == tag:
            self._ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_caption:
            self.caption += data
        for _, i in self._ids:
            self.by_id[i] += data

    def matrix(self):
        """{domain: {column header: cell}} and the header cells."""
        head, body = self.rows[0], self.rows[1:]
        names = [c["text"] for c in head]
        return {r[0]["text"]: dict(zip(names[1:], r[1:])) for r in body}, head


class Overview(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-overview-")
        cls.pairs = []
        for cc, asn in (("DE", "3320"), ("US", "7922"), ("FR", "3215")):
            lines = cl.measure_lines("www.icloud.com", "www.example.test",
                                     extra=("--probe-cc", cc, "--probe-asn", asn))
            cls.pairs += cl.Agent(os.path.join(cls.tmp, f"agent-{cc}")).sign(lines)
        lines = [on_the_real_address(line) for line in cl.measure_lines("www.icloud.com", extra=(
            "--probe-cc", "CN", "--probe-asn", "4134", "--address", pxtest.PEER["PX_TLS_MITM"]))]
        lines += cl.measure_lines("www.example.test", extra=("--probe-cc", "CN",
                                                              "--probe-asn", "4134"))
        cls.pairs += cl.Agent(os.path.join(cls.tmp, "agent-CN")).sign(lines)
        # The test world's CA is the collector's reference trust store.
        cls.c = cl.Collector(tempfile.mkdtemp(dir=cls.tmp), extra=["--ca-file", pxtest.CA])
        cls.c.start()
        for content, sig in cls.pairs:
            st, doc = cls.c.submit(cl.submit_body(content, sig))
            assert st == 200, doc

    @classmethod
    def tearDownClass(cls):
        rc = cls.c.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, "the collector did not stop cleanly"

    def page(self, status=200, **params):
        st, headers, body = cl.get(self.c.api("/", **params))
        self.assertEqual(st, status, body[:500])
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        self.assertEqual(headers.get("content-security-policy"), CSP)
        text = body.decode("utf-8")
        p = Page(text)
        # Nothing inline that the policy would block (the page works without it).
        for tag, attrs in p.tags:
            self.assertNotEqual(tag, "style")
            self.assertTrue(tag != "script" or attrs.get("src") == "/static/app.js", attrs)
            self.assertFalse([a for a in attrs if a.startswith("on")], (tag, attrs))
        return p

    def api(self, status=200, **params):
        st, headers, body = cl.get(self.c.api("/api/v1/overview", **params))
        self.assertEqual(st, status, body[:300])
        return cl.json_body(st, headers, body, OVERVIEW if status == 200 else cl.ERROR, "overview")

    def test_the_flagged_cell(self):
        p = self.page()
        m, head = p.matrix()
        self.assertTrue(all(c["tag"] == "th" and c["attrs"].get("scope") == "col" for c in head))
        self.assertEqual([c["text"] for c in head][:2], ["domain", "most severe"])
        self.assertLessEqual({"CN", "DE", "FR", "US"}, {c["text"] for c in head})
        self.assertIn("Verdicts by domain and country", p.caption)
        cell = m["www.icloud.com"]["CN"]
        # The verdict is text (the class only repeats it), with its counts.
        self.assertIn("tls_interception", cell["text"])
        self.assertRegex(cell["text"], r"\d+% confidence, 1 vantage\(s\), 1 measurement\(s\)")
        self.assertEqual(cell["links"], ["/?domain=www.icloud.com"])
        self.assertEqual(m["www.icloud.com"]["most severe"]["text"], "tls_interception")
        for cc in ("DE", "FR", "US"):
            self.assertIn("consistent", m["www.icloud.com"][cc]["text"])
            self.assertNotIn("tls_interception", m["www.example.test"][cc]["text"])
        # Row headers: scope=row, a link to the domain's own page.
        rows = [r for r in p.rows[1:] if r[0]["text"] == "www.icloud.com"]
        self.assertEqual(rows[0][0]["attrs"].get("scope"), "row")
        self.assertEqual(rows[0][0]["links"], ["/?domain=www.icloud.com"])
        # The target list is there, measured or not.
        self.assertEqual(m["signal.org"]["most severe"]["text"], "no measurements")
        self.assertIn("Analysed at", p.by_id["analysed"])
        self.assertIn("at most 200", p.by_id["analysed"])
        # A form with a submit button filters; the drill-down form too.
        forms = [a for t, a in p.tags if t == "form"]
        self.assertEqual([f.get("id") for f in forms], ["filters", "f"])
        self.assertTrue(all(f.get("method") == "get" and f.get("action") == "/" for f in forms))
        self.assertEqual(sum(1 for t, a in p.tags if t == "button" and a.get("type") == "submit"), 2)
        self.assertLessEqual({"window", "cc", "verdict", "sort"},
                             {a.get("name") for t, a in p.tags if t in ("input", "select")})

    def test_the_domain_page_is_as_it_was(self):
        st, headers, body = cl.get(self.c.api("/", domain="www.icloud.com"))
        self.assertEqual(st, 200)
        self.assertEqual(headers.get("content-security-policy"), CSP)
        self.assertIn(b"<div id=status>Choose a domain.</div>", body)
        self.assertNotIn(b"id=overview", body)

    def test_filters_and_sorting(self):
        m, head = self.page(cc="CN").matrix()
        self.assertEqual([c["text"] for c in head], ["domain", "most severe", "CN"])
        self.assertEqual(set(m), {"www.icloud.com", "www.example.test"})
        m, _ = self.page(verdict="tls_interception").matrix()
        self.assertEqual(set(m), {"www.icloud.com"})
        p = self.page(cc="de", verdict="tls_interception")
        self.assertEqual(p.matrix()[0], {})
        self.assertEqual(p.by_id["empty"], "No domain matches.")
        # Lower case is taken; several countries with commas.
        m, head = self.page(cc="de,CN").matrix()
        self.assertEqual([c["text"] for c in head][2:], ["CN", "DE"])
        for sort in ("severity", "CN"):
            p = self.page(sort=sort)
            self.assertEqual(p.rows[1][0]["text"], "www.icloud.com", sort)
            sorted_th = [c for c in p.rows[0] if c["attrs"].get("aria-sort")]
            self.assertEqual([c["text"] for c in sorted_th], ["most severe" if sort == "severity" else sort])
        p = self.page()
        domains = [r[0]["text"] for r in p.rows[1:]]
        self.assertEqual(domains, sorted(domains))
        # The header cells link to the sorts, keeping the filters.
        p = self.page(verdict="tls_interception", window="7d")
        links = [c["links"][0] for c in p.rows[0]]
        for link, sort in zip(links, ["domain", "severity", "CN"]):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
            self.assertEqual(q, {"sort": [sort], "window": ["7d"], "verdict": ["tls_interception"]})
        # Following one is the sorted page.
        st, _, body = cl.get(self.c.url + links[1])
        self.assertEqual(st, 200)
        # A window by since/until, as the form carries it on.
        doc = self.api()
        m, _ = self.page(since=doc["since"], until=doc["until"]).matrix()
        self.assertIn("tls_interception", m["www.icloud.com"]["CN"]["text"])
        m, _ = self.page(since="2014-10-20T00:00:00Z", until="2014-10-21T00:00:00Z").matrix()
        self.assertEqual(m["www.icloud.com"]["most severe"]["text"], "no measurements")

    def test_hostile_parameters_are_text(self):
        for name in ("cc", "verdict", "sort", "window", "since", HOSTILE[:10]):
            with self.subTest(name):
                p = self.page(status=400, **{name: HOSTILE})
                # No element came from the value: only the page's own tags.
                self.assertEqual({t for t, _ in p.tags}, {"html", "head", "meta", "title", "link",
                                                          "body", "h1", "p", "a"})
                self.assertIn(name if name != "cc" and len(name) == 10 else HOSTILE[:60],
                              p.by_id["error"])
                err = self.api(status=400, **{name: HOSTILE})
                self.assertEqual(err["error"], "bad_query")

    def test_the_api_agrees_with_compare(self):
        doc = self.api()
        self.assertEqual(doc["domains_max"], 200)
        self.assertFalse(doc["domains_truncated"])
        self.assertTrue(doc["analysis_complete"])
        rows = {r["domain"]: r for r in doc["domains"]}
        st, _, cmp = cl.get(self.c.api("/api/v1/compare", domain="www.icloud.com"))
        self.assertEqual(rows["www.icloud.com"]["cells"]["CN"]["verdict"], "tls_interception",
                         cmp[:3000])
        self.assertEqual(rows["www.icloud.com"]["worst_verdict"], "tls_interception")
        self.assertTrue(rows["signal.org"]["target"])
        self.assertFalse(rows["www.example.test"]["target"])
        for domain, row in rows.items():
            st, headers, body = cl.get(self.c.api("/api/v1/compare", domain=domain,
                                                  since=doc["since"], until=doc["until"]))
            self.assertEqual(st, 200, body[:300])
            cmp = cl.json_body(st, headers, body, COMPARE, "compare")
            want = {}
            for g in cmp["vantages"]:
                want.setdefault(g["probe_cc"], []).append(g)
            self.assertEqual(set(row["cells"]), set(want), domain)
            for cc, groups in want.items():
                cell = row["cells"][cc]
                best = max(groups, key=lambda g: (RANKED.index(g["verdict"]), g["confidence"]))
                self.assertEqual(cell["verdict"], best["verdict"], (domain, cc))
                self.assertAlmostEqual(cell["confidence"], best["confidence"])
                self.assertEqual(cell["vantage_count"], sum(g["vantage_count"] for g in groups))
                self.assertEqual(cell["measurements"],
                                 sum(g["observed"]["measurements"] for g in groups))
                self.assertEqual(sorted((g["probe_asn"], g["verdict"]) for g in cell["groups"]),
                                 sorted((g["probe_asn"], g["verdict"]) for g in groups))
        # Filters as on the page; the page shows the document.
        doc = self.api(cc="CN", verdict="tls_interception", sort="severity")
        self.assertEqual(doc["countries"], ["CN"])
        self.assertEqual([r["domain"] for r in doc["domains"]], ["www.icloud.com"])
        self.assertEqual(doc["filters"], {"cc": ["CN"], "verdict": "tls_interception"})
        self.assertEqual(self.api(window="30d")["window"], "30d")
        for bad in ({"window": "1y"}, {"since": "2026-01-01T00:00:00Z", "window": "7d"},
                    {"until": "2014-01-01T00:00:00Z", "since": "2015-01-01T00:00:00Z"},
                    {"domain": "www.icloud.com"}, {"cc": ",".join(["DE"] * 33)}):
            self.api(status=400, **bad)


if __name__ == "__main__":
    pxtest.main()
