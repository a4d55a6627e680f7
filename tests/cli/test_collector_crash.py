"""kill -9 of the collector in the middle of a burst of concurrent uploads,
several times over: every measurement that got a 200 (a receipt in the
agent's spool/sent/) is in the collector after the restart, the agents
send the rest again, and in the end the collector holds every measurement
exactly once in a database that passes PRAGMA integrity_check."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

import collectorlib as cl
import pxtest

AGENTS = 6
KILL_AFTER = 30   # accepted by this collector instance before the kill
# 3 in `make check`; `make soak` (PX_SOAK=1) kills 20 times, with enough
# measurements spooled that every kill lands during the uploads.
CYCLES = 20 if os.environ.get("PX_SOAK") == "1" else 3
PER_AGENT = max(40, CYCLES * KILL_AFTER * 2 // AGENTS)


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


class Crash(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-crash-")
        cls.base = json.loads(cl.measure_lines("www.example.test")[0])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.procs = []
        self.addCleanup(self._reap)

    def _reap(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def start_uploads(self, agents, url):
        procs = []
        for a in agents:
            if a.counts()["pending"] == 0:
                continue
            p = subprocess.Popen([pxtest.BIN, "upload", "--state-dir", a.dir, "--collector", url],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            procs.append(p)
        self.procs.extend(procs)
        return procs

    def wait_uploads(self, procs):
        for p in procs:
            try:
                _, err = p.communicate(timeout=120 * cl.SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                self.fail("parallax upload hangs")
            # 0: drained; 1: gave up with measurements pending (collector gone).
            self.assertIn(p.returncode, (0, 1), err)

    def receipts(self, agents):
        """{uid: content bytes} of every receipt in the agents' sent/."""
        out = {}
        for a in agents:
            sent = a.entries("sent")
            for r in glob.glob(os.path.join(a.dir, "spool", "sent", "*.receipt")):
                uid = json.loads(read(r))["measurement_uid"]
                self.assertTrue(uid, r)
                name = os.path.basename(r)[:-len(".receipt")]
                self.assertIn(name, sent, f"a receipt without its entry: {r}")
                content = sent[name][0]
                self.assertNotIn(uid, out, "two receipts with one uid")
                out[uid] = content
        return out

    def assert_receipts_stored(self, c, agents, when):
        for uid, content in self.receipts(agents).items():
            st, _, body = c.raw(uid)
            self.assertEqual(st, 200, f"{when}: {uid} got a 200 but is not stored")
            self.assertEqual(body, content, f"{when}: {uid} stored with other bytes")

    def assert_integrity(self, c, when):
        rc, out, err = c.integrity()
        self.assertEqual((rc, out), (0, "ok"), f"{when}: {err}")

    def test_kill9_during_concurrent_uploads(self):
        d = self.tmp
        agents, everything = [], set()
        for k in range(AGENTS):
            a = cl.Agent(os.path.join(d, f"agent{k}"))
            lines = [cl.variant(self.base, k * PER_AGENT + i, cc=("DE", "US", "CN")[k % 3])
                     for i in range(PER_AGENT)]
            a.spool(lines)
            self.assertEqual(a.counts()["pending"], PER_AGENT)
            everything.update(line.encode() for line in lines)
            agents.append(a)
        self.assertEqual(len(everything), AGENTS * PER_AGENT)

        c = cl.Collector(d)
        self.addCleanup(c.stop)
        c.start()
        kills = during_burst = 0
        for cycle in range(CYCLES):
            procs = self.start_uploads(agents, c.url)
            if not procs:
                break
            # Kill once this instance has committed KILL_AFTER measurements.
            deadline = time.monotonic() + 60 * cl.SLOW
            while c.accepted() < KILL_AFTER and any(p.poll() is None for p in procs):
                self.assertLess(time.monotonic(), deadline, "uploads make no progress")
                time.sleep(0.001)
            if all(p.poll() is not None for p in procs):
                self.wait_uploads(procs)
                break
            c.kill9()
            kills += 1
            pending = sum(a.counts()["pending"] for a in agents)
            print(f"kill {kills}: {pending} pending", flush=True)
            if pending > 0:
                during_burst += 1
            self.assert_integrity(c, f"after kill {kills}")
            last = cycle == CYCLES - 1
            if last:
                # Back at once: the uploaders' own retries reach the new
                # instance and re-send what was in flight.
                c.start()
                self.wait_uploads(procs)
            else:
                # Uploaders give up with the rest pending; then restart.
                self.wait_uploads(procs)
                c.start()
            self.assert_receipts_stored(c, agents, f"after kill {kills}")
            self.assert_integrity(c, f"after restart {kills}")

        self.assertGreaterEqual(kills, 1, "the collector was never killed during the burst")
        self.assertGreaterEqual(during_burst, 1, "no kill happened while uploads were pending")

        # Drain: parallax upload until nothing is pending.
        for _ in range(10):
            procs = self.start_uploads(agents, c.url)
            if not procs:
                break
            self.wait_uploads(procs)
        for a in agents:
            self.assertEqual(a.counts(), {"pending": 0, "sent": PER_AGENT, "rejected": 0}, a.dir)

        receipts = self.receipts(agents)
        self.assertEqual(len(receipts), AGENTS * PER_AGENT)
        self.assertEqual(set(receipts.values()), everything)
        self.assert_receipts_stored(c, agents, "at the end")
        listed = c.list_all(limit=97)
        self.assertEqual(len(listed), AGENTS * PER_AGENT)
        self.assertEqual({r["measurement_uid"] for r in listed}, set(receipts))
        lines, _ = c.export()
        self.assertEqual(len(lines), AGENTS * PER_AGENT)
        self.assertEqual({l["content"].encode() for l in lines}, everything)
        self.assertEqual(c.db_count(), AGENTS * PER_AGENT)
        self.assert_integrity(c, "at the end")
        self.assertEqual(c.stop(), 0, c.log())
        self.assert_integrity(c, "after a clean stop")
        print(f"kills: {kills}, during the burst: {during_burst}", flush=True)
        self.assertEqual(kills, CYCLES, "the uploads ended before every kill was made")


if __name__ == "__main__":
    pxtest.main()
