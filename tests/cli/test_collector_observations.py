"""GET /api/v1/observations.csv (issue 17, docs/api.md): the export
flattened, one RFC 4180 row per DNS answer (or query without one), late
DNS answer, TCP connect and TLS handshake. Real measurements of the test
world (the 2014 iCloud interception among them: its RFC 4514 subject
carries commas), signed by the agent, through a real collector (SQLite, and
PostgreSQL as cli.test_collector_observations.pg). The rows are read with
Python's csv module and compared with rows built here, independently,
from the default export's signed contents; filters apply as for the
export; the header is the documented one."""
import csv
import io
import json
import os
import re
import shutil
import tempfile

import collectorlib as cl
import pxtest


COLUMNS = ("measurement_uid,measurement_start_time,probe_cc,probe_asn,input,observation,"
           "transaction_id,t0,t,engine,resolver_address,hostname,query_type,rcode,answer_type,"
           "answer,ttl,ip,port,server_name,tls_version,cipher_suite,failure,leaf_sha256,"
           "leaf_subject,leaf_issuer,verification_ok,hostname_match").split(",")


def expected_rows(uid, m):
    """The documented columns, built from the measurement (docs/api.md)."""
    def text(v):
        if v is None or isinstance(v, (dict, list)):
            return ""
        if v is True or v is False:
            return "true" if v else "false"
        return str(v) if not isinstance(v, float) else format(v, ".9g")
    base = {"measurement_uid": uid, "measurement_start_time": m["measurement_start_time"],
            "probe_cc": m["probe_cc"], "probe_asn": m["probe_asn"], "input": m["input"]}
    tk, rows = m["test_keys"], []

    def flow(kind, o):
        r = dict(base, observation=kind, transaction_id=o.get("transaction_id"),
                 t0=o.get("t0"), t=o.get("t"))
        return r
    for key, kind in (("queries", "dns_answer"), ("dns_late_replies", "dns_late_answer")):
        for q in tk.get(key) or []:
            r = flow(kind, q)
            r.update({k: q.get(k) for k in ("engine", "resolver_address", "hostname",
                                             "query_type", "rcode", "failure")})
            for a in q.get("answers") or [None]:
                ar = dict(r)
                if a is not None:
                    ar.update(answer_type=a["answer_type"], ttl=a.get("ttl"),
                              answer=a.get("ipv4", a.get("ipv6", a.get("hostname"))))
                rows.append(ar)
    for c in tk.get("tcp_connect") or []:
        r = flow("tcp_connect", c)
        r.update(ip=c["ip"], port=c["port"], failure=c["status"]["failure"])
        rows.append(r)
    for h in tk.get("tls_handshakes") or []:
        r = flow("tls_handshake", h)
        ip, port = re.match(r"^\[?(.*?)\]?:(\d+)$", h["address"]).groups()
        leaf = (h.get("peer_certificates") or [{}])[0]
        v = h.get("verification") or {}
        r.update(ip=ip, port=port, server_name=h["server_name"], tls_version=h["tls_version"],
                 cipher_suite=h["cipher_suite"], failure=h["failure"],
                 leaf_sha256=leaf.get("sha256"), leaf_subject=leaf.get("subject"),
                 leaf_issuer=leaf.get("issuer"), verification_ok=v.get("ok"),
                 hostname_match=v.get("hostname_match"))
        rows.append(r)
    return [{k: text(r.get(k)) for k in COLUMNS} for r in rows]


class Observations(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-observations-")
        cls.lines = cl.measure_lines("www.example.test", "expired.example.test",
                                     "alias2.example.test", "nx.example.test",
                                     "www.icloud.com:8443",
                                     extra=("--probe-cc", "CN", "--probe-asn", "4134"))
        cls.lines += cl.measure_lines("www.icloud.com", extra=(
            "--probe-cc", "CN", "--probe-asn", "4134", "--address", pxtest.PEER["PX_TLS_MITM"]))
        cls.lines += cl.measure_lines("www.example.test", extra=("--probe-cc", "DE",
                                                                  "--probe-asn", "3320"))
        cls.agent = cl.Agent(os.path.join(cls.tmp, "agent"))
        cls.pairs = cls.agent.sign(cls.lines)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.c = cl.Collector(tempfile.mkdtemp(dir=self.tmp))
        self.addCleanup(self.c.stop)
        self.c.start()
        for content, sig in self.pairs:
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)

    def csv(self, query=""):
        st, headers, body = cl.get(f"{self.c.url}/api/v1/observations.csv{query}")
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(headers.get("content-type", "").startswith("text/csv"), headers)
        text = body.decode("utf-8")
        self.assertTrue(text.startswith(",".join(COLUMNS) + "\r\n"), text[:300])
        # RFC 4180: every record ends in CRLF, also inside a quoted field
        # none is cut (the csv module reads the same records back).
        self.assertTrue(text.endswith("\r\n"))
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def expected(self, **filters):
        lines, _ = self.c.export(**filters)
        rows = []
        for line in lines:
            rows += expected_rows(line["measurement_uid"], json.loads(line["content"]))
        return rows

    def test_rows_are_the_measurements_observations(self):
        rows = self.csv()
        self.assertEqual(rows, self.expected())
        kinds = {r["observation"] for r in rows}
        self.assertLessEqual({"dns_answer", "tcp_connect", "tls_handshake"}, kinds)
        # The interception's subject has commas: quoted, read back whole.
        mitm = [r for r in rows if r["observation"] == "tls_handshake" and
                r["ip"] == pxtest.PEER["PX_TLS_MITM"] and r["verification_ok"] == "false"]
        self.assertTrue(mitm, "no unverified iCloud handshake in the test world's answers")
        self.assertTrue(any("," in r["leaf_subject"] for r in mitm), mitm[0])
        # A CNAME chain gives a row per record; NXDOMAIN a row without an answer.
        self.assertTrue(any(r["answer_type"] == "CNAME" for r in rows))
        self.assertTrue(any(r["input"] == "nx.example.test" and r["answer"] == "" for r in rows))

    def test_filters_and_refusals(self):
        rows = self.csv("?probe_cc=DE")
        self.assertTrue(rows)
        self.assertEqual({r["probe_cc"] for r in rows}, {"DE"})
        self.assertEqual(rows, self.expected(probe_cc="DE"))
        self.assertEqual(self.csv("?domain=nothing.example"), [])
        for bad in ("?format=ooni", "?limit=5", "?nonsense=1"):
            st, _, body = cl.get(f"{self.c.url}/api/v1/observations.csv{bad}")
            self.assertEqual(st, 400, bad)
            cl.check(cl.ERROR, json.loads(body), bad)


if __name__ == "__main__":
    pxtest.main()
