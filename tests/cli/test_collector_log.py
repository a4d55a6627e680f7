"""The measurement log (issue 14, docs/transparency.md) against a real
parallax-collector: every accepted measurement becomes a leaf in commit
order, and what the API serves (heads, inclusion and consistency proofs,
leaves) is checked here by an RFC 9162 verifier written independently of
the C code (common/merkle.c), from the measurements' raw bytes. Then the
database is edited behind the collector's back and the check catches it.
It runs on both stores (cli.test_collector_log.pg: the same edits made
with psql)."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

import collectorlib as cl
import pxtest


# ---- RFC 9162, section 2.1, straight from the text -------------------------

def leaf_hash(leaf):
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes):
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, path):
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


SCHEMAS = {"/api/v1/log/sth": pxtest.load_schema("log-sth.schema.json"),
           "/api/v1/log/proof/inclusion": pxtest.load_schema("log-inclusion.schema.json"),
           "/api/v1/log/proof/consistency": pxtest.load_schema("log-consistency.schema.json"),
           "/api/v1/log/leaves": pxtest.load_schema("log-leaves.schema.json")}


def doc_verifier():
    """The functions of docs/transparency.md's Python block (up to where it
    talks to a collector), so the page's code is held to the same answers."""
    import re
    with open(os.path.join(pxtest.SOURCE, "docs", "transparency.md"), encoding="utf-8") as f:
        block = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    ns = {}
    exec(block.split('\nC = "')[0], ns)  # noqa: S102 - our own documentation
    return ns


def unhex(xs):
    return [bytes.fromhex(x) for x in xs]


