"""The collector API end to end, with real processes: measurements made by
the agent against the test world, signed by the agent and by OpenSSH,
submitted to a real parallax-collector, read back through every endpoint
and verified with the real `ssh-keygen -Y verify`. Every JSON document the
collector emits is validated against its schema in schemas/."""
import base64
import datetime
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import collectorlib as cl
import pxtest


def _flip(content, old, new):
    """content (bytes) with the first old replaced by new (same length)."""
    assert len(old) == len(new) and old in content, (old, new)
    return content.replace(old, new, 1)


class Api(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-api-")
        # Real measurements of the test world, byte for byte as the agent
        # writes them.
        cls.lines = cl.measure_lines("www.example.test", "expired.example.test",
                                     "alias2.example.test", "www.icloud.com:8443",
                                     extra=("--probe-cc", "DE", "--probe-asn", "3320"))
        cls.base = json.loads(cls.lines[0])
        cls.agent = cl.Agent(os.path.join(cls.tmp, "agent"))
        cls.agent_pairs = cls.agent.sign(cls.lines)
        cls.ssh = cl.SSHKey(cls.tmp, "openssh_key")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        self.c = self.collector()

    def collector(self, extra=()):
        c = cl.Collector(self.dir, extra=extra)
        self.addCleanup(self._stop, c)
        return c.start()

    def _stop(self, c):
        rc = c.stop()
        self.assertEqual(rc, 0, "the collector did not stop cleanly on SIGTERM:\n" + c.log())

    def variants(self, n, **kw):
        return [cl.variant(self.base, i, **kw) for i in range(n)]

    def accept(self, content, signature):
        st, doc = self.c.submit(cl.submit_body(content, signature))
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["verification_status"], "verified")
        return doc

    # ---- 1 ---------------------------------------------------------------

    def test_agent_signed_export_verifies_with_openssh(self):
        pairs = self.agent_pairs + self.agent.sign(self.variants(3, cc="US", asn="AS7922"))
        uids = {}
        for content, sig in pairs:
            doc = self.accept(content, sig)
            self.assertEqual(doc["key_id"], self.agent.key_id)
            self.assertFalse(doc["duplicate"])
            uids[content] = doc["measurement_uid"]
        self.assertEqual(len(set(uids.values())), len(pairs))

        signers = self.c.allowed_signers()
        entries = [l for l in signers.splitlines() if l.strip() and not l.startswith("#")]
        self.assertEqual(len(entries), 1, signers)
        principal, options, keytype, keyb64 = entries[0].split()[:4]
        self.assertEqual(principal, self.agent.key_id)
        self.assertEqual(options, 'namespaces="parallax-measurement-v1"')
        self.assertEqual(f"{keytype} {keyb64}", " ".join(self.agent.pub.split()[:2]))

        lines, raw = self.c.export()
        self.assertEqual(len(lines), len(pairs))
        by_content = dict(pairs)
        for line in lines:
            content = line["content"].encode("utf-8")
            self.assertIn(content, by_content, "export holds bytes that were never submitted")
            self.assertEqual(line["signature"], by_content[content])
            self.assertEqual(line["measurement_uid"], uids[content])
            self.assertEqual(line["key_id"], self.agent.key_id)
            # The real OpenSSH, with the collector's allowed_signers.
            p = cl.ssh_verify(self.dir, signers, line["key_id"], content, line["signature"])
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b'Good "parallax-measurement-v1" signature for ' + line["key_id"].encode(),
                          p.stdout + p.stderr)
            p = cl.ssh_check_novalidate(self.dir, content, line["signature"])
            self.assertEqual(p.returncode, 0, p.stderr)
            # One changed byte and OpenSSH refuses.
            changed = _flip(content, b'"probe_cc":"', b'"probe_cc":_')
            for bad in (changed, content + b"\n", content[:-1]):
                p = cl.ssh_verify(self.dir, signers, line["key_id"], bad, line["signature"])
                self.assertNotEqual(p.returncode, 0, bad[:80])
            p = cl.ssh_check_novalidate(self.dir, changed, line["signature"])
            self.assertNotEqual(p.returncode, 0)

        # parallax verify on the export as downloaded, and on a tampered copy.
        sig_file = os.path.join(self.dir, "allowed_signers")
        with open(sig_file, "w") as f:
            f.write(signers)
        export = os.path.join(self.dir, "export.jsonl")
        with open(export, "wb") as f:
            f.write(raw)
        p = pxtest.run(["verify", "--allowed-signers", sig_file, export])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(f"{len(pairs)} verified, 0 failed", p.stdout)
        tampered = os.path.join(self.dir, "tampered.jsonl")
        text = raw.decode().splitlines()
        victim = json.loads(text[2])
        victim["content"] = victim["content"].replace('"probe_asn":"AS', '"probe_asn":"AT', 1)
        text[2] = json.dumps(victim, separators=(",", ":"), ensure_ascii=False)
        with open(tampered, "w") as f:
            f.write("\n".join(text) + "\n")
        p = pxtest.run(["verify", "--allowed-signers", sig_file, tampered])
        self.assertNotEqual(p.returncode, 0, p.stdout)
        out = p.stdout + p.stderr
        self.assertIn(f"{tampered}:3", out)
        self.assertRegex(out, rf"{tampered}:3: FAILED")
        for n in (1, 2, 4):
            self.assertNotRegex(out, rf"{tampered}:{n}: FAILED")
        # A line that names another signer than the one that signed it, and
        # an allowed_signers file without the agent's key: refused.
        text = raw.decode().splitlines()
        victim = json.loads(text[1])
        victim["key_id"] = self.ssh.key_id
        text[1] = json.dumps(victim)
        with open(tampered, "w") as f:
            f.write("\n".join(text) + "\n")
        p = pxtest.run(["verify", "--allowed-signers", sig_file, tampered])
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertRegex(p.stdout + p.stderr, rf"{tampered}:2: FAILED")
        self.assertNotRegex(p.stdout + p.stderr, rf"{tampered}:[13]: FAILED")
        others = os.path.join(self.dir, "other_signers")
        with open(others, "w") as f:
            f.write(f'{self.ssh.key_id} namespaces="parallax-measurement-v1" {self.ssh.pub}\n')
        p = pxtest.run(["verify", "--allowed-signers", others, export])
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"0 verified, {len(pairs)} failed", p.stdout)

    # ---- 2 ---------------------------------------------------------------

    def test_openssh_signed_measurement_accepted(self):
        contents = self.variants(2, cc="CN", asn="AS4134")
        pairs = self.ssh.sign(contents)
        for content, sig in pairs:
            doc = self.accept(content, sig)
            self.assertEqual(doc["key_id"], self.ssh.key_id)
            st, headers, body = self.c.raw(doc["measurement_uid"])
            self.assertEqual((st, body), (200, content))
        signers = self.c.allowed_signers()
        self.assertIn(f'{self.ssh.key_id} namespaces="parallax-measurement-v1" '
                      + " ".join(self.ssh.pub.split()[:2]), signers)
        lines, _ = self.c.export()
        self.assertEqual(len(lines), 2)
        for line in lines:
            p = cl.ssh_verify(self.dir, signers, self.ssh.key_id, line["content"].encode(),
                              line["signature"])
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_url_and_idn_inputs_are_filed_under_their_host(self):
        # What the agent now reads (a Citizen Lab list's URLs, U-labels)
        # reaches the collector as written; it files each under the host
        # it measured (the A-label, lower case), so listing, export and
        # compare by domain find it whichever spelling the input used.
        lines = cl.measure_lines("https://www.example.test/a/b?q=1#frag",
                                 "https://bücher.example.test/straße",
                                 extra=("--probe-cc", "DE", "--probe-asn", "3320"))
        for content, sig in self.agent.sign(lines):
            self.accept(content, sig)
        www = self.c.list_all(domain="www.example.test")
        self.assertEqual([r["input"] for r in www], ["https://www.example.test/a/b?q=1#frag"])
        idn = self.c.list_all(domain="xn--bcher-kva.example.test")
        self.assertEqual([r["input"] for r in idn], ["https://bücher.example.test/straße"])
        exported, _ = self.c.export(domain="xn--bcher-kva.example.test")
        self.assertEqual([json.loads(e["content"])["input"] for e in exported],
                         ["https://bücher.example.test/straße"])
        cl.wait_until(lambda: self.c.accepted() == 2, 10, "both accepted")
        st, _, body = cl.get(self.c.api("/api/v1/compare", domain="https://WWW.example.test/x"))
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["domain"], "www.example.test")

    def test_targets_file_is_read_as_the_agent_reads_one(self):
        # A Citizen Lab list (BOM, CRLF, quoted fields) is handed out at
        # check-in from its url column, a #fragment and all.
        path = os.path.join(self.dir, "targets.csv")
        with open(path, "wb") as f:
            f.write("\ufeffurl,category_code,category_description,date_added,source,notes\r\n"
                    "https://www.icloud.com/#mail,COMT,\"Communication, tools\",2014-10-20,,\r\n"
                    "https://bücher.example.test/,NEWS,News,2020-01-01,,\"a \"\"quoted\"\" note\"\r\n"
                    .encode())
        c = self.collector(extra=("--targets", path))
        st, _, body = cl.post(c.url + "/api/v1/check-in",
                              {"software_name": "parallax", "software_version": "test"})
        self.assertEqual(st, 200, body)
        self.assertEqual([t["input"] for t in json.loads(body)["targets"]],
                         ["https://www.icloud.com/#mail", "https://bücher.example.test/"])
        # Mistakes stop the start with the file and line, exit 2.
        cases = {"empty.txt": (b"# nothing here\n\n", "no targets"),
                 "bad.txt": (b"www.example.test\n192.0.2.1\n", "bad.txt:2: bad target '192.0.2.1'"),
                 "utf16.txt": ("www.example.test\n".encode("utf-16"), "UTF-16")}
        for name, (data, needle) in cases.items():
            with self.subTest(name):
                p = os.path.join(self.dir, name)
                with open(p, "wb") as f:
                    f.write(data)
                r = subprocess.run([cl.COLLECTOR_BIN, "--listen", f"127.0.0.1:{cl.free_port()}", "--db",
                                    f"sqlite:{self.dir}/{name}.sqlite", "--targets", p],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(needle, r.stderr)

    # ---- 3: rejections ---------------------------------------------------

    def stored(self):
        """The listing without the analysis's progress, which moves on
        by itself while a test runs."""
        return [{k: v for k, v in r.items() if k != "analysis"} for r in self.c.list_all()]

    def assert_refused(self, body, status, code, extra_keys=()):
        """Submits body; expects status/code; nothing stored, no new key,
        collector healthy."""
        before = self.stored()
        signers_before = self.c.allowed_signers()
        st, doc = self.c.submit(body, valid_request=False)
        self.assertEqual((st, doc.get("error")), (status, code), doc)
        self.assertTrue(doc["detail"])
        self.assertEqual(self.stored(), before, "a refused submission changed the store")
        self.assertEqual(self.c.allowed_signers(), signers_before)
        for k in extra_keys:
            self.assertNotIn(k, self.c.allowed_signers())
        self.assertEqual(self.c.healthz(), (200, {"status": "ok"}))
        return doc

    def _stored_one(self):
        content, sig = self.agent_pairs[0]
        self.accept(content, sig)
        self.assertEqual(self.c.count(), 1)

    def test_reject_tampered_content(self):
        self._stored_one()
        content, sig = self.agent_pairs[1]
        tampered = _flip(content, b'"probe_cc":"DE"', b'"probe_cc":"DK"')
        cl.check(cl.MEASUREMENT, json.loads(tampered))  # only the signature is wrong
        doc = self.assert_refused(cl.submit_body(tampered, sig), 400, "bad_signature")
        self.assertIn("signature", doc["detail"])

    def test_reject_swapped_public_key(self):
        self._stored_one()
        other = cl.SSHKey(self.dir, "other")
        claimed = cl.SSHKey(self.dir, "claimed")
        content, sig = other.sign([self.variants(1)[0]])[0]
        # Signed by `other`, claiming to be `claimed` (never seen), and
        # claiming to be the agent (already stored).
        self.assert_refused(cl.submit_body(content, cl.sshsig_swap_key(sig, claimed.pub)),
                            400, "bad_signature", extra_keys=(claimed.key_id, other.key_id))
        self.assert_refused(cl.submit_body(content, cl.sshsig_swap_key(sig, self.agent.pub)),
                            400, "bad_signature", extra_keys=(claimed.key_id, other.key_id))

    def test_reject_wrong_namespace(self):
        self._stored_one()
        content, sig = self.ssh.sign([self.variants(1)[0]], namespace="file")[0]
        self.assert_refused(cl.submit_body(content, sig), 400, "bad_signature",
                            extra_keys=(self.ssh.key_id,))
        content, sig = self.ssh.sign([self.variants(1)[0]], namespace="parallax-measurement-v2")[0]
        self.assert_refused(cl.submit_body(content, sig), 400, "bad_signature",
                            extra_keys=(self.ssh.key_id,))

    def test_reject_truncated_signature(self):
        self._stored_one()
        content, sig = self.agent_pairs[1]
        lines = sig.strip().splitlines()
        # One base64 line short (still armored), the END line gone, half
        # of the text, the bare BEGIN line.
        for cut in ("\n".join(lines[:-2] + lines[-1:]) + "\n", "\n".join(lines[:-1]) + "\n",
                    sig[:len(sig) // 2], lines[0] + "\n"):
            self.assertNotEqual(cut, sig)
            self.assert_refused(cl.submit_body(content, cut), 400, "bad_signature")
        # A signature blob one byte short, re-armored properly.
        blob = cl.sshsig_decode(sig)
        self.assert_refused(cl.submit_body(content, cl.sshsig_encode(blob[:-1])), 400,
                            "bad_signature")

    def _raw(self, data):
        """Submits raw bytes; returns (status, parsed error)."""
        return self.c.submit(data)

    def test_reject_non_json_body(self):
        self._stored_one()
        for body in (b"this is not JSON", b"", b"[1,2,3]", b'"a string"',
                     b'{"format":"json","content":"{}","signature":"x"', b"\xff\xfe{}"):
            self.assert_refused(body, 400, "malformed_request")

    def test_reject_json_missing_fields(self):
        self._stored_one()
        content, sig = self.agent_pairs[1]
        full = cl.submit_body(content, sig)
        for missing in ("format", "content", "signature"):
            body = {k: v for k, v in full.items() if k != missing}
            self.assert_refused(json.dumps(body).encode(), 400, "malformed_request")
        for key, value in (("format", "xml"), ("content", {"a": 1}), ("signature", 7),
                           ("content", None)):
            body = dict(full, **{key: value})
            self.assert_refused(json.dumps(body).encode(), 400, "malformed_request")

    def test_reject_ten_mib_body(self):
        self._stored_one()
        content, sig = self.agent_pairs[1]
        big = json.dumps({"format": "json", "content": content.decode() + " " * (10 << 20),
                          "signature": sig}).encode()
        self.assertGreater(len(big), 10 << 20)
        before = self.stored()
        st, body = cl.ChunkedPost.send(self.c.port, "/api/v1/submit_measurement", big,
                                       content_length=True)
        self.assertEqual(st, 413, body)
        doc = cl.check(cl.ERROR, json.loads(body), "413 answer")
        self.assertEqual(doc["error"], "too_large")
        self.assertEqual(self.c.healthz(), (200, {"status": "ok"}))
        self.assertEqual(self.stored(), before)
        # Chunked: no length announced. A small chunked submission is read
        # like any other; a 10 MiB one is read to its end and dropped, then
        # refused with 413, and the collector keeps serving.
        small_content, small_sig = self.agent_pairs[3]
        st, body = cl.ChunkedPost.send(self.c.port, "/api/v1/submit_measurement",
                                       json.dumps(cl.submit_body(small_content, small_sig)).encode(),
                                       chunk=1000)
        self.assertEqual(st, 200, body)
        cl.check(cl.SUBMIT_RESPONSE, json.loads(body))
        before = self.stored()
        self.assertEqual(len(before), 2)
        st, body = cl.ChunkedPost.send(self.c.port, "/api/v1/submit_measurement", big)
        self.assertEqual(st, 413, body)
        self.assertEqual(cl.check(cl.ERROR, json.loads(body))["error"], "too_large")
        self.assertEqual(self.c.healthz(), (200, {"status": "ok"}))
        self.assertEqual(self.stored(), before)
        # A body just over the limit is refused, one under it is read
        # (and judged on its merits).
        self.assertEqual(self.c.stop(), 0)
        self.c.extra = ["--max-body", "65536"]
        self.c.start()
        # JSON allows trailing white space: pad the body to the limit.
        ok = json.dumps(cl.submit_body(content, sig)).encode()
        ok += b" " * (65536 - len(ok))
        self.assertEqual(len(ok), 65536)
        st, doc = self.c.submit(ok)
        self.assertEqual(st, 200, doc)
        over = json.dumps(cl.submit_body(*self.agent_pairs[2])).encode()
        over += b" " * (65537 - len(over))
        self.assert_refused(over, 413, "too_large")

    def test_reject_schema_invalid_signed(self):
        self._stored_one()
        key = cl.SSHKey(self.dir, "schema_key")
        m = json.loads(cl.variant(self.base, 5))
        cases = {}
        x = dict(m)
        del x["test_keys"]
        cases["missing test_keys"] = cl.compact(x)
        cases["probe_ip"] = cl.compact(dict(m, probe_ip="192.0.2.7"))
        x = json.loads(cl.compact(m))
        hs = [h for h in x["test_keys"]["tls_handshakes"] if h["peer_certificates"]][0]
        real = hs["peer_certificates"][0]["sha256"]
        hs["peer_certificates"][0]["sha256"] = ("0" if real[0] != "0" else "1") + real[1:]
        cases["certificate sha256"] = cl.compact(x)
        cases["unknown top-level key"] = cl.compact(dict(m, unexpected_key="x"))
        for name, text in cases.items():
            # JSON Schema cannot compare a hash with the data it hashes.
            self.assertEqual(cl.MEASUREMENT.is_valid(json.loads(text)), name == "certificate sha256", name)
        cases["trailing newline"] = cl.compact(m) + "\n"
        cl.check(cl.MEASUREMENT, json.loads(cases["trailing newline"]))
        pairs = key.sign(list(cases.values()))
        for (name, text), (content, sig) in zip(cases.items(), pairs):
            with self.subTest(name):
                self.assertEqual(content, text.encode())
                doc = self.assert_refused(cl.submit_body(content, sig), 422,
                                          "invalid_measurement", extra_keys=(key.key_id,))
                self.assertTrue(doc["detail"], name)
        # The agent's signature on the same kind of content: refused too.
        bad = self.agent.sign([cases["probe_ip"], cases["unknown top-level key"]])
        for content, sig in bad:
            self.assert_refused(cl.submit_body(content, sig), 422, "invalid_measurement")

    # ---- 4 ---------------------------------------------------------------

    def test_idempotent_on_content(self):
        content, sig = self.agent_pairs[0]
        first = self.accept(content, sig)
        second = self.accept(content, sig)
        self.assertFalse(first["duplicate"])
        self.assertTrue(second["duplicate"])
        self.assertEqual(first["measurement_uid"], second["measurement_uid"])
        self.assertEqual(self.c.count(), 1)
        self.assertEqual(self.c.db_count(), 1)
        lines, _ = self.c.export()
        self.assertEqual([l["measurement_uid"] for l in lines], [first["measurement_uid"]])
        # The same bytes signed by another key are the same measurement: same
        # uid, still one row, and the first signature is what is served.
        other = self.ssh.sign([content])[0]
        fourth = self.accept(*other)
        self.assertEqual((fourth["measurement_uid"], fourth["duplicate"]),
                         (first["measurement_uid"], True))
        self.assertEqual(self.c.signature(first["measurement_uid"])[2].decode(), sig)
        lines, _ = self.c.export()
        self.assertEqual([(l["key_id"], l["signature"]) for l in lines], [(self.agent.key_id, sig)])
        self.assertEqual(self.c.count(), 1)
        # The same new content from 30 clients at once: one row, one uid,
        # exactly one answer that is not a duplicate.
        content2, sig2 = self.agent_pairs[1]
        body = json.dumps(cl.submit_body(content2, sig2)).encode()
        answers = [None] * 30
        barrier = threading.Barrier(30)

        def one(i):
            barrier.wait()
            st, _, raw = cl.post(self.c.url + "/api/v1/submit_measurement", body,
                                 headers={"Content-Type": "application/json"})
            answers[i] = (st, raw)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({st for st, _ in answers}, {200})
        docs = [cl.check(cl.SUBMIT_RESPONSE, json.loads(raw)) for _, raw in answers]
        self.assertEqual(len({d["measurement_uid"] for d in docs}), 1)
        self.assertEqual(sorted(d["duplicate"] for d in docs), [False] + [True] * 29)
        self.assertEqual(self.c.db_count(), 2)
        self.assertEqual(self.c.count(), 2)
        st, _, raw = self.c.raw(docs[0]["measurement_uid"])
        self.assertEqual(raw, content2)
        m = self.c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 2)
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())], 2 + 29)
        # After a restart too: the uid is a function of the content.
        self.c.restart()
        third = self.accept(content, sig)
        self.assertEqual(third["measurement_uid"], first["measurement_uid"])
        self.assertTrue(third["duplicate"])
        self.assertEqual(self.c.count(), 2)

    # ---- 5 ---------------------------------------------------------------

    def _key_with(self, chars):
        for i in range(200):
            k = cl.SSHKey(self.dir, f"k{i}")
            if all(c in k.key_id for c in chars):
                return k
        self.fail(f"no key id with {chars} in 200 keys")

    def test_list_filters_and_pagination(self):
        plus = self._key_with("+/")
        t0 = datetime.datetime(2014, 10, 20, 1, 0, 0)
        specs = []   # (content, key, cc, asn, domain, start)
        groups = [("DE", "AS3320"), ("US", "AS123"), ("CN", "AS4134")]
        inputs = ["www.example.test", "WWW.Example.TEST:8443", "www.icloud.com", "Other.Example.Test"]
        contents_agent, contents_plus = [], []
        for i in range(36):
            cc, asn = groups[i % 3]
            inp = inputs[(i // 3) % 4]
            # Pairs of equal start times: the order must still be total.
            start = t0 + datetime.timedelta(hours=(i // 2) * 3)
            text = cl.variant(self.base, i, start=start, cc=cc, asn=asn, input=inp, step=0)
            who = plus if i % 4 == 0 else None
            (contents_plus if who else contents_agent).append(text)
            specs.append((text, who, cc, asn, inp.split(":")[0].lower(), start))
        signed = dict(self.agent.sign(contents_agent))
        signed.update(dict(plus.sign(contents_plus)))
        uid = {}
        for text, who, *_ in specs:
            doc = self.accept(text.encode(), signed[text.encode()])
            self.assertEqual(doc["key_id"], (who or self.agent).key_id)
            uid[text] = doc["measurement_uid"]
        everything = self.stored()
        self.assertEqual(len(everything), 36)

        def expect(pred):
            return sorted(uid[s[0]] for s in specs if pred(s))

        def got(**params):
            return sorted(r["measurement_uid"] for r in self.c.list_all(**params))

        def got_raw(query):
            page = self.c.list_page(raw_query=query)
            self.assertIsNone(page["metadata"]["next_cursor"])
            return sorted(r["measurement_uid"] for r in page["results"])

        self.assertEqual(got(probe_cc="DE"), expect(lambda s: s[2] == "DE"))
        self.assertEqual(len(got(probe_cc="DE")), 12)
        self.assertEqual(got(probe_asn="AS123"), expect(lambda s: s[3] == "AS123"))
        self.assertEqual(got(probe_asn="123"), expect(lambda s: s[3] == "AS123"))
        self.assertEqual(got(probe_asn="AS12"), [])
        for d in ("www.example.test", "WWW.EXAMPLE.TEST", "Www.Example.Test"):
            self.assertEqual(got(domain=d), expect(lambda s: s[4] == "www.example.test"), d)
        self.assertEqual(len(got(domain="www.example.test")), 18)
        self.assertEqual(got(domain="other.example.test"), expect(lambda s: s[4] == "other.example.test"))
        self.assertEqual(got(test_name="tls_cert_consistency"), sorted(uid.values()))
        self.assertEqual(got(test_name="web_connectivity"), [])
        # key ids contain '+' and '/': percent-encoded, and raw.
        want_plus = expect(lambda s: s[1] is plus)
        self.assertEqual(len(want_plus), 9)
        self.assertEqual(got(key_id=plus.key_id), want_plus)
        self.assertEqual(got(key_id=self.agent.key_id), expect(lambda s: s[1] is None))
        self.assertEqual(got_raw("limit=1000&key_id=" + plus.key_id), want_plus)
        self.assertEqual(got_raw("key_id=" + plus.key_id.replace("/", "%2F") + "&limit=1000"), want_plus)
        self.assertEqual(got_raw("limit=1000&key_id=" + plus.key_id.replace("+", " ").replace(" ", "%20")), [])
        # since/until in ISO 8601 UTC (boundaries between measurements).
        # Start times are 01:00 + 3k hours: no boundary below is hit, so
        # inclusive or exclusive ends give the same answer.
        since, until = datetime.datetime(2014, 10, 20, 11), datetime.datetime(2014, 10, 21, 17)
        in_range = expect(lambda s: since <= s[5] < until)
        self.assertTrue(0 < len(in_range) < 36)
        self.assertEqual(got(since="2014-10-20T11:00:00Z", until="2014-10-21T17:00:00Z"), in_range)
        self.assertEqual(got(since="2014-10-20T11:00:00Z"), expect(lambda s: s[5] >= since))
        self.assertEqual(got(until="2014-10-21T17:00:00Z"), expect(lambda s: s[5] < until))
        self.assertEqual(got(since="2014-10-21"), expect(lambda s: s[5] >= datetime.datetime(2014, 10, 21)))
        self.assertEqual(got(until="2014-10-21"), expect(lambda s: s[5] < datetime.datetime(2014, 10, 21)))
        self.assertEqual(got(since="2015-01-01"), [])
        # On a measurement's own start time: since includes it, until does
        # not (docs/api.md).
        edge = t0 + datetime.timedelta(hours=9)
        at_edge = expect(lambda s: s[5] == edge)
        self.assertEqual(len(at_edge), 2)
        self.assertEqual(got(since="2014-10-20T10:00:00Z", until="2014-10-20T10:00:01Z"), at_edge)
        self.assertEqual(got(since="2014-10-20T10:00:00Z"), expect(lambda s: s[5] >= edge))
        self.assertEqual(got(until="2014-10-20T10:00:00Z"), expect(lambda s: s[5] < edge))
        self.assertEqual(got(probe_cc="US", domain="www.icloud.com", since="2014-10-20T11:00:00Z"),
                         expect(lambda s: s[2] == "US" and s[4] == "www.icloud.com" and s[5] >= since))

        # The export takes the same filters.
        def exported(raw_query=None, **params):
            lines, _ = self.c.export(raw_query=raw_query, **params)
            return sorted(l["measurement_uid"] for l in lines)

        self.assertEqual(exported(), sorted(uid.values()))
        self.assertEqual(exported(key_id=plus.key_id), want_plus)
        self.assertEqual(exported(raw_query="key_id=" + plus.key_id), want_plus)
        self.assertEqual(exported(probe_asn="4134", domain="WWW.EXAMPLE.TEST", since="2014-10-20T11:00:00Z"),
                         expect(lambda s: s[3] == "AS4134" and s[4] == "www.example.test" and s[5] >= since))
        self.assertEqual(exported(until="2014-10-21", test_name="tls_cert_consistency"),
                         expect(lambda s: s[5] < datetime.datetime(2014, 10, 21)))
        for line in self.c.export(key_id=plus.key_id)[0]:
            self.assertEqual(line["key_id"], plus.key_id)

        # Pagination: every limit walks every measurement once, newest first.
        order = None
        for limit in (1, 5, 6, 7, 36, 37, 1000):
            walked = self.c.list_all(limit=limit)
            uids = [r["measurement_uid"] for r in walked]
            self.assertEqual(sorted(uids), sorted(uid.values()), limit)
            times = [r["measurement_start_time"] for r in walked]
            self.assertEqual(times, sorted(times, reverse=True), limit)
            if order is None:
                order = uids
            self.assertEqual(uids, order, f"limit={limit}: the order is not stable")
        first = self.c.list_page(limit=36)
        self.assertIsNone(first["metadata"]["next_cursor"])
        page = self.c.list_page(limit=35)
        self.assertIsNotNone(page["metadata"]["next_cursor"])
        last = self.c.list_page(limit=35, cursor=page["metadata"]["next_cursor"])
        self.assertEqual(last["metadata"]["count"], 1)
        self.assertIsNone(last["metadata"]["next_cursor"])
        # Filters and cursor together.
        de = self.c.list_all(limit=5, probe_cc="DE")
        self.assertEqual(sorted(r["measurement_uid"] for r in de), expect(lambda s: s[2] == "DE"))
        for r in everything:
            self.assertTrue(r["measurement_url"].startswith(self.c.url + "/api/v1/raw_measurement?"))

        # Malformed queries: 400 bad_query, and the collector keeps serving.
        for q in ("limit=0", "limit=x", "limit=-1", "limit=1001", "limit=", "unknown=1",
                  "since=garbage", "until=2014-13-01", "since=2014-02-30",
                  "cursor=garbage", "cursor=12_x", "probe_cc=DE&probe_cc=US",
                  "limit=5&limit=5", "domain=%ZZ", "domain=www%2", "probe_cc=D%00",
                  "probe_asn=ASX", "probe_cc=DEU"):
            with self.subTest(q):
                cl.error_body(cl.get(f"{self.c.url}/api/v1/measurements?{q}"), 400, "bad_query")
        cl.error_body(cl.get(f"{self.c.url}/api/v1/export.jsonl?cursor=1_1"), 400, "bad_query")
        self.assertEqual(self.c.healthz(), (200, {"status": "ok"}))

        # The export streams oldest first (in the order they were stored).
        lines, _ = self.c.export()
        self.assertEqual([l["measurement_uid"] for l in lines], [uid[s[0]] for s in specs])

        # Keyset pages stay stable while measurements arrive: a walk begun
        # before newer and older measurements were stored sees none of the
        # newer ones, each of the rest once, then the older ones.
        page = self.c.list_page(limit=10)
        self.assertEqual([r["measurement_uid"] for r in page["results"]], order[:10])
        newer = [cl.variant(self.base, 100 + i, start=datetime.datetime(2015, 1, 1, i)) for i in range(2)]
        older = [cl.variant(self.base, 200 + i, start=datetime.datetime(2014, 10, 1, i)) for i in range(2)]
        late = {}
        for content, sig in self.agent.sign(newer + older):
            late[content.decode()] = self.accept(content, sig)["measurement_uid"]
        rest, cursor = [], page["metadata"]["next_cursor"]
        while cursor is not None:
            p = self.c.list_page(limit=10, cursor=cursor)
            rest.extend(r["measurement_uid"] for r in p["results"])
            cursor = p["metadata"]["next_cursor"]
        self.assertEqual(rest, order[10:] + [late[older[1]], late[older[0]]])
        self.assertEqual(len(self.stored()), 40)

    # ---- 6 ---------------------------------------------------------------

    def test_signature_stored_as_ssh_keygen_writes_it(self):
        """What ssh-keygen tolerates around the blob (text after END, any
        line width, CRLF inside the base64) is accepted, but the collector
        stores and serves the canonical armour: no unsigned bytes ride
        along."""
        (content, sig), = self.agent.sign([cl.variant(self.base, 31)])
        blob = cl.sshsig_decode(sig)
        b64 = base64.b64encode(blob).decode()
        odd = ("-----BEGIN SSH SIGNATURE-----\n" + "\r\n".join(b64[i:i + 50] for i in range(0, len(b64), 50))
               + "\n-----END SSH SIGNATURE-----\n" + "x" * 5000 + "\n")
        # (Not what submit-request.schema.json asks a client for: that is
        # the canonical form. The collector is as lenient as ssh-keygen.)
        st, doc = self.c.submit(cl.submit_body(content, odd), valid_request=False)
        self.assertEqual(st, 200, doc)
        st, _, body = self.c.signature(doc["measurement_uid"])
        self.assertEqual(st, 200)
        self.assertEqual(body.decode(), sig)  # the agent's own (canonical) armour
        self.assertEqual(cl.ssh_check_novalidate(self.tmp, content, body.decode()).returncode, 0)

    def test_raw_bytes_and_signature(self):
        # Bytes a re-serialiser would change: a literal non-ASCII character,
        # a \u escape, an escaped slash, exponent numbers from the agent.
        m = json.loads(cl.variant(self.base, 9))
        m["annotations"]["platform"] = "linux \u00fc\u2013\U0001F600"
        m["annotations"]["note"] = "PLACEHOLDER"
        text = cl.compact(m).replace("PLACEHOLDER", "caf\\u00e9 a\\/b \\\"q\\\"")
        cl.check(cl.MEASUREMENT, json.loads(text))
        contents = [c for c, _ in self.agent_pairs] + [text.encode("utf-8")]
        pairs = self.agent_pairs + self.agent.sign([text])
        self.assertEqual([c for c, _ in pairs], contents)
        for content, sig in pairs:
            doc = self.accept(content, sig)
            st, headers, body = self.c.raw(doc["measurement_uid"])
            self.assertEqual(st, 200)
            self.assertTrue(headers["content-type"].startswith("application/json"), headers)
            self.assertEqual(body, content)  # byte for byte, no newline added
            st, headers, body = self.c.signature(doc["measurement_uid"])
            self.assertEqual(st, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"), headers)
            self.assertEqual(body.decode(), sig)
        for r in self.stored():
            st, _, body = cl.get(r["measurement_url"])
            self.assertEqual(st, 200)
            self.assertIn(body, contents)
        lines, _ = self.c.export()
        self.assertEqual(sorted(l["content"].encode() for l in lines), sorted(contents))

        # The request envelope is JSON: however it escapes the content
        # string, the content is the same bytes (same uid, a duplicate).
        content, sig = pairs[-1]
        uid = self.accept(content, sig)["measurement_uid"]

        def escape_all(s):
            return '"' + "".join(f"\\u{u:04x}" for u in
                                 _utf16_units(s)) + '"'
        envelopes = [
            json.dumps(cl.submit_body(content, sig)).encode(),                   # \uXXXX, surrogates
            json.dumps(cl.submit_body(content, sig), indent=2).encode(),         # white space, newlines
            json.dumps({"signature": sig, "content": content.decode(), "format": "json"},
                       ensure_ascii=False).encode(),                             # another member order
            ('{"format":"json","content":' + escape_all(content.decode()) +
             ',"signature":' + escape_all(sig) + "}").encode(),                 # every character escaped
            json.dumps(cl.submit_body(content, sig)).replace("/", "\\/").encode(),  # escaped slashes
        ]
        for body in envelopes:
            st, doc = self.c.submit(body)
            self.assertEqual(st, 200, (doc, body[:200]))
            self.assertEqual((doc["measurement_uid"], doc["duplicate"]), (uid, True))
        self.assertEqual(self.c.raw(uid)[2], content)
        self.assertEqual(self.c.count(), len(contents))
        unknown = "20141020120000_DE_tlscertconsistency_0000000000000000"
        for path in ("/api/v1/raw_measurement", "/api/v1/measurement_signature"):
            cl.error_body(cl.get(self.c.api(path, measurement_uid=unknown)), 404, "not_found")
            cl.error_body(cl.get(self.c.url + path), 400, "bad_query")
            cl.error_body(cl.get(self.c.url + path + "?measurement_uid="), 400, "bad_query")
            cl.error_body(cl.get(self.c.url + path + "?other=1"), 400, "bad_query")

    # ---- 7 ---------------------------------------------------------------

    def test_metrics_and_healthz(self):
        st, headers, body = cl.get(self.c.url + "/healthz")
        self.assertEqual(st, 200)
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(json.loads(body), {"status": "ok"})
        m0 = self.c.metrics()
        name = "parallax_collector_measurements_rejected_total"
        reasons = ("malformed_request", "bad_signature", "too_large", "invalid_measurement")
        for r in reasons:
            self.assertEqual(m0[(name, (("reason", r),))], 0, r)
        self.assertEqual(m0[("parallax_collector_measurements_accepted_total", ())], 0)

        pairs = self.agent_pairs[:3]
        for content, sig in pairs:
            self.accept(content, sig)                              # 3 accepted
        self.accept(*pairs[0])
        self.accept(*pairs[1])                                     # 2 duplicates
        tampered = _flip(pairs[2][0], b'"probe_cc":"DE"', b'"probe_cc":"DK"')
        answers = [self.c.submit(cl.submit_body(tampered, pairs[2][1]))[0],  # 1 bad_signature
                   self.c.submit(b"not json")[0],
                   self.c.submit(b'{"format":"json"}')[0]]                   # 2 malformed_request
        bad = self.agent.sign([cl.compact(dict(self.base, probe_ip="10.0.0.1"))])[0]
        answers.append(self.c.submit(cl.submit_body(*bad))[0])             # 1 invalid_measurement
        self.assertEqual(answers, [400, 400, 400, 422])
        big = b'{"format":"json","content":"' + b"x" * (2 << 20) + b'","signature":""}'
        st, _ = cl.ChunkedPost.send(self.c.port, "/api/v1/submit_measurement", big,
                                    content_length=True)
        self.assertEqual(st, 413)                                  # 1 too_large
        m = self.c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 3)
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())], 2)
        want = {"malformed_request": 2, "bad_signature": 1, "too_large": 1, "invalid_measurement": 1}
        for r, n in want.items():
            self.assertEqual(m[(name, (("reason", r),))], n, r)
        for (metric, labels), v in m.items():
            if metric == name and dict(labels)["reason"] not in want:
                self.assertEqual(v, 0, labels)
        h = "parallax_collector_submit_duration_seconds"
        buckets = sorted(((float(dict(l)["le"]), v) for (n, l), v in m.items() if n == h + "_bucket"))
        self.assertEqual(buckets[-1][0], float("inf"))
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts))
        self.assertEqual(counts[-1], m[(h + "_count", ())])
        self.assertGreaterEqual(m[(h + "_count", ())], 3 + 2 + 1 + 2 + 1)
        self.assertEqual(self.c.count(), 3)

    # ---- 8 ---------------------------------------------------------------

    def test_200_concurrent_uploads(self):
        c = cl.Collector(tempfile.mkdtemp(dir=self.dir), extra=["--per-ip-limit", "256"])
        self.addCleanup(self._stop, c)
        c.start()
        contents = [cl.variant(self.base, i, cc=("DE", "US", "FR", "JP")[i % 4]) for i in range(200)]
        pairs = self.agent.sign(contents)
        bodies = [json.dumps(cl.submit_body(x, s)).encode() for x, s in pairs]
        n_proc, n_thr = 4, 50
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=_uploader, args=(c.url, bodies[k * n_thr:(k + 1) * n_thr], q))
                 for k in range(n_proc)]
        for p in procs:
            p.start()
        results = []
        for _ in procs:
            results.extend(q.get(timeout=120 * cl.SLOW))
        for p in procs:
            p.join(timeout=30)
            self.assertEqual(p.exitcode, 0)
        self.assertEqual(len(results), 200)
        bad = [r for r in results if r[0] != 200]
        self.assertEqual(bad, [], f"{len(bad)} of 200 uploads failed")
        for st, body in results:
            cl.check(cl.SUBMIT_RESPONSE, json.loads(body), "submit answer")
            self.assertFalse(json.loads(body)["duplicate"])
        uids = {json.loads(b)["measurement_uid"] for _, b in results}
        self.assertEqual(len(uids), 200)
        listed = c.list_all(limit=64)
        self.assertEqual(sorted(r["measurement_uid"] for r in listed), sorted(uids))
        lines, _ = c.export()
        self.assertEqual(sorted(l["content"].encode() for l in lines), sorted(x for x, _ in pairs))
        self.assertEqual(c.db_count(), 200)
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 200)
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())], 0)


    # ---- limits ----------------------------------------------------------

    def test_slow_client_cannot_hold_a_connection(self):
        # ISSUE 3: request timeouts, 'slow clients cannot hold it'. With
        # --timeout 1 an idle connection is closed, and so must be a
        # submission that trickles in one byte every 0.3 s: the collector may
        # not keep it for six times its timeout.
        c = cl.Collector(tempfile.mkdtemp(dir=self.dir), extra=["--timeout", "1"])
        self.addCleanup(self._stop, c)
        c.start()

        def closed_by_server(sock, trickle, budget):
            end = time.monotonic() + budget * cl.SLOW
            sock.settimeout(0.3)
            while time.monotonic() < end:
                try:
                    if sock.recv(4096) == b"":
                        return True
                    return True  # an answer (e.g. 408) ends it too
                except socket.timeout:
                    pass
                except OSError:
                    return True
                if trickle:
                    try:
                        sock.sendall(b"x")
                    except OSError:
                        return True
            return False

        with socket.create_connection(("127.0.0.1", c.port)) as idle:
            self.assertTrue(closed_by_server(idle, False, 10), "an idle connection was kept")
        with socket.create_connection(("127.0.0.1", c.port)) as slow:
            slow.sendall(b"POST /api/v1/submit_measurement HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            self.assertTrue(closed_by_server(slow, True, 6),
                            "a client sending one byte every 0.3 s kept its submission open for "
                            "6 s with --timeout 1 (only idle time is limited)")
        self.assertEqual(c.healthz(), (200, {"status": "ok"}))


def _utf16_units(s):
    """The UTF-16 code units of s (a JSON \\u escape names one)."""
    data = s.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _uploader(url, bodies, q):
    """One process: one thread per body, all released at once."""
    results = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def one(i):
        barrier.wait()
        try:
            st, _, body = cl.post(url + "/api/v1/submit_measurement", bodies[i],
                                  headers={"Content-Type": "application/json"}, timeout=120)
            results[i] = (st, body.decode())
        except Exception as e:  # noqa: BLE001 - reported, not raised
            results[i] = (repr(e), "")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put(results)


if __name__ == "__main__":
    pxtest.main()
