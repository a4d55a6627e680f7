"""Helpers of the load and fault tests (tests/load): the px-loadgen driver,
the exactly-once check of what a collector acknowledged, /proc sampling and
the figures each test reports.

Every test here has two sizes. `make check` runs the short, deterministic
one (ctest, bounded counts, no assertion on speed); `make soak` sets
PX_SOAK=1 and the same code runs at full size (1,000 concurrent clients,
20 kill cycles, 20,000 targets) and writes its figures to PX_REPORT (one
JSON object per line) for docs/reliability.md."""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))

import collectorlib as cl  # noqa: E402
import pxtest  # noqa: E402

SOAK = os.environ.get("PX_SOAK") == "1"
LOADGEN = os.environ.get("PX_LOADGEN_BIN",
                         os.path.join(pxtest.SOURCE, "build", "tests", "px-loadgen"))
REPORT = os.environ.get("PX_REPORT")
# Before the test adds its own threads (the 1-minute load average counts
# runnable threads: a collector with 1,000 connections is 1,000 of them).
LOADAVG_AT_START = round(os.getloadavg()[0], 1)


def size(check, soak):
    """The check-time figure, or the full one under PX_SOAK=1."""
    return soak if SOAK else check


def report(name, **figures):
    """Prints the figures and, under make soak, appends them to PX_REPORT."""
    # The machine is shared (other jobs, fuzzers): its load is part of
    # every figure.
    doc = {"test": name, "soak": SOAK, "loadavg_1m_at_start": LOADAVG_AT_START,
           "cpus": os.cpu_count(), **figures}
    print("FIGURES " + json.dumps(doc, sort_keys=True), flush=True)
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps(doc, sort_keys=True) + "\n")


def raise_nofile():
    """Takes the hard open-file limit: the tests hold a socket per client."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def template(workdir):
    """A real measurement of the test world (a verified handshake with its
    chain, about 4 KB), written to workdir/template.json: what px-loadgen
    varies and signs."""
    line = cl.measure_lines("www.example.test", extra=("--probe-cc", "DE", "--probe-asn", "3320"))[0]
    path = os.path.join(workdir, "template.json")
    with open(path, "w") as f:
        f.write(line + "\n")
    return path


class Loadgen:
    """One px-loadgen run against url. start() returns at once; wait()
    returns the summary (a dict). acks lists (index, uid, sha256, duplicate)
    of every 200, in the order they came."""

    def __init__(self, workdir, url, tmpl, count, connections, sources="127.82.0.1/8",
                 retry=False, start_index=0, name="load", timeout_ms=60000, give_up=None):
        self.acks_path = os.path.join(workdir, f"{name}.acks")
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.key = os.path.join(workdir, "loadgen_ed25519")
        self.argv = [LOADGEN, "--url", url, "--template", tmpl, "--key", self.key,
                     "--count", str(count), "--connections", str(connections),
                     "--sources", sources, "--acks", self.acks_path,
                     "--start-index", str(start_index), "--timeout-ms", str(timeout_ms)]
        if retry:
            self.argv.append("--retry")
        if give_up is not None:
            self.argv += ["--give-up", str(give_up)]
        self.proc = None

    def start(self):
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.PIPE)
        return self

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout=600):
        try:
            _, err = self.proc.communicate(timeout=timeout * cl.SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("px-loadgen does not finish")
        self.out.close()
        with open(self.out_path) as f:
            text = f.read().strip()
        if not text:
            raise AssertionError(f"px-loadgen: exit {self.proc.returncode}, no summary: {err!r}")
        summary = json.loads(text.splitlines()[-1])
        summary["exit"] = self.proc.returncode
        # 3: some submissions failed (the summary says which); anything
        # else is the driver's own trouble (a sanitizer report, a crash).
        if self.proc.returncode not in (0, 3):
            raise AssertionError(f"px-loadgen: exit {self.proc.returncode}: {err[-3000:]!r}")
        return summary

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def acks(self):
        """Complete lines only: the file is being written while we read."""
        out = []
        try:
            with open(self.acks_path) as f:
                data = f.read()
        except FileNotFoundError:
            return out
        for line in data.split("\n")[:-1]:
            i, uid, sha, dup = line.split("\t")
            out.append((int(i), uid, sha, dup == "1"))
        return out

    def ack_count(self):
        """Acknowledgements so far, read incrementally (cheap to poll)."""
        if not hasattr(self, "_seen"):
            self._seen, self._off = 0, 0
        try:
            with open(self.acks_path, "rb") as f:
                f.seek(self._off)
                data = f.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        self._seen += data.count(b"\n", 0, end)
        self._off += end
        return self._seen

    def run(self, timeout=600):
        return self.start().wait(timeout)


def stored(db):
    """{uid: content sha256 hex} of every stored measurement, read with
    Python's own SQLite (WAL honoured; after a kill -9 this is also the
    recovery any reader does)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT uid, hex(content_sha256) FROM measurements").fetchall()
    finally:
        con.close()
    return {uid: sha.lower() for uid, sha in rows}


