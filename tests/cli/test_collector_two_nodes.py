"""Two parallax-collector processes on one PostgreSQL database (issue 7),
as behind a load balancer: concurrent uploads split across the nodes, the
same measurement sent to both at once, one node killed with SIGKILL in the
middle of the burst and the agents sending again what was not answered.
Every acknowledged measurement is stored exactly once and reads the same
from either node; compare and the check-in's control addresses are the
same from either node; /metrics counts what each node did itself.

PostgreSQL only (registered as cli.test_collector_two_nodes.pg)."""
import datetime
import json
import os
import shutil
import tempfile
import threading
import time

import collectorlib as cl
import pxtest

BURST = 240          # measurements in the burst
DUPLICATED = 40      # of them also sent to the other node at the same moment
KILL_AFTER = 40      # node b is killed once it has answered this many
THREADS = 16


def _post(url, body):
    """(status, answer dict) or (None, None) when the node is not there."""
    try:
        st, _, raw = cl.post(url + "/api/v1/submit_measurement", body,
                             headers={"Content-Type": "application/json"}, timeout=60)
    except OSError:
        return None, None
    doc = json.loads(raw) if raw else None
    return st, doc


class TwoNodes(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        if cl.STORE != "postgresql":
            raise __import__("unittest").SkipTest("two nodes need the PostgreSQL store")
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-two-nodes-")
        cls.base = json.loads(cl.measure_lines("www.example.test",
                                               extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0])
        cls.keys = [cl.SSHKey(cls.tmp, f"agent{k}") for k in range(3)]
        cls.targets = os.path.join(cls.tmp, "targets")
        with open(cls.targets, "w") as f:
            f.write("www.example.test\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def node(self, name, database):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        c = cl.Collector(d, database=database, extra=[
            "--ca-file", pxtest.CA, "--allow-nonpublic-addresses", "--targets", self.targets,
            "--per-ip-limit", "256"])
        self.addCleanup(c.stop)
        return c.start()

    def signed(self, contents):
        """[(content bytes, signature)], the three keys taking turns."""
        out = [None] * len(contents)
        for k, key in enumerate(self.keys):
            idx = list(range(k, len(contents), len(self.keys)))
            for i, pair in zip(idx, key.sign([contents[i] for i in idx])):
                out[i] = pair
        return out

    def check_one_log(self, db, nodes, answers, acked):
        """Both nodes appended to one measurement log (docs/transparency.md):
        a leaf per stored measurement, numbered without a gap, each at the
        index its 200 answer said, and one root served by either node,
        recomputed here from the leaves."""
        from test_collector_log import leaf_hash, mth
        leaves = db.sql("SELECT leaf_index, measurement_uid, encode(content_sha256, 'hex'), "
                        "received_at FROM log_leaves ORDER BY leaf_index")
        self.assertEqual([int(l[0]) for l in leaves], list(range(BURST)))
        self.assertEqual(sorted(l[1] for l in leaves), sorted(acked.values()))
        for got in answers.values():
            for _, st, doc in got:
                if st == 200:
                    self.assertEqual(leaves[doc["leaf_index"]][1], doc["measurement_uid"])
        hashes = [leaf_hash(f"{sha} {uid} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(int(t)))}"
                            .encode()) for _, uid, sha, t in leaves]
        root = mth(hashes).hex()
        for c in nodes:
            st, _, raw = cl.get(c.api("/api/v1/log/sth", tree_size=BURST))
            self.assertEqual(st, 200, raw)
            self.assertEqual(json.loads(raw)["root_hash"], root)

    def test_two_nodes_one_database(self):
        db = cl.Database(self.tmp)
        a, b = self.node("a", db), self.node("b", db)

        # ---- the burst --------------------------------------------------
        # Seven hours apart: the burst spans three months, so both nodes
        # meet new monthly partitions at the same time.
        contents = [cl.variant(self.base, i, cc=("DE", "US", "CN", "FR")[i % 4],
                               asn=("AS3320", "AS7922", "AS4134", "AS3215")[i % 4],
                               step=7 * 3600) for i in range(BURST)]
        pairs = self.signed(contents)
        bodies = [json.dumps(cl.submit_body(x, s)).encode() for x, s in pairs]
        urls = {"a": a.url, "b": b.url}
        # Tasks: (index, [nodes]); a duplicated one goes to both at once.
        tasks = [(i, ["a", "b"] if i % (BURST // DUPLICATED) == 0 else ["ab"[i % 2]])
                 for i in range(BURST)]
        answers = {i: [] for i in range(BURST)}  # i -> [(node, status, doc)]
        lock = threading.Lock()
        b_acks = [0]
        b_killed = threading.Event()

        def send(i, node, barrier=None):
            if barrier is not None:
                barrier.wait()
            st, doc = _post(urls[node], bodies[i])
            with lock:
                answers[i].append((node, st, doc))
                if node == "b" and st == 200:
                    b_acks[0] += 1

        def worker(queue):
            while True:
                with lock:
                    if not queue:
                        return
                    i, nodes = queue.pop(0)
                if len(nodes) == 1:
                    send(i, nodes[0])
                    continue
                barrier = threading.Barrier(2)
                t = threading.Thread(target=send, args=(i, nodes[1], barrier))
                t.start()
                send(i, nodes[0], barrier)
                t.join()

        def killer():
            deadline = time.monotonic() + 60 * cl.SLOW
            while b_acks[0] < KILL_AFTER and time.monotonic() < deadline:
                time.sleep(0.002)
            b.kill9()
            b_killed.set()

        queue = list(tasks)
        threads = [threading.Thread(target=worker, args=(queue,)) for _ in range(THREADS)]
        k = threading.Thread(target=killer)
        k.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        k.join()
        self.assertTrue(b_killed.is_set())
        b_after_kill = sum(1 for i in answers for node, st, _ in answers[i]
                           if node == "b" and st is None)
        self.assertGreater(b_after_kill, 0, "node b was killed after the burst, not during it")

        # What got a 200: one uid per measurement, whichever node answered;
        # of two answers at once to the same new measurement, one stored it.
        acked = {}
        for i, got in answers.items():
            ok = [(node, doc) for node, st, doc in got if st == 200]
            for node, doc in ok:
                cl.check(cl.SUBMIT_RESPONSE, doc, "submit answer")
                acked.setdefault(i, doc["measurement_uid"])
                self.assertEqual(doc["measurement_uid"], acked[i], f"two uids for {i}")
            for node, st, doc in got:
                self.assertIn(st, (200, None), (i, node, st, doc))
            if len(ok) == 2:
                self.assertEqual(sorted(d["duplicate"] for _, d in ok), [False, True], got)
        # Every acknowledged measurement is there, through the surviving node,
        # before anything is sent again.
        for i, uid in acked.items():
            st, _, raw = a.raw(uid)
            self.assertEqual((st, raw), (200, pairs[i][0]), f"acknowledged {uid} is not stored")
        # /metrics is per node: a counts what a stored, nothing of b's.
        a_new = sum(1 for got in answers.values() for node, st, doc in got
                    if node == "a" and st == 200 and not doc["duplicate"])
        self.assertEqual(a.accepted(), a_new)

        both = sum(1 for got in answers.values() if sum(st == 200 for _, st, _ in got) == 2)
        print(f"burst: {len(acked)} of {BURST} acknowledged, {b_after_kill} sent to b after "
              f"the kill, {both} answered by both nodes at once", flush=True)

        # The agents send again what got no answer; b comes back.
        b.start()
        for i in range(BURST):
            if i not in acked:
                st, doc = _post(urls["ab"[i % 2]], bodies[i])
                self.assertEqual(st, 200, doc)
                acked[i] = doc["measurement_uid"]
        self.assertEqual(len(set(acked.values())), BURST)

        # Stored exactly once, readable alike from both nodes.
        self.assertEqual(db.count(), BURST)
        self.assertEqual(db.integrity()[:2], (0, "ok"))
        self.check_one_log(db, (a, b), answers, acked)
        for c in (a, b):
            listed = c.list_all(limit=50)
            self.assertEqual(sorted(r["measurement_uid"] for r in listed), sorted(acked.values()))
        export_a, raw_a = a.export()
        export_b, raw_b = b.export()
        self.assertEqual(raw_a, raw_b)
        self.assertEqual(sorted(l["content"].encode() for l in export_a),
                         sorted(x for x, _ in pairs))
        for i in range(0, BURST, 17):
            self.assertEqual(b.raw(acked[i])[2], pairs[i][0])
            self.assertEqual(a.signature(acked[i])[2], b.signature(acked[i])[2])

        # ---- compare and check-in from either node ------------------------
        # Three vantage groups, each with its own key, measured now: the
        # check-in's 24-hour window holds them.
        when = datetime.datetime.strptime(self.base["measurement_start_time"],
                                          "%Y-%m-%d %H:%M:%S")
        recent = [cl.variant(self.base, 10000 + k, start=when, step=0, cc=cc, asn=asn)
                  for k, (cc, asn) in enumerate((("DE", "AS3320"), ("US", "AS7922"),
                                                 ("FR", "AS3215")))]
        for k, (content, sig) in enumerate(self.signed(recent)):
            st, doc = (a if k % 2 else b).submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)

        def compare(c, **window):
            st, _, raw = cl.get(c.api("/api/v1/compare", domain="www.example.test", **window))
            self.assertEqual(st, 200, raw)
            doc = json.loads(raw)
            self.assertTrue(doc["analysis_complete"], doc)
            return doc

        window = {"since": "2014-10-01T00:00:00Z", "until": "2015-02-01T00:00:00Z"}
        old_a, old_b = compare(a, **window), compare(b, **window)
        self.assertEqual(old_a, old_b)
        # Each key's latest measurement is a vantage: three keys.
        self.assertEqual(len(old_a["vantages"]), len(self.keys), old_a)
        now_a, now_b = compare(a), compare(b)
        for doc in (now_a, now_b):
            doc.pop("until")
            doc.pop("since")
        self.assertEqual(now_a, now_b)
        self.assertEqual(len(now_a["vantages"]), 3, now_a)

        def checkin(c):
            st, _, raw = cl.post(c.url + "/api/v1/check-in",
                                 {"software_name": "parallax", "software_version": "test"})
            self.assertEqual(st, 200, raw)
            return json.loads(raw)["targets"]

        targets_a, targets_b = checkin(a), checkin(b)
        self.assertEqual(targets_a, targets_b)
        self.assertEqual([t["input"] for t in targets_a], ["www.example.test"])
        self.assertTrue(targets_a[0]["control_addresses"], targets_a)

        self.assertEqual(a.stop(), 0, a.log())
        self.assertEqual(b.stop(), 0, b.log())


if __name__ == "__main__":
    cl.require_store()
    pxtest.main()
