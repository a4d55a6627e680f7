"""The agent's spool on a full disk: a small tmpfs mounted by the test holds
the state directory (root only; skipped without it).

- `parallax measure --collector` runs out of space part-way: it says so
  (exit 1, "No space left on device", what it kept), everything spooled
  before is intact (each pair verifies, no temporary file is left), and
  once space returns `parallax upload` delivers all of it, exactly once.
- `parallax upload` on a full disk: the collector accepts, the receipts
  cannot be written, the measurements stay pending; sent again once there
  is room, they come back as duplicates with the same uids and nothing is
  stored twice.
- `parallax run` on a full disk says so, and the next run, with room,
  measures, spools and uploads as usual."""
import errno
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import loadlib
from loadlib import cl, pxtest

TARGETS = ["www.example.test", "expired.example.test", "wronghost.example.test",
           "alias2.example.test", "www.icloud.com", "mitm.example.test",
           "unknownroot.example.test", "tls10.example.test", "reset.example.test",
           "closed.example.test", "garbage.example.test", "nx.example.test"]


def fill(path, leave=0):
    """Writes path until the file system is full, then gives back `leave`
    bytes by truncating it; returns the bytes then free."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block in (65536, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    if leave:
        os.truncate(path, max(0, os.path.getsize(path) - leave))
    st = os.statvfs(os.path.dirname(path))
    return st.f_bavail * st.f_frsize


class DiskFull(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            print("SKIPPED: mounting a tmpfs needs root", file=sys.stderr)
            sys.exit(77)
        cls.tmp = tempfile.mkdtemp(prefix="px-diskfull-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        self.fs = os.path.join(self.dir, "fs")
        os.makedirs(self.fs)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", self.fs],
                           capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs: {p.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.fs], capture_output=True)
        self.state = os.path.join(self.fs, "state")
        self.filler = os.path.join(self.fs, "filler")
        self.agent = cl.Agent(self.state)

    def px(self, *args, ok=(0,)):
        p = pxtest.run(list(args), timeout=180)
        self.assertIn(p.returncode, ok, f"parallax {' '.join(args)}: exit {p.returncode}\n"
                      f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return p

    def pending_files(self):
        return sorted(os.listdir(os.path.join(self.state, "spool", "pending")))

    def assert_spool_intact(self):
        """Only whole entries in pending/, no temporary files, and every
        entry verifies with parallax verify."""
        names = self.pending_files()
        stray = [n for n in names if not n.endswith(".jsonl")]
        self.assertEqual(stray, [], "a temporary or partial file was left in the spool")
        if names:
            v = self.px("verify", *[os.path.join(self.state, "spool", "pending", n) for n in names])
            self.assertIn(f"{len(names)} verified, 0 failed", v.stdout)
        return len(names)

    def test_measure_runs_out_of_space_and_recovers(self):
        down = f"http://127.0.0.1:{cl.free_port()}"
        # One measurement with room: the state directory, key and spool exist.
        self.px("measure", *pxtest.world_args("--state-dir", self.state, "--collector", down),
                "www.example.test")
        self.assertEqual(self.agent.counts()["pending"], 1)
        # Room for a few more pairs, not for twelve.
        free = fill(self.filler, leave=40 * 1024)
        p = self.px("measure", *pxtest.world_args("--state-dir", self.state, "--collector", down),
                    *TARGETS, ok=(1,))
        print(p.stderr)
        self.assertIn("No space left on device", p.stderr)
        self.assertIn("already spooled are kept", p.stderr)
        written = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertIn(f"{len(written)} measurement(s) of this run kept; "
                      f"{len(TARGETS) - len(written)} of {len(TARGETS)} target(s) not measured",
                      p.stderr)
        # The upload that follows (the collector is down) says what is left.
        self.assertIn(f"pending {1 + len(written)}", p.stderr)
        kept = self.assert_spool_intact()
        # What was written out is exactly what was spooled (plus the first).
        self.assertEqual(kept, 1 + len(written), p.stderr)
        self.assertGreaterEqual(len(written), 1, f"nothing fitted in {free} bytes")
        self.assertLess(len(written), len(TARGETS))
        spooled = {json.loads(c)["input"] for c in self.agent.pairs()}
        self.assertEqual({m["input"] for m in written} - spooled, set())
        st = self.agent.status()
        self.assertEqual(int(st["pending"]), kept)

        # Space returns, the collector is up: everything kept is delivered once.
        c = cl.Collector(self.dir)
        self.addCleanup(c.stop)
        c.start()
        contents = set(self.agent.pairs())
        os.unlink(self.filler)
        self.px("upload", "--state-dir", self.state, "--collector", c.url)
        self.assertEqual(self.agent.counts(), {"pending": 0, "sent": kept, "rejected": 0})
        lines, _ = c.export()
        self.assertEqual({l["content"].encode() for l in lines}, contents)
        self.assertEqual(c.db_count(), kept)
        # And measuring works again, all of it.
        self.px("measure", *pxtest.world_args("--state-dir", self.state, "--collector", c.url),
                *TARGETS)
        self.assertEqual(self.agent.counts(), {"pending": 0, "sent": kept + len(TARGETS),
                                               "rejected": 0})
        self.assertEqual(c.db_count(), kept + len(TARGETS))
        loadlib.report("agent_disk_full_measure", tmpfs="1 MiB", free_bytes_at_start=free,
                       targets=len(TARGETS), written_before_full=len(written),
                       spooled_and_kept=kept, exit_code=1, stderr=p.stderr.splitlines(),
                       delivered_after_space_returned=kept, stored_exactly_once=True)

    def test_upload_on_a_full_disk_keeps_pending_and_never_duplicates(self):
        c = cl.Collector(self.dir)
        self.addCleanup(c.stop)
        c.start()
        base = json.loads(cl.measure_lines("www.example.test")[0])
        self.agent.spool([cl.variant(base, i) for i in range(8)])
        contents = set(self.agent.pairs())
        fill(self.filler)
        # The collector takes each one; no receipt can be written.
        p = self.px("upload", "--state-dir", self.state, "--collector", c.url, ok=(1,))
        self.assertIn("receipt cannot be written (No space left on device): it stays pending",
                      p.stderr)
        full_stderr = p.stderr.splitlines()
        counts = self.agent.counts()
        self.assertEqual(counts["pending"] + counts["sent"], 8, counts)
        self.assertGreater(counts["pending"], 0, "receipts were written on a full disk?")
        self.assertEqual(self.assert_spool_intact(), counts["pending"])
        self.assertEqual(c.db_count(), 8, "the collector did not get them all")
        os.unlink(self.filler)
        p = self.px("upload", "--state-dir", self.state, "--collector", c.url)
        self.assertEqual(self.agent.counts(), {"pending": 0, "sent": 8, "rejected": 0}, p.stderr)
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 8)
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())],
                         counts["pending"])
        self.assertEqual(c.db_count(), 8)
        receipts = []
        for r in glob.glob(os.path.join(self.state, "spool", "sent", "*.receipt")):
            with open(r) as f:
                receipts.append(json.load(f)["measurement_uid"])
        self.assertEqual(sorted(receipts), sorted(r["measurement_uid"] for r in c.list_all()))
        lines, _ = c.export()
        self.assertEqual({l["content"].encode() for l in lines}, contents)
        loadlib.report("agent_disk_full_upload", pending=8, stderr=full_stderr, left_pending_on_full_disk=counts["pending"],
                       accepted_by_collector=8, answered_as_duplicates_later=counts["pending"],
                       stored=8)

    def test_run_on_a_full_disk(self):
        c = cl.Collector(self.dir, extra=["--allow-nonpublic-addresses"])
        self.addCleanup(c.stop)
        c.start()
        config = os.path.join(self.dir, "parallax.conf")
        targets = os.path.join(self.dir, "targets.txt")
        with open(targets, "w") as f:
            f.write("".join(t + "\n" for t in TARGETS[:6]))
        self.px("setup", "--yes", "--config", config, "--state-dir", self.state,
                "--collector", c.url, *pxtest.world_args())
        fill(self.filler)
        full = self.px("run", "--config", config, "--state-dir", self.state, "--targets-file",
                       targets, ok=(1,))
        print(full.stderr)
        self.assertIn("No space left on device", full.stderr)
        self.assert_spool_intact()
        self.assertEqual(c.db_count(), 0)
        os.unlink(self.filler)
        p = self.px("run", "--config", config, "--state-dir", self.state, "--targets-file", targets)
        self.assertIn("uploaded 6", p.stderr)
        self.assertEqual(self.agent.counts()["pending"], 0)
        self.assertEqual(c.db_count(), 6)
        loadlib.report("agent_disk_full_run", exit_code_full=1, stderr=full.stderr.splitlines(),
                       next_run_with_room="measured 6, uploaded 6")


if __name__ == "__main__":
    pxtest.main()