def check_log(test, db, when):
    """The measurement log and the measurements are one: every stored
    measurement has exactly one leaf with its content hash, every leaf a
    measurement, the leaves are numbered 0..n-1 without a gap, and the
    root of the leaves is the one the stored subtrees give (what the
    collector serves). A kill -9 must never leave one without the other."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        leaves = con.execute("SELECT leaf_index, measurement_uid, hex(content_sha256), "
                             "received_at FROM log_leaves ORDER BY leaf_index").fetchall()
        nodes = {(lv, ix): h for lv, ix, h in con.execute("SELECT level, idx, hash FROM log_nodes")}
    finally:
        con.close()
    rows = stored(db)
    test.assertEqual([l[0] for l in leaves], list(range(len(leaves))), f"{when}: leaf numbering")
    test.assertEqual({l[1]: l[2].lower() for l in leaves}, rows,
                     f"{when}: the log and the measurements differ")
    hashes = []
    for _, uid, sha, received in leaves:
        when_s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(received))
        hashes.append(hashlib.sha256(b"\x00" + f"{sha.lower()} {uid} {when_s}".encode()).digest())
    # Every perfect subtree the collector kept is the hash of its leaves.
    for (level, index), h in nodes.items():
        lo, hi = index << level, (index + 1) << level
        test.assertLessEqual(hi, len(hashes), f"{when}: a subtree beyond the last leaf")
        test.assertEqual(h, merkle_root(hashes[lo:hi]), f"{when}: subtree ({level}, {index})")
    return len(leaves)


def merkle_root(hashes):
    """RFC 9162 MTH of leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + merkle_root(hashes[:k]) + merkle_root(hashes[k:])).digest()


def integrity(db):
    """(exit status, output) of `sqlite3 DB 'PRAGMA integrity_check'`."""
    p = subprocess.run(["sqlite3", db, "PRAGMA integrity_check;"], capture_output=True,
                       text=True, timeout=300)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_acks_stored(test, db, acks, when):
    """Every acknowledged measurement is in db with the bytes it was sent
    with (by content hash), and one index never got two uids."""
    rows = stored(db)
    uid_of = {}
    for i, uid, sha, _ in acks:
        test.assertIn(uid, rows, f"{when}: measurement {i} got a 200 ({uid}) but is not stored")
        test.assertEqual(rows[uid], sha, f"{when}: {uid} stored with other bytes")
        test.assertEqual(uid_of.setdefault(i, uid), uid, f"{when}: measurement {i}: two uids")
    return rows


def percentile(values, p):
    v = sorted(values)
    return v[int((len(v) - 1) * p)] if v else None


# ---- /proc sampling ---------------------------------------------------------

def proc_sample(pid):
    """(VmRSS in KiB, open descriptors) of pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None


def descriptors(pid):
    """What pid's open descriptors are (for a failure's message)."""
    out = []
    try:
        for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
            try:
                out.append(f"{fd}->{os.readlink(f'/proc/{pid}/fd/{fd}')}")
            except OSError:
                pass
    except OSError:
        pass
    return " ".join(out)


def sockets(pid):
    """How many of pid's descriptors are sockets (what a connection leak
    leaves behind; files come and go with the store's own connections:
    each SQLite reader opens the WAL on its first read)."""
    return descriptors(pid).count("->socket:")


def wait_for(predicate, timeout, what, interval=0.02):
    return cl.wait_until(predicate, timeout, what, interval)


def monotonic_ms(t0):
    return (time.monotonic() - t0) * 1000
