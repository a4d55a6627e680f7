"""The agent in a soak: many targets against the test world (tests/peers)
with the hostile peers mixed in (stalling and resetting servers, garbage
and silent DNS, truncated answers that force TCP, malformed and looping
records), through both the good and the broken resolver, signing,
spooling and uploading each measurement to a collector (`parallax measure
--collector`, the path a volunteer's run takes).

/proc/PID/status VmRSS and the number of open descriptors of the agent
(and of its signer, the forked child that holds the key) are sampled
throughout. Every target must give one measurement, the run must end with
exit 0 (the agent fails when uv_loop_close finds a handle left open), the
descriptors stay within what --parallel allows, and in the full soak RSS
and descriptors must be flat: the last fifth of the run no higher than the
second fifth, within a small allowance.

A shorter run of the same mix under valgrind (plain build only) must be
free of memory errors and leaks; tests/cli/valgrind_measure.py covers the
probes alone (9 targets, no signer, spool or upload), this one the whole
volunteer path. Check size: 500 targets, 40 under valgrind; `make soak`:
20,000 targets, 300 under valgrind."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import loadlib
from loadlib import cl, pxtest
from pxtest import PEER

TARGETS = loadlib.size(500, 20000)
VALGRIND_TARGETS = loadlib.size(40, 300)
PARALLEL = loadlib.size(64, 256)
TIMEOUT_MS = 1000

# The mix, weighted towards what a real run meets most (valid servers), with
# every hostile peer present. Nothing here resolves outside 127.80.0.0/16.
MIX = (["www.example.test"] * 6 + ["alias2.example.test"] * 2 + ["www.icloud.com"] * 2 + [
    "expired.example.test", "wronghost.example.test", "unknownroot.example.test",
    "mitm.example.test", "tls10.example.test", "noreneg.example.test",
    "stall.example.test", "reset.example.test", "closed.example.test", "garbage.example.test",
    "refused.example.test", "nx.example.test",
    "servfail.bad.test", "refused.bad.test", "silent.bad.test", "truncated.bad.test",
    "malformed.bad.test", "loop.bad.test", "garbage.bad.test", "wrongid.bad.test", "ok.bad.test"])


def targets(n):
    return [MIX[i % len(MIX)] for i in range(n)]


def args(state, url, *extra):
    return (pxtest.world_args("--resolver", pxtest.BAD_DNS, "--state-dir", state, "--collector",
                              url, *extra, timeout_ms=TIMEOUT_MS))


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Samples (seconds, measurements written, agent RSS KiB, agent fds,
    signer RSS KiB, signer fds) every interval until the process ends."""

    def __init__(self, pid, out_path, interval):
        super().__init__(daemon=True)
        self.pid, self.out_path, self.interval = pid, out_path, interval
        self.rows = []
        self.t0 = time.monotonic()

    def lines(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def run(self):
        while True:
            a = loadlib.proc_sample(self.pid)
            if a is None:
                return
            kids = children(self.pid)
            s = loadlib.proc_sample(kids[0]) if kids else None
            self.rows.append((round(time.monotonic() - self.t0, 1), self.lines(), a[0], a[1],
                              s[0] if s else None, s[1] if s else None))
            time.sleep(self.interval)


class Soak(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        loadlib.raise_nofile()
        cls.tmp = tempfile.mkdtemp(prefix="px-soak-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def collector(self):
        c = cl.Collector(tempfile.mkdtemp(dir=self.tmp))
        self.addCleanup(lambda: self.assertEqual(c.stop(), 0, c.log()))
        return c.start()

    def test_soak_rss_and_descriptors_stay_flat(self):
        c = self.collector()
        d = tempfile.mkdtemp(dir=self.tmp)
        tfile = os.path.join(d, "targets.txt")
        want = targets(TARGETS)
        with open(tfile, "w") as f:
            f.write("\n".join(want) + "\n")
        out = os.path.join(d, "out.jsonl")
        state = os.path.join(d, "state")
        err = open(os.path.join(d, "stderr"), "wb")
        p = subprocess.Popen([pxtest.BIN, "measure", *args(state, c.url, "--parallel", str(PARALLEL)),
                              "--targets-file", tfile, "--output", out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        sampler = Sampler(p.pid, out, loadlib.size(0.2, 1.0))
        sampler.start()
        try:
            rc = p.wait(timeout=loadlib.size(240, 3000) * cl.SLOW)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        sampler.join(10)
        err.close()
        stderr = open(os.path.join(d, "stderr"), errors="replace").read()
        self.assertEqual(rc, 0, stderr[-3000:])
        self.assertNotIn("handles left open", stderr)

        # One measurement per target, each a schema-valid line.
        got = []
        with open(out) as f:
            for k, line in enumerate(f):
                m = json.loads(line)
                got.append(m["input"])
                if k % 50 == 0:
                    cl.check(cl.MEASUREMENT, m, "soak measurement")
        self.assertEqual(sorted(got), sorted(want))
        # Spooled, signed and delivered, every one.
        counts = cl.Agent(state).counts()
        self.assertEqual(counts["pending"] + counts["rejected"], 0, counts)
        self.assertEqual(c.db_count(), TARGETS)

        rows = [r for r in sampler.rows if r[1] is not None]
        self.assertGreater(len(rows), 3, "too few samples")
        fds = [r[3] for r in rows]
        # Each operation in flight holds at most a socket or two (a TLS
        # flow; a DNS channel's UDP and TCP sockets), plus the fixed set.
        self.assertLessEqual(max(fds), 2 * PARALLEL + 48, f"descriptors: {max(fds)}")

        # The measuring phase: samples between the first and the last line.
        measuring = [r for r in rows if 0 < r[1] < TARGETS]
        table = []
        for q in range(11):
            r = min(measuring or rows, key=lambda r: abs(r[1] - q * TARGETS / 10))
            table.append(r)
        # After the last measurement: the upload of every one of them.
        uploading = [r for r in rows if r[1] >= TARGETS]
        for k in (0, len(uploading) // 2, len(uploading) - 1):
            if uploading and uploading[k] not in table:
                table.append(uploading[k])
        flat = None
        if loadlib.SOAK and not pxtest.SANITIZED:
            # How many descriptors are open at one instant depends on how
            # many stalling peers happen to be in flight (up to --parallel
            # of them), so a window's maximum is noise; a leak raises the
            # whole curve: its median and its floor.
            n = len(measuring)
            second = measuring[n // 5: 2 * n // 5]
            last = measuring[4 * n // 5:]

            def med(v):
                v = sorted(v)
                return v[len(v) // 2]
            rss2, rss5 = max(r[2] for r in second), max(r[2] for r in last)
            fd2 = {"min": min(r[3] for r in second), "median": med(r[3] for r in second),
                   "max": max(r[3] for r in second)}
            fd5 = {"min": min(r[3] for r in last), "median": med(r[3] for r in last),
                   "max": max(r[3] for r in last)}
            flat = {"rss_second_fifth_kib": rss2, "rss_last_fifth_kib": rss5,
                    "fds_second_fifth": fd2, "fds_last_fifth": fd5}
            series = [(r[0], r[1], r[3]) for r in rows]
            # A leak of 100 bytes a target would be 2 MB over the soak.
            self.assertLessEqual(rss5, rss2 * 1.05 + 2048, f"RSS grows: {flat}")
            self.assertLessEqual(fd5["median"], fd2["median"] + 16,
                                 f"descriptors grow: {flat}\n(s, lines, fds): {series}")
            self.assertLessEqual(fd5["min"], fd2["min"] + 16,
                                 f"descriptors grow: {flat}\n(s, lines, fds): {series}")
        # Once every target is measured, only the fixed set and the
        # upload's connection remain: whatever a probe opened is closed.
        if uploading and rows:
            self.assertLessEqual(min(r[3] for r in uploading), rows[0][3] + 8,
                                 f"descriptors left after measuring: {uploading[:5]} "
                                 f"(at start: {rows[0]})")
        if not pxtest.SANITIZED:
            self.assertLess(max(r[2] for r in rows), 96 * 1024, "RSS above 96 MiB")
        loadlib.report("agent_soak", targets=TARGETS, parallel=PARALLEL, timeout_ms=TIMEOUT_MS,
                       mix=sorted(set(MIX)), elapsed_s=rows[-1][0], exit_code=rc,
                       measurements=len(got), uploaded=TARGETS,
                       peak_rss_kib=max(r[2] for r in rows), peak_fds=max(fds),
                       signer_peak_rss_kib=max((r[4] or 0) for r in rows),
                       signer_peak_fds=max((r[5] or 0) for r in rows), flat=flat,
                       table_columns=["s", "measurements", "rss_kib", "fds", "signer_rss_kib",
                                      "signer_fds"],
                       table=table, samples=len(rows))

    def test_valgrind_whole_volunteer_path(self):
        if pxtest.SANITIZED:
            self.skipTest("valgrind and ASan do not mix")
        if shutil.which("valgrind") is None:
            self.skipTest("valgrind is not installed")
        c = self.collector()
        d = tempfile.mkdtemp(dir=self.tmp)
        state = os.path.join(d, "state")
        # The key first, outside valgrind (key generation is not the subject).
        pxtest.run(["keygen", "--state-dir", state])
        want = targets(VALGRIND_TARGETS)
        vg = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
              "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
              "--track-fds=no", "--child-silent-after-fork=no"]
        t0 = time.monotonic()
        p = subprocess.run(vg + [pxtest.BIN, "measure", *args(state, c.url, "--parallel", "16"),
                                 *want], capture_output=True, text=True,
                           timeout=loadlib.size(280, 3000))
        elapsed = time.monotonic() - t0
        print(p.stderr[-4000:], file=sys.stderr)
        self.assertEqual(p.returncode, 0, "valgrind found errors or leaks (exit 99) or the run "
                         f"failed:\n{p.stderr[-4000:]}")
        self.assertEqual(len(p.stdout.splitlines()), VALGRIND_TARGETS)
        self.assertEqual(c.db_count(), VALGRIND_TARGETS)
        loadlib.report("agent_valgrind", targets=VALGRIND_TARGETS, clean=True,
                       elapsed_s=round(elapsed, 1), path="measure --collector: probes, signer "
                       "(forked child), spool, upload")


if __name__ == "__main__":
    pxtest.main()
