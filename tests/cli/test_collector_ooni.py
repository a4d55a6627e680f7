"""The OONI-shaped export (issue 16): GET /api/v1/export.jsonl?format=ooni
and GET /api/v1/raw_measurement?...&format=ooni give each measurement as
OONI's own JSONL carries it, the signed JSON object with measurement_uid
added as a top-level key. Real measurements of the test world, signed by
the agent, through a real collector (SQLite, and PostgreSQL as
cli.test_collector_ooni.pg). Every line is checked against
schemas/ooni-export-line.schema.json and read back through Python's json
into the signed content's values plus the uid; the default export stays
the {measurement_uid, key_id, content, signature, received_at} wrapper,
byte for byte; docs/researcher.md's join example runs on the export."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import collectorlib as cl
import pxtest

OONI_LINE = pxtest.load_schema("ooni-export-line.schema.json")


def ooni_lines(body):
    """The lines of a format=ooni answer, each schema-checked, parsed."""
    assert body == b"" or body.endswith(b"\n"), body[-100:]
    out = []
    for line in body.decode("utf-8").split("\n")[:-1]:
        assert pxtest.is_compact(line), line[:200]
        out.append(cl.check(OONI_LINE, json.loads(line), "OONI export line"))
    return out


def researcher_block(header):
    """The python block of docs/researcher.md whose first line is header."""
    with open(os.path.join(pxtest.SOURCE, "docs", "researcher.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)
              if b.splitlines()[0].startswith(header)]
    assert len(blocks) == 1, f"docs/researcher.md: expected one python block headed {header!r}"
    return blocks[0]


class OoniExport(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-ooni-")
        # Real measurements: a clean one, an expired chain, a CNAME chain,
        # the iCloud interception on the test world's port.
        cls.lines = cl.measure_lines("www.example.test", "expired.example.test",
                                     "alias2.example.test", "www.icloud.com:8443",
                                     extra=("--probe-cc", "DE", "--probe-asn", "3320"))
        # And bytes a re-serialiser would change: characters beyond ASCII,
        # \u escapes, an escaped slash (the splice must keep them).
        m = json.loads(cl.variant(json.loads(cls.lines[0]), 5))
        m["annotations"]["platform"] = "linux \u00fc\u2013\U0001F600"
        m["annotations"]["note"] = "PLACEHOLDER"
        odd = cl.compact(m).replace("PLACEHOLDER", "caf\\u00e9 a\\/b \\\"q\\\" \\u2028")
        cl.check(cl.MEASUREMENT, json.loads(odd))
        cls.lines.append(odd)
        cls.agent = cl.Agent(os.path.join(cls.tmp, "agent"))
        cls.pairs = cls.agent.sign(cls.lines)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        self.c = cl.Collector(self.dir)
        self.addCleanup(self._stop, self.c)
        self.c.start()

    def _stop(self, c):
        self.assertEqual(c.stop(), 0, "the collector did not stop cleanly:\n" + c.log())

    def accept(self, pairs):
        uids = {}
        for content, sig in pairs:
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
            uids[doc["measurement_uid"]] = content
        return uids

    def ooni_export(self, raw_query="format=ooni"):
        st, headers, body = cl.get(f"{self.c.url}/api/v1/export.jsonl?{raw_query}")
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(headers.get("content-type", "").startswith("application/x-ndjson"),
                        headers)
        return ooni_lines(body), body

    def test_schema_is_the_measurement_plus_measurement_uid(self):
        with open(os.path.join(pxtest.SOURCE, "schemas", "measurement.schema.json")) as f:
            m = json.load(f)
        with open(os.path.join(pxtest.SOURCE, "schemas", "ooni-export-line.schema.json")) as f:
            o = json.load(f)
        self.assertEqual(list(o["properties"]), ["measurement_uid"] + list(m["properties"]))
        self.assertEqual(o["required"], ["measurement_uid"] + m["required"])
        for k in m["properties"]:
            self.assertEqual(o["properties"][k],
                             {"$ref": f"measurement.schema.json#/properties/{k}"}, k)
        self.assertFalse(o["additionalProperties"])
        # The references resolve: a measurement without the uid, or with
        # a wrong value deep inside, is not a line.
        base = dict(json.loads(self.lines[0]),
                    measurement_uid="20141020120000_DE_tlscertconsistency_0123456789abcdef")
        self.assertEqual(list(OONI_LINE.iter_errors(base)), [])
        self.assertTrue(list(OONI_LINE.iter_errors(json.loads(self.lines[0]))))
        bad = json.loads(json.dumps(base))
        bad["test_keys"]["queries"][0]["rcode"] = "NOERROR"
        self.assertTrue(list(OONI_LINE.iter_errors(bad)))

    def test_ooni_export_is_the_signed_content_plus_uid(self):
        uids = self.accept(self.pairs)
        wrapped, _ = self.c.export()
        lines, body = self.ooni_export()
        # The same measurements, in the same order (oldest first).
        self.assertEqual([l["measurement_uid"] for l in lines],
                         [w["measurement_uid"] for w in wrapped])
        self.assertEqual(sorted(l["measurement_uid"] for l in lines), sorted(uids))
        raw_lines = body.split(b"\n")[:-1]
        for line, raw in zip(lines, raw_lines):
            uid = line["measurement_uid"]
            content = uids[uid]
            signed = json.loads(content)
            # Through Python's json: the signed values, measurement_uid
            # added, nothing else; the uid first, then the signed order.
            self.assertEqual(line, dict(signed, measurement_uid=uid))
            self.assertEqual(list(line), ["measurement_uid"] + list(signed))
            self.assertNotIn("measurement_uid", signed)
            # Spliced, not re-serialised: '{' plus what follows the uid
            # member is the signed bytes, so a line still verifies.
            prefix = b'{"measurement_uid":"' + uid.encode() + b'",'
            self.assertTrue(raw.startswith(prefix), raw[:100])
            self.assertEqual(b"{" + raw[len(prefix):], content)
            # raw_measurement?format=ooni is the same line, no newline.
            st, headers, one = cl.get(self.c.api("/api/v1/raw_measurement",
                                                 measurement_uid=uid, format="ooni"))
            self.assertEqual(st, 200, one[:300])
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            self.assertEqual(one, raw)
            # ... and without format the signed bytes, as before.
            self.assertEqual(self.c.raw(uid)[2], content)

    def test_filters_apply_unchanged(self):
        more = self.agent.sign([cl.variant(json.loads(self.lines[0]), i, cc=cc, asn=asn)
                                for i, (cc, asn) in enumerate(
                                    [("CN", "AS4134"), ("CN", "AS4837"), ("IR", "AS197207"),
                                     ("CN", "AS4134")])])
        self.accept(self.pairs + more)
        queries = [dict(probe_cc="CN"), dict(probe_asn="4134"), dict(probe_cc="cn", since="2014-10-20T12:01:00Z"),
                   dict(domain="WWW.EXAMPLE.TEST", until="2014-10-20T12:03:00Z"),
                   dict(test_name="tls_cert_consistency"), dict(key_id=self.agent.key_id),
                   dict(domain="nothing.example.test")]
        for params in queries:
            with self.subTest(**params):
                wrapped, _ = self.c.export(**params)
                url = self.c.api("/api/v1/export.jsonl", format="ooni", **params)
                lines, _ = self.ooni_export(url.split("?", 1)[1])
                self.assertEqual([l["measurement_uid"] for l in lines],
                                 [w["measurement_uid"] for w in wrapped])
        self.assertEqual(len(self.ooni_export("probe_cc=CN&format=ooni")[0]), 3)
        # Paging parameters stay the listing's, format the export's.
        for q in ("format=ooni&limit=10", "format=ooni&cursor=x", "format=ooni&probe_city=x"):
            cl.error_body(cl.get(f"{self.c.url}/api/v1/export.jsonl?{q}"), 400, "bad_query")
        cl.error_body(cl.get(f"{self.c.url}/api/v1/measurements?format=ooni"), 400, "bad_query")

    def test_unknown_format_is_400(self):
        uid = next(iter(self.accept(self.pairs[:1])))
        for value in ("xml", "", "OONI", "ooni%20", "json", "%C3%BC" * 40):
            with self.subTest(format=value):
                doc = cl.error_body(cl.get(f"{self.c.url}/api/v1/export.jsonl?format={value}"),
                                    400, "bad_query")
                self.assertIn("format", doc["detail"])
                cl.error_body(cl.get(f"{self.c.url}/api/v1/raw_measurement?"
                                     f"measurement_uid={uid}&format={value}"), 400, "bad_query")
        doc = cl.error_body(cl.get(f"{self.c.url}/api/v1/export.jsonl?format=xml"), 400,
                            "bad_query")
        self.assertIn('"ooni"', doc["detail"])
        self.assertIn("xml", doc["detail"])
        for q in ("format=ooni&format=ooni", "format=ooni", f"measurement_uid={uid}&format=ooni&x=1"):
            cl.error_body(cl.get(f"{self.c.url}/api/v1/raw_measurement?{q}"), 400, "bad_query")
        cl.error_body(cl.get(f"{self.c.url}/api/v1/export.jsonl?format=ooni&format=ooni"), 400,
                      "bad_query")
        # The signature has one form.
        cl.error_body(cl.get(f"{self.c.url}/api/v1/measurement_signature?"
                             f"measurement_uid={uid}&format=ooni"), 400, "bad_query")
        cl.error_body(cl.get(self.c.api("/api/v1/raw_measurement", format="ooni",
                                        measurement_uid="20141020120000_DE_tlscertconsistency_"
                                                        "0000000000000000")), 404, "not_found")

    def test_default_export_is_unchanged(self):
        uids = self.accept(self.pairs)
        wrapped, body = self.c.export()
        # Byte for byte the wrapper it always was: these members in this
        # order, compact, the content as a JSON string of the signed bytes.
        expect = b"".join(
            cl.compact({"measurement_uid": w["measurement_uid"], "key_id": self.agent.key_id,
                        "content": uids[w["measurement_uid"]].decode("utf-8"),
                        "signature": dict(self.pairs)[uids[w["measurement_uid"]]],
                        "received_at": w["received_at"]}).encode("utf-8") + b"\n"
            for w in wrapped)
        self.assertEqual(body, expect)
        self.assertEqual(len(wrapped), len(self.pairs))

    def test_a_row_altered_in_the_database_is_left_out_not_cut(self):
        # More rows than one batch of the export (200), the first 201 then
        # made into what upload never stores: whole batches yield no line,
        # and the export still goes on to the rest.
        base = json.loads(self.lines[0])
        many = self.agent.sign([cl.variant(base, i) for i in range(230)])
        uids = self.accept(many + self.pairs)
        order = [w["measurement_uid"] for w in self.c.export()[0]]
        self.assertEqual(len(order), len(uids))
        bad = order[:201]
        odd = {bad[0]: b'{"a":1}\n{"b":2}', bad[1]: b'{"a": 1}', bad[2]: b"[1,2]",
               bad[3]: b'{"measurement_uid":"x","a":1}', bad[4]: b'{"a":"\xff"}',
               bad[5]: b'{"a":1,"a":2}', bad[6]: b'{"a":1'}
        # Edited while the collector is stopped: its writer and analysis
        # would hold SQLite's lock against the sqlite3 command.
        self.assertEqual(self.c.stop(), 0, self.c.log())
        db = self.c.database
        edits = []
        for uid in bad:
            content = odd.get(uid, b'{"a":1}{"b":2}')
            value = f"decode('{content.hex()}', 'hex')" if db.pg else f"X'{content.hex()}'"
            edits.append(f"UPDATE measurements SET content = {value} WHERE uid = '{uid}';")
        db.sql(" ".join(edits))
        self.c.start()
        lines, _ = self.ooni_export()
        self.assertEqual([l["measurement_uid"] for l in lines], order[201:])
        for l in lines:
            self.assertEqual(l, dict(json.loads(uids[l["measurement_uid"]]),
                                     measurement_uid=l["measurement_uid"]))
        # The default export still carries every row, as stored.
        self.assertEqual(len(self.c.export()[0]), len(order))
        for uid in list(odd)[:3]:
            cl.error_body(cl.get(self.c.api("/api/v1/raw_measurement", measurement_uid=uid,
                                            format="ooni")), 500, "storage_error")
        self.assertIn("left out of format=ooni", self.c.log())
        self.assertTrue(self.c.running())

    def test_researcher_join_example_runs_on_the_export(self):
        uids = self.accept(self.pairs)
        _, body = self.ooni_export()
        export = os.path.join(self.dir, "ooni.jsonl")
        with open(export, "wb") as f:
            f.write(body)
        script = os.path.join(self.dir, "join_ooni.py")
        with open(script, "w") as f:
            f.write(researcher_block("# join_ooni.py"))
        p = subprocess.run([sys.executable, script, export], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [r.split("\t") for r in p.stdout.splitlines()]
        # One row per TCP connect, each with the lookup that answered its
        # address and the handshake that followed, joined by
        # (transaction_id, ip, port), checked here independently.
        want = []
        for uid, content in uids.items():
            m = json.loads(content)
            tk = m["test_keys"]
            for c in tk["tcp_connect"]:
                q = next((q for q in tk["queries"] if q["transaction_id"] == c["transaction_id"]
                          and any(c["ip"] in (a.get("ipv4"), a.get("ipv6")) for a in q["answers"])),
                         None)
                h = [h for h in tk["tls_handshakes"] if h["transaction_id"] == c["transaction_id"]
                     and h["address"] in (f'{c["ip"]}:{c["port"]}', f'[{c["ip"]}]:{c["port"]}')]
                self.assertLessEqual(len(h), 1)
                want.append([uid, m["probe_cc"], m["probe_asn"], m["input"], c["ip"],
                             str(c["port"]),
                             f'{q["resolver_address"]} {q["query_type"]}' if q else "-",
                             c["status"]["failure"] or "ok",
                             (h[0]["failure"] or h[0]["tls_version"]) if h else "-"])
        self.assertEqual(sorted(rows), sorted(want))
        self.assertTrue(any(r[8].startswith("TLSv1") for r in rows), rows)
        self.assertTrue(any(r[8] == "ssl_invalid_certificate" for r in rows), rows)


if __name__ == "__main__":
    pxtest.main()