class Log(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-log-")
        cls.base = json.loads(cl.measure_lines("www.example.test")[0])
        cls.ssh = cl.SSHKey(cls.tmp, "log_key")
        contents = [cl.variant(cls.base, i, cc="CN", asn="AS4134") for i in range(13)]
        cls.pairs = cls.ssh.sign(contents)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        # Heads are signed at most once a second here (60 s by default).
        self.c = cl.Collector(self.dir, extra=("--sth-interval", "1"))
        self.addCleanup(self._stop)
        self.c.start()

    def _stop(self):
        if self.c.running():
            self.assertEqual(self.c.stop(), 0, self.c.log())

    def get(self, path, status=200, **params):
        st, _, body = cl.get(self.c.api(path, **params))
        self.assertEqual(st, status, body)
        return cl.check(SCHEMAS[path] if st == 200 else cl.ERROR, json.loads(body), path)

    def submit_all(self):
        uids = []
        for i, (content, sig) in enumerate(self.pairs):
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
            cl.check(cl.SUBMIT_RESPONSE, doc, "submit answer")
            self.assertEqual(doc["leaf_index"], i)
            uids.append(doc["measurement_uid"])
        return uids

    def signed_head(self, size):
        """The signed head once it covers size leaves (a new one is signed
        at most every --sth-interval), its signature checked with the real
        `ssh-keygen -Y verify` in the parallax-sth-v1 namespace."""
        deadline = time.monotonic() + 10
        while True:
            head = self.get("/api/v1/log/sth")
            if head["tree_size"] == size or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(head["tree_size"], size)
        self.assertIsNone(self.verify_head(head))
        return head

    def verify_head(self, head):
        """None when ssh-keygen accepts head's signature, else its stderr."""
        signed = json.dumps({k: head[k] for k in ("tree_size", "root_hash", "timestamp")},
                            separators=(",", ":")).encode()
        d = tempfile.mkdtemp(dir=self.dir)
        with open(os.path.join(d, "allowed"), "w") as f:
            f.write(f'{head["key_id"]} namespaces="parallax-sth-v1" {head["public_key"]}\n')
        with open(os.path.join(d, "sth.sig"), "w") as f:
            f.write(head["signature"])
        p = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", os.path.join(d, "allowed"), "-I",
                            head["key_id"], "-n", "parallax-sth-v1", "-s",
                            os.path.join(d, "sth.sig")], input=signed, capture_output=True,
                           timeout=30)
        return None if p.returncode == 0 else p.stderr.decode() + p.stdout.decode()

    def audit(self, size):
        """What a researcher's audit does: every leaf from /log/leaves,
        each checked against the measurement's raw bytes, the root
        recomputed and compared with the head. Returns (head, problems)."""
        head = self.signed_head(size)
        leaves = self.get("/api/v1/log/leaves", start=0, end=head["tree_size"])["leaves"]
        problems, hashes = [], []
        for i, l in enumerate(leaves):
            self.assertEqual(l["leaf_index"], i)
            text = f'{l["content_sha256"]} {l["measurement_uid"]} {l["received_at"]}'
            self.assertEqual(l["leaf"], text)
            hashes.append(leaf_hash(text.encode()))
            st, _, raw = self.c.raw(l["measurement_uid"])
            if st != 200:
                problems.append(f'{l["measurement_uid"]}: in the log, not served ({st})')
            elif hashlib.sha256(raw).hexdigest() != l["content_sha256"]:
                problems.append(f'{l["measurement_uid"]}: served bytes are not the logged ones')
        if mth(hashes).hex() != head["root_hash"]:
            problems.append("the leaves do not make the head's root")
        return head, problems

    def test_leaves_proofs_and_heads(self):
        empty = self.signed_head(0)
        self.assertEqual(empty["root_hash"], hashlib.sha256(b"").hexdigest())
        self.assertTrue(os.stat(os.path.join(self.dir, "sth-key")).st_mode & 0o077 == 0)
        uids = self.submit_all()
        # A retry is the same leaf, not a new one.
        st, doc = self.c.submit(cl.submit_body(*self.pairs[4]))
        self.assertEqual((st, doc["duplicate"], doc["leaf_index"]), (200, True, 4))
        head, problems = self.audit(13)
        self.assertEqual(problems, [])
        self.assertEqual(head["tree_size"], 13)
        # The history: every head ever signed is served again by its size,
        # as it was; a size never signed has its root only.
        self.assertEqual(self.get("/api/v1/log/sth", tree_size=0), empty)
        self.assertEqual(self.get("/api/v1/log/sth", tree_size=13), head)
        self.assertNotIn("signature", self.get("/api/v1/log/sth", tree_size=5))
        # A restart serves the kept head, not a new signature of the same tree.
        self.c.stop()
        self.c.start()
        self.assertEqual(self.get("/api/v1/log/sth"), head)
        self.assertEqual(self.get("/api/v1/log/sth", tree_size=0), empty)
        # A changed head (another size, another root, another time) fails.
        for k, v in (("tree_size", 12), ("root_hash", empty["root_hash"]),
                     ("timestamp", "2014-10-20T12:00:00Z")):
            self.assertIsNotNone(self.verify_head(dict(head, **{k: v})), k)
        doc = doc_verifier()
        roots = {}
        for n in range(1, 14):
            roots[n] = bytes.fromhex(self.get("/api/v1/log/sth", tree_size=n)["root_hash"])
        self.assertEqual(roots[13].hex(), head["root_hash"])
        for i, uid in enumerate(uids):
            for n in (i + 1, 13):
                p = self.get("/api/v1/log/proof/inclusion", measurement_uid=uid, tree_size=n)
                self.assertEqual((p["leaf_index"], p["tree_size"]), (i, n))
                self.assertTrue(verify_inclusion(i, n, bytes.fromhex(p["leaf_hash"]),
                                                 unhex(p["audit_path"]), roots[n]), p)
                self.assertTrue(doc["verify_inclusion"](i, n, bytes.fromhex(p["leaf_hash"]),
                                                        unhex(p["audit_path"]), roots[n]))
                self.assertFalse(doc["verify_inclusion"](i, n, leaf_hash(b"x"),
                                                         unhex(p["audit_path"]), roots[n]))
                # Another leaf's hash with this path proves nothing.
                self.assertFalse(verify_inclusion(i, n, leaf_hash(b"forged"),
                                                  unhex(p["audit_path"]), roots[n]))
        for first in range(1, 14):
            p = self.get("/api/v1/log/proof/consistency", first=first, second=13)
            self.assertEqual(p["first_root_hash"], roots[first].hex())
            self.assertTrue(verify_consistency(first, 13, roots[first], roots[13],
                                               unhex(p["consistency_path"])), p)
            self.assertTrue(doc["verify_consistency"](first, 13, roots[first], roots[13],
                                                      unhex(p["consistency_path"])))
            if first < 13:
                self.assertFalse(doc["verify_consistency"](first, 13, roots[first + 1],
                                                           roots[13],
                                                           unhex(p["consistency_path"])))
        # Bad questions get 400s that say why.
        for path, params in [("/api/v1/log/proof/inclusion", {"measurement_uid": uids[5],
                                                              "tree_size": 3}),
                             ("/api/v1/log/proof/consistency", {"first": 0}),
                             ("/api/v1/log/proof/consistency", {"first": 5, "second": 99}),
                             ("/api/v1/log/sth", {"tree_size": "x"}),
                             ("/api/v1/log/leaves", {"start": 0, "end": 5000}),
                             ("/api/v1/log/sth", {"size": 1})]:
            err = self.get(path, 400, **params)
            self.assertEqual(err["error"], "bad_query", err)
        self.get("/api/v1/log/proof/inclusion", 404, measurement_uid="nope")

        # A restart reads the same tree back from its rows.
        self.c.stop()
        self.c.start()
        self.assertEqual(self.get("/api/v1/log/sth")["root_hash"], head["root_hash"])
        st, doc = self.c.submit(cl.submit_body(*self.ssh.sign(
            [cl.variant(self.base, 99, cc="DE", asn="AS3320")])[0]))
        self.assertEqual(doc["leaf_index"], 13)
        later = self.signed_head(14)
        self.assertEqual(later["key_id"], head["key_id"])  # the same key after a restart
        p = self.get("/api/v1/log/proof/consistency", first=13, second=14)
        self.assertTrue(verify_consistency(13, 14, roots[13], bytes.fromhex(later["root_hash"]),
                                           unhex(p["consistency_path"])))

    def test_the_docs_stock_tool_check_of_a_head(self):
        """docs/transparency.md's curl + jq + ssh-keygen block, run as
        written against this collector."""
        import re
        with open(os.path.join(pxtest.SOURCE, "docs", "transparency.md"), encoding="utf-8") as f:
            block = next(b for b in re.findall(r"```sh\n(.*?)```", f.read(), re.S)
                         if "parallax-sth-v1" in b)
        self.submit_all()
        self.signed_head(13)
        d = tempfile.mkdtemp(dir=self.dir)
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=d, capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, C=self.c.url))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Good \"parallax-sth-v1\" signature", p.stdout + p.stderr)

    def test_a_forked_history_is_caught(self):
        """The operator rewrites the last leaves (drops three measurements,
        logs three others in their place) and signs the new history with
        the same key: a researcher holding the earlier head is told."""
        uids = self.submit_all()
        self.signed_head(13)
        self.parallax_audit()
        saved = open(os.path.join(self.dir, "sth.json")).read()
        db = self.c.database
        self.c.stop()
        gone = "', '".join(uids[10:])
        db.sql(f"{self.no_log(db)} "
               f"DELETE FROM summaries WHERE uid IN ('{gone}'); "
               f"DELETE FROM measurements WHERE uid IN ('{gone}');")
        self.c.start()
        others = [cl.variant(self.base, 50 + i, cc="US", asn="AS7018") for i in range(3)]
        for content, sig in self.ssh.sign(others):
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
        forked = self.signed_head(13)
        self.assertIsNone(self.verify_head(forked))  # signed, and by the same key
        out = self.parallax_audit(ok=False)
        self.assertIn("FAILED: two histories of the same size, both signed", out)
        # One leaf later it is no longer the same size: the consistency
        # proof from the saved head fails instead.
        with open(os.path.join(self.dir, "sth.json"), "w") as f:
            f.write(saved)
        st, doc = self.c.submit(cl.submit_body(*self.ssh.sign(
            [cl.variant(self.base, 70, cc="US", asn="AS7018")])[0]))
        self.signed_head(14)
        out = self.parallax_audit(ok=False)
        self.assertIn("FAILED: the new head does not extend the saved one", out)

    def test_an_agent_checks_its_own_measurements(self):
        """`parallax upload` keeps each answer's leaf_index in the receipt;
        `parallax verify --log` proves every sent measurement in the signed
        log from the agent's own copy, and that the head extends the last
        one it saw."""
        lines = cl.measure_lines("www.example.test", "www.icloud.com:8443",
                                 extra=("--probe-cc", "DE", "--probe-asn", "3320"))
        agent = cl.Agent(os.path.join(self.dir, "agent"))
        agent.spool(lines)
        p = pxtest.run(["upload", "--state-dir", agent.dir, "--collector", self.c.url])
        self.assertEqual(p.returncode, 0, p.stderr)
        receipts = sorted(glob.glob(os.path.join(agent.dir, "spool", "sent", "*.receipt")))
        self.assertEqual(len(receipts), 2)
        self.assertEqual(sorted(json.load(open(r))["leaf_index"] for r in receipts), [0, 1])
        self.signed_head(2)

        def verify(ok=True):
            p = pxtest.run(["verify", "--log", self.c.url, "--state-dir", agent.dir])
            self.assertEqual(p.returncode, 0 if ok else 1, p.stdout + p.stderr)
            return p.stdout
        self.assertIn("2 measurement(s) of this agent proven in the log", verify())
        self.assertTrue(os.path.exists(os.path.join(agent.dir, "log-sth.json")))
        # The operator drops one and rebuilds the log without it: the new
        # head does not extend the one the agent saw.
        uid = json.load(open(receipts[0]))["measurement_uid"]
        db = self.c.database
        self.c.stop()
        db.sql(f"{self.no_log(db)} DELETE FROM summaries WHERE uid = "
               f"'{uid}'; DELETE FROM measurements WHERE uid = '{uid}';")
        self.c.start()
        for i, (content, sig) in enumerate(self.pairs[:2]):
            self.c.submit(cl.submit_body(content, sig))
        self.signed_head(3)
        self.assertIn("does not extend the saved one", verify(ok=False))
        # Without that memory, the agent still finds its measurement missing.
        os.unlink(os.path.join(agent.dir, "log-sth.json"))
        self.assertIn(f"FAILED: {uid}: accepted by the collector but not in its log", verify(False))

    def test_heads_are_signed_at_most_every_interval(self):
        self.c.stop()
        self.c = cl.Collector(self.dir, extra=("--sth-interval", "3600"))
        self.c.start()
        first = self.signed_head(0)
        self.submit_all()
        # Asked again within the interval, after the log grew: the same
        # head (no signature on demand beyond one an interval); the new
        # root is there, unsigned, for a consistency proof to tie it.
        again = self.get("/api/v1/log/sth")
        self.assertEqual(again, first)
        grown = self.get("/api/v1/log/sth", tree_size=13)
        self.assertEqual(set(grown), {"tree_size", "root_hash"})

    def parallax_audit(self, *extra, ok=True):
        """`parallax audit` against this collector, its head kept in
        DIR/sth.json between runs; returns its stdout."""
        p = pxtest.run(["audit", "--collector", self.c.url, "--since-sth",
                        os.path.join(self.dir, "sth.json"), "--measurements", *extra])
        self.assertEqual(p.returncode, 0 if ok else 1, p.stdout + p.stderr)
        return p.stdout

    @staticmethod
    def no_log(db):
        """SQL that empties the log, as a database from before it was."""
        head = " UPDATE log_head SET size = 0, frontier = ''::bytea;" if db.pg else ""
        return "DELETE FROM log_nodes; DELETE FROM log_leaves;" + head

    def test_edits_behind_the_collectors_back_are_caught(self):
        self.assertIn("no saved head yet", self.parallax_audit())
        uids = self.submit_all()
        head, problems = self.audit(13)
        self.assertEqual(problems, [])
        out = self.parallax_audit()
        self.assertIn("it extends the saved head of size 0", out)
        self.assertIn("13 leaves replayed: they make the signed root, and every measurement is "
                      "served as logged", out)
        db = self.c.database
        self.c.stop()

        # The measurements table is rebuilt without the log (an older
        # collector's database): the next start logs them again, in the
        # order they were stored, to the very same root.
        db.sql(self.no_log(db))
        self.c.start()
        self.assertIn("13 stored measurement(s) added to the log", self.c.log())
        self.assertEqual(self.get("/api/v1/log/sth")["root_hash"], head["root_hash"])
        self.parallax_audit()
        self.c.stop()

        # A measurement that shows interception is deleted: the log still
        # holds its leaf, and the audit names it.
        db.sql(f"DELETE FROM summaries WHERE uid = '{uids[7]}'; "
               f"DELETE FROM measurements WHERE uid = '{uids[7]}';")
        self.c.start()
        _, problems = self.audit(13)
        self.assertEqual(problems, [f"{uids[7]}: in the log, not served (404)"])
        out = self.parallax_audit(ok=False)
        self.assertIn(f"FAILED: {uids[7]} (leaf 7) is in the log but not served (HTTP 404)", out)
        self.c.stop()

        # Its leaf is rewritten to hide it: the leaves no longer make the
        # root the researcher holds.
        zeros = "decode(repeat('00', 32), 'hex')" if db.pg else "zeroblob(32)"
        db.sql(f"UPDATE log_leaves SET content_sha256 = {zeros} WHERE measurement_uid = "
               f"'{uids[3]}';")
        self.c.start()
        head2, problems = self.audit(13)
        self.assertIn("the leaves do not make the head's root", problems)
        out = self.parallax_audit(ok=False)
        self.assertIn("the leaves do not make the signed root", out)
        self.c.stop()

        # A leaf row is removed outright: the collector refuses to serve a
        # log with a hole in it.
        db.sql(f"DELETE FROM log_leaves WHERE measurement_uid = '{uids[2]}';")
        p = subprocess.run([cl.COLLECTOR_BIN, "--listen", f"127.0.0.1:{cl.free_port()}", "--db",
                            db.url], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("the measurement log has gaps", p.stderr)


if __name__ == "__main__":
    pxtest.main()
