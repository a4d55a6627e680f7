"""A volunteer's week, simulated: one agent, 168 timer firings (`parallax
run` back to back, as parallax.service runs it) against the local test
world and a real parallax-collector, in a few minutes of wall time.

As root (with unshare, systemd-analyze and libseccomp), every firing runs
in parallax.service's own sandbox (tests/cli/sandbox_exec.py: the unit's
syscall filter and address families, NoNewPrivileges=, a read-only /
with only the state directory writable, UMask=0077) as an unprivileged
uid, the service's DynamicUser=, that owns the state directory (and the
tmpfs it is on); the frozen round of day 4 is checked to carry that uid,
no_new_privs and the filter. The volunteer's own commands run as
docs/volunteer.md says: `setup`, `setup --withdraw` and `status` with
plain sudo (as root), `keygen --rotate` as the service's user (systemd-run
there; here the same uid, without the unit's sandbox) after plain sudo is
refused. What root wrote in the state directory (setup's consent and
first key) the next firing hands to the service's user, as systemd does
for StateDirectory=. Without root everything runs as the caller, and the
test says the firings ran unsandboxed.

The agent keeps its books (upload backoff, run records, status) by a clock
that a test build can move (PX_TEST_CLOCK_OFFSET_S): firing N happens at
hour N of the week. Measurements keep the real clock, as the collector,
another machine, does.

What happens during the week, in order:
  day 1   an ordinary day, in Germany (the check-in says DE);
  day 2   the collector is down: rounds measure against the last check-in
          and hold what they measure (the public address is unknown), until
          the spool limit (max_spool) is reached; then they measure nothing
          and say so in the journal and in `parallax status`;
  day 3   the collector is back: the held measurements are released and
          uploaded, rounds measure again; then the disk fills (a tmpfs
          holds the state directory) and is freed again;
  day 4   the machine is suspended in the middle of a round (SIGSTOP), the
          clock jumps 9 hours, the timer's catch-up firing finds the frozen
          round's lock; the machine resumes (SIGCONT) and the round ends;
  day 5   the network changes country: the collector now places the agent
          in China (CN), through the addresses its test geolocation
          database maps (tests/tools/make-mmdb.pl);
  day 6   the volunteer rotates the key;
  day 7   the volunteer pauses (consent withdrawn: systemd's
          ConditionPathExists= skips the firings) and resumes.

Checked at the end: every measurement the agent kept is at the collector
exactly once (the agent's receipts and spooled contents against the
collector's export); after every firing, the unsent spool (pending and
held) stayed within max_spool plus one round; `parallax status` said
what was true after each phase; and, in the sandbox, the state directory,
the run records and the key are the service's user's and private."""
import errno
import glob
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import collectorlib as cl
import pxtest
import sandbox_exec

HOUR = 3600
# Hours of a simulated day: 168 firings in all. A firing takes about 0.3 s,
# under ASan too: the whole week fits in about a minute either way, so
# the sanitizer build runs all of it.
DAY = 24
TARGETS = ["www.example.test", "www.icloud.com"]
DE_ADDR = "198.51.100.20"   # DE, AS3320 in the test database
CN_ADDR = "203.0.113.7"     # CN, AS4134
SUSPEND_HOURS = 9
TMPFS = "32m"
UNIT = os.path.join(os.path.dirname(os.path.abspath(pxtest.BIN)), "dist", "systemd",
                    "parallax.service")
# The service's user (DynamicUser=): inside systemd's range for dynamic
# users (61184-65519), apart from test_systemd_sandbox's.
SERVICE_UID = 61303


def read(path):
    with open(path) as f:
        return f.read()


def dir_bytes(d):
    """Bytes of the regular, non-temporary files of d, counted here
    independently of parallax."""
    if not os.path.isdir(d):
        return 0
    total = 0
    for name in os.listdir(d):
        path = os.path.join(d, name)
        if not name.startswith(".") and os.path.isfile(path) and not os.path.islink(path):
            total += os.path.getsize(path)
    return total


def fill(path):
    """Writes path until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)


class Front:
    """The collector's front door as the agent's network sees it: a small
    HTTP proxy on loopback that forwards to the collector and says, in
    X-Forwarded-For (the collector trusts 127.0.0.1/32), which public
    address the agent has today. Moving the agent to another country is
    changing that address. Stopped, it is a collector that is down."""

    def __init__(self, backend_port):
        self.backend_port = backend_port
        self.port = cl.free_port()
        self.client = DE_ADDR
        self.server = None
        self.requests = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                front.requests += 1
                conn = http.client.HTTPConnection("127.0.0.1", front.backend_port, timeout=60)
                try:
                    headers = {"X-Forwarded-For": front.client}
                    if self.headers.get("Content-Type"):
                        headers["Content-Type"] = self.headers["Content-Type"]
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                             "date", "server"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Week(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        p = subprocess.run(["perl", "-MMaxMind::DB::Writer::Tree", "-e", "1"],
                           capture_output=True)
        if p.returncode != 0:
            print("SKIPPED: MaxMind::DB::Writer::Tree is missing (apt-get install "
                  "libmaxmind-db-writer-perl)", file=sys.stderr)
            sys.exit(77)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="px-week-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        # Every firing runs in parallax.service's sandbox (tests/cli/
        # sandbox_exec.py) where that is possible, as the service's user;
        # the volunteer's own commands run as the docs say (sudo, or as
        # the service's user). Otherwise the firings run as this process,
        # as before.
        why = sandbox_exec.unavailable(UNIT)
        self.sandboxed = why is None
        self.bin, self.ca = pxtest.BIN, pxtest.CA
        if self.sandboxed:
            # The service's user walks through to the state directory and
            # runs what is installed, where anyone may read it, never the
            # build tree (which may sit in a 0700 directory): copies.
            os.chmod(self.dir, 0o755)
            bindir = os.path.join(self.dir, "bin")
            os.mkdir(bindir, 0o755)
            self.bin = shutil.copy2(pxtest.BIN, bindir)
            self.ca = shutil.copy2(pxtest.CA, bindir)
            os.chmod(self.bin, 0o755)
            os.chmod(self.ca, 0o644)
        self.unsandboxed_why = why
        subprocess.run(["perl", os.path.join(pxtest.SOURCE, "tests", "tools", "make-mmdb.pl"),
                        self.dir], check=True, capture_output=True, timeout=60)
        # The state directory on a file system of its own when we may mount
        # one, so that the disk can fill up; else the day-3 disk phase is
        # left out (and says so).
        self.fs = os.path.join(self.dir, "fs")
        os.makedirs(self.fs)
        self.tmpfs = False
        if os.geteuid() == 0 and shutil.which("mount"):
            # The service's user owns it, as it owns /var/lib/private.
            owner = f",uid={SERVICE_UID},gid={SERVICE_UID}" if self.sandboxed else ""
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS},mode=0700{owner}",
                                "tmpfs", self.fs], capture_output=True, text=True)
            self.tmpfs = p.returncode == 0
            if self.tmpfs:
                self.addCleanup(subprocess.run, ["umount", "-l", self.fs], capture_output=True)
        self.state = os.path.join(self.fs, "state")
        self.config = os.path.join(self.dir, "parallax.conf")
        self.collector = cl.Collector(self.dir, extra=[
            "--allow-nonpublic-addresses", "--trusted-proxy", "127.0.0.1/32",
            "--geoip-db", os.path.join(self.dir, "country.mmdb"),
            "--geoip-db", os.path.join(self.dir, "networks.mmdb")])
        self.collector.start()
        self.addCleanup(self.collector.stop)
        self.front = Front(self.collector.port).start()
        self.addCleanup(self.front.stop)
        self.targets = os.path.join(self.dir, "targets.txt")
        with open(self.targets, "w") as f:
            f.write("".join(t + "\n" for t in TARGETS))
        os.chmod(self.targets, 0o644)  # read by the service's user
        self.hour = 0          # the simulated hour of the next firing
        self.jump = 0          # seconds the clock jumped (the suspend)
        self.records = []      # every run record, in order (runs.jsonl keeps 100)
        self.seen_runs = 0
        self.firings = 0
        self.skipped = 0       # firings systemd's condition skipped (no consent)
        self.max_unsent = 0
        self.largest_entry = 0
        self.spool_full_lines = 0

    # ---- the machine ------------------------------------------------------

    def clock(self):
        return {"PX_TEST_CLOCK_OFFSET_S": str(self.hour * HOUR + self.jump)}

    def px(self, *args, ok=(0,)):
        p = pxtest.run(list(args), env=self.clock(), timeout=180)
        if p.returncode not in ok:
            raise AssertionError(f"parallax {' '.join(args)}: exit {p.returncode}\n"
                                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def as_service(self, *args, ok=(0,)):
        """A command the volunteer runs as the service's user, as the docs
        say for those that write into the state directory (`sudo
        systemd-run -p DynamicUser=yes -p User=parallax -p
        StateDirectory=parallax parallax ...`): the same uid, without the
        unit's sandbox. Without root, this process's user is the
        service's."""
        kw = {}
        if self.sandboxed:
            kw = dict(user=SERVICE_UID, group=SERVICE_UID, extra_groups=[], cwd="/")
        p = subprocess.run([self.bin, *args], capture_output=True, text=True,
                           env=dict(os.environ, **self.clock()), timeout=180, **kw)
        if p.returncode not in ok:
            raise AssertionError(f"parallax {' '.join(args)} (as the service's user): exit "
                                 f"{p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def run_args(self):
        return ["run", "--config", self.config, "--state-dir", self.state]

    def service(self, args):
        """The command line and environment of parallax.service starting
        `parallax args`: in the unit's sandbox as the service's user, who
        owns the state directory (sandbox_exec hands it over, as systemd
        does for StateDirectory= with DynamicUser=), when we can."""
        env = dict(os.environ, **self.clock())
        if not self.sandboxed:
            return [self.bin, *args], env
        return (sandbox_exec.argv(UNIT, SERVICE_UID, self.state, [self.bin, *args]),
                sandbox_exec.environ(env, pxtest.SANITIZED))

    def fire(self, ok=(0,)):
        """One firing of parallax.timer: parallax.service runs `parallax
        run`, unless its ConditionPathExists= (the consent) fails. Returns
        the process, or None when systemd would not have started it."""
        self.firings += 1
        try:
            if not os.path.exists(os.path.join(self.state, "consent")):
                self.skipped += 1
                return None
            argv, env = self.service(self.run_args())
            p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180,
                               cwd="/")
            if p.returncode not in ok:
                raise AssertionError(f"firing at hour {self.hour}: exit {p.returncode}\n"
                                     f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
            self.spool_full_lines += p.stderr.count("spool full:")
            self.collect_records()
            self.check_bounded()
            return p
        finally:
            self.hour += 1

    def collect_records(self):
        """Appends the run records written since the last look (runs.jsonl
        keeps only the newest 100), each checked against its schema."""
        path = os.path.join(self.state, "runs.jsonl")
        recs = [json.loads(l) for l in read(path).splitlines()] if os.path.exists(path) else []
        for r in recs:
            cl.check(pxtest.RUN_RECORD, r, "run record")
        known = {json.dumps(r, sort_keys=True) for r in self.records[-200:]}
        for r in recs:
            if json.dumps(r, sort_keys=True) not in known:
                self.records.append(r)

    def unsent(self):
        return (dir_bytes(os.path.join(self.state, "spool", "pending")),
                dir_bytes(os.path.join(self.state, "held")))

    def check_bounded(self):
        """The unsent spool stays within max_spool plus one round (the limit
        is checked when a round starts: a round begun below it may end
        above it)."""
        for d in ("pending", "sent"):
            for f in glob.glob(os.path.join(self.state, "spool", d, "*.jsonl")):
                self.largest_entry = max(self.largest_entry, os.path.getsize(f))
        for f in glob.glob(os.path.join(self.state, "held", "*")):
            self.largest_entry = max(self.largest_entry, os.path.getsize(f) + 200)
        total = sum(self.unsent())
        self.max_unsent = max(self.max_unsent, total)
        bound = self.max_spool + len(TARGETS) * self.largest_entry
        self.assertLessEqual(total, bound, f"unsent spool {total} > {bound} at hour {self.hour}")

    def status(self):
        """`parallax status`, checked against what is on disk here: the
        pending count, the bytes unsent and the held count."""
        p = self.px("status", "--state-dir", self.state)
        out = p.stdout
        pending, held = self.unsent()
        self.assertIn(f"unsent: {pending + held} bytes ({pending} pending, {held} held)\n", out)
        n = len(glob.glob(os.path.join(self.state, "spool", "pending", "*.jsonl")))
        self.assertIn(f"pending: {n}\n", out)
        h = len(glob.glob(os.path.join(self.state, "held", "*.json")))
        if h:
            self.assertIn(f"kept local: {h} measurement(s)", out)
        else:
            self.assertNotIn("kept local:", out)
        return out

    def last_run_line(self, out):
        lines = [l for l in out.splitlines() if re.match(r"  \d{4}-\d\d-\d\dT", l)]
        self.assertTrue(lines, out)
        return lines[-1]

    def day(self, hours, ok=(0,)):
        for _ in range(hours):
            self.fire(ok=ok)

    # ---- the week ---------------------------------------------------------

    def test_a_week(self):
        t0 = time.monotonic()
        self.max_spool = self.calibrate()
        self.px("setup", "--yes", "--config", self.config, "--state-dir", self.state,
                "--collector", self.front.url, "--targets-file", self.targets,
                "--max-spool", str(self.max_spool), "--parallel", "4",
                *self.world_args())
        self.assertIn(f"max_spool = {self.max_spool}\n", read(self.config))
        self.assertIn(": ok", self.px("config", "check", self.config).stdout)
        bad = os.path.join(self.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write("[parallax]\nmax_spool = 0\n")
        p = self.px("config", "check", bad, ok=(2,))
        self.assertIn(f"{bad}:2: --max-spool: expected a size", p.stderr)
        self.day1_ordinary()
        self.day2_collector_down()
        self.day3_back_and_disk_full()
        self.day4_suspend()
        self.day5_new_country()
        self.day6_key_rotation()
        self.day7_pause_and_resume()
        self.assertEqual(self.firings, 7 * DAY)
        self.end_of_week()
        if not self.sandboxed:
            print(f"note: the firings ran unsandboxed, not in parallax.service's sandbox "
                  f"({self.unsandboxed_why})", file=sys.stderr)
        print(f"week: {self.firings} firings ({self.skipped} skipped for want of consent), "
              f"{len(self.records)} run records, max_spool {self.max_spool}, largest unsent "
              f"{self.max_unsent}, {time.monotonic() - t0:.0f} s", file=sys.stderr)

    def world_args(self):
        """The test world, with the CA the service's user can read."""
        args = pxtest.world_args(timeout_ms=2000)
        args[args.index(pxtest.CA)] = self.ca
        return args

    def calibrate(self):
        """max_spool for about DAY/3 hours of held rounds: the spool fills
        during the collector's day off. A measurement of these targets is a
        few KiB; its size is measured, not assumed."""
        lines = cl.measure_lines(*TARGETS)
        per_round = sum(len(l) + 1 for l in lines) + 2 * 200
        return per_round * max(3, DAY // 3)

    def day1_ordinary(self):
        self.day(DAY)
        rec = self.records[-1]
        self.assertEqual((rec["exit_code"], rec["check_in"], rec["measured"], rec["held"]),
                         (0, "collector", len(TARGETS), 0), rec)
        self.assertEqual(len(self.records), DAY)
        self.assertFalse(any(r.get("spool_full") for r in self.records))
        out = self.status()
        self.assertIn("consent: given", out)
        self.assertIn("last check-in: DE AS3320\n", out)
        self.assertIn("pending: 0\n", out)
        self.assertNotIn("last error:", out)
        self.assertNotIn("FAILED", out)
        self.assertNotIn("spool full", out)
        self.assertIn(f"runs: {DAY} recorded", out)
        self.assertIn(f"{len(TARGETS)}/{len(TARGETS)} measured", self.last_run_line(out))
        self.assertEqual(self.collector.db_count(), DAY * len(TARGETS))

    def day2_collector_down(self):
        self.front.stop()
        self.collector.stop()
        full_at = None
        for h in range(DAY):
            held_before = len(glob.glob(os.path.join(self.state, "held", "*.json")))
            p = self.fire()
            rec = self.records[-1]
            self.assertEqual(rec["check_in"], "cached", rec)
            self.assertEqual(rec["exit_code"], 0, rec)
            held_after = len(glob.glob(os.path.join(self.state, "held", "*.json")))
            if rec.get("spool_full"):
                full_at = full_at if full_at is not None else h
                # Nothing new was measured, nothing was deleted.
                self.assertEqual(held_after, held_before)
                self.assertEqual((rec["measured"], rec["stopped_by"]), (0, "max_spool"))
                self.assertGreaterEqual(rec["spool_bytes"], self.max_spool)
                self.assertEqual(rec["max_spool"], self.max_spool)
                [line] = [l for l in p.stderr.splitlines() if "spool full:" in l]
                self.assertIn(f"of max_spool {self.max_spool}; no new measurements until "
                              "uploads drain it", line)
                out = self.status()
                pending, held = self.unsent()
                self.assertIn(f"spool full: {pending + held} bytes of max_spool "
                              f"{self.max_spool} unsent; no new measurements until uploads "
                              "drain it", out)
                self.assertIn("stopped by max_spool", self.last_run_line(out))
            else:
                self.assertIsNone(full_at, "a round measured after the spool was full")
                # Without the collector the public address is unknown: the
                # round is held, to be scrubbed once it is known.
                self.assertEqual((rec["measured"], rec["held"]), (len(TARGETS), len(TARGETS)))
                self.assertEqual(held_after, held_before + len(TARGETS))
                self.assertIn("public address is unknown", p.stderr)
        self.assertIsNotNone(full_at, "the spool never filled during the collector's day off")
        self.assertLess(full_at, DAY - 1)
        out = self.status()
        self.assertIn("check-in: cached", self.last_run_line(out))
        self.assertIn(f"kept local: {len(glob.glob(os.path.join(self.state, 'held', '*.json')))}",
                      out)

    def day3_back_and_disk_full(self):
        self.collector.start()
        self.front.start()
        held = len(glob.glob(os.path.join(self.state, "held", "*.json")))
        before = self.collector.db_count()
        p = self.fire()
        self.assertIn(f"released {held}", p.stderr)
        rec = self.records[-1]
        self.assertEqual((rec["check_in"], rec["measured"], rec.get("spool_full")),
                         ("collector", len(TARGETS), None), rec)
        self.assertLess(rec["spool_bytes"], self.max_spool)
        self.assertEqual(self.collector.db_count(), before + held + len(TARGETS))
        out = self.status()
        self.assertIn("unsent: 0 bytes (0 pending, 0 held)\n", out)
        self.assertNotIn("spool full", out)
        self.assertNotIn("spool was full", out)
        self.day(DAY // 2 - 1)
        if not self.tmpfs:
            print("note: no tmpfs for the state directory (needs root): the disk-full phase "
                  "is left out", file=sys.stderr)
            self.day(DAY - DAY // 2)
            return
        # The disk fills: the rounds say so and keep nothing half written.
        filler = os.path.join(self.fs, "filler")
        fill(filler)
        runs_before = len(self.records)
        for _ in range(2):
            p = self.fire(ok=(1,))
            self.assertIn("No space left on device", p.stderr)
        out = self.status()
        self.assertIn("disk full: ", out)
        # A full disk cannot take the run records either; status says the
        # disk is full rather than show the last good run as the news.
        self.assertEqual(len(self.records), runs_before)
        stray = [f for f in os.listdir(os.path.join(self.state, "spool", "pending"))
                 if not f.endswith(".jsonl")]
        self.assertEqual(stray, [], "a temporary or partial file was left in the spool")
        os.unlink(filler)
        self.day(DAY - DAY // 2 - 2)
        out = self.status()
        self.assertNotIn("disk full", out)
        self.assertNotIn("FAILED", out)
        self.assertIn("pending: 0\n", out)
        self.assertEqual(self.records[-1]["exit_code"], 0)

    def day4_suspend(self):
        self.day(DAY // 2)
        # A round that stalls (stall.example.test accepts and never
        # answers) is frozen in the middle, as a suspend freezes it.
        stall = os.path.join(self.dir, "stall.txt")
        with open(stall, "w") as f:
            f.write("stall.example.test\n" + "".join(t + "\n" for t in TARGETS))
        os.chmod(stall, 0o644)
        runs = len(self.records)
        # A firing too: in the sandbox, whose pid is the round's (sandbox_exec
        # execs it, unshare does not fork).
        argv, env = self.service([*self.run_args(), "--targets-file", stall])
        frozen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd="/")
        self.firings += 1
        self.hour += 1
        lock = os.path.join(self.state, "run.lock")
        cl.wait_until(lambda: os.path.exists(lock) and read(lock).strip() == str(frozen.pid),
                      30, "the round to take its lock")
        time.sleep(0.3)
        frozen.send_signal(signal.SIGSTOP)
        if self.sandboxed:
            # The round is the service's: its user, no new privileges, the
            # unit's syscall filter.
            status = read(f"/proc/{frozen.pid}/status")
            self.assertRegex(status, rf"\nUid:\t{SERVICE_UID}\t{SERVICE_UID}\t")
            self.assertIn("\nNoNewPrivs:\t1\n", status)
            self.assertIn("\nSeccomp:\t2\n", status)
        try:
            # The machine sleeps 9 hours; on waking, the timer catches up
            # (Persistent=true) while the frozen round still holds the lock.
            self.jump += SUSPEND_HOURS * HOUR
            p = self.fire()
            self.assertIn(f"another run (pid {frozen.pid}) is in progress", p.stderr)
            self.assertEqual(len(self.records), runs)
            out = self.status()
            self.assertNotIn("FAILED", out)
            # The frozen round is no secret: status names it.
            self.assertIn(f"run in progress: pid {frozen.pid} (its record follows when it "
                          "ends)\n", out)
        finally:
            frozen.send_signal(signal.SIGCONT)
        _, err = frozen.communicate(timeout=120)
        self.assertEqual(frozen.returncode, 0, err)
        self.collect_records()
        self.check_bounded()
        self.assertEqual(len(self.records), runs + 1)
        rec = self.records[-1]
        self.assertEqual((rec["exit_code"], rec["targets"], rec["measured"]),
                         (0, len(TARGETS) + 1, len(TARGETS) + 1), rec)
        # The rounds after it are 9 hours later by the agent's clock.
        self.day(DAY - DAY // 2 - 2)
        started = [r["started"] for r in self.records[-3:]]
        self.assertEqual(sorted(started), started)
        out = self.status()
        self.assertNotIn("FAILED", out)
        self.assertIn("pending: 0\n", out)
        self.assertNotIn("next automatic upload", out)
        self.assertNotIn("run in progress", out)

    def day5_new_country(self):
        self.day(DAY // 2)
        self.moved_at = len(self.records)
        self.front.client = CN_ADDR
        self.day(DAY - DAY // 2)
        out = self.status()
        self.assertIn("last check-in: CN AS4134\n", out)
        self.assertNotIn("FAILED", out)

    def day6_key_rotation(self):
        self.day(DAY // 2)
        old = cl.key_id_of_pub(read(os.path.join(self.state, "parallax_ed25519.pub")))
        self.assertIn(f"key id: {old}\n", self.status())
        if self.sandboxed:
            # Plain sudo is refused the service's directory, and says how.
            p = self.px("keygen", "--rotate", "--state-dir", self.state, ok=(1,))
            self.assertIn("run the command as that user: systemd-run", p.stderr)
        p = self.as_service("keygen", "--rotate", "--state-dir", self.state)
        self.assertIn(f"old key id: {old}", p.stdout)
        self.new_key = cl.key_id_of_pub(read(os.path.join(self.state, "parallax_ed25519.pub")))
        self.old_key = old
        out = self.status()
        self.assertIn(f"key id: {self.new_key}\n", out)
        self.assertIn("key rotation: waiting", out)
        self.day(DAY - DAY // 2)
        out = self.status()
        self.assertNotIn("key rotation: waiting", out)
        signers = self.collector.allowed_signers()
        [old_line] = [l for l in signers.splitlines() if l.startswith(old)]
        self.assertIn('valid-before="', old_line)
        self.assertTrue(any(l.startswith(self.new_key) and "valid-before" not in l
                            for l in signers.splitlines()), signers)

    def day7_pause_and_resume(self):
        self.day(DAY // 4)
        p = self.px("setup", "--withdraw", "--state-dir", self.state)
        self.assertIn("withdrawn", p.stdout)
        runs, skipped = len(self.records), self.skipped
        self.day(DAY // 4)
        self.assertEqual((len(self.records), self.skipped), (runs, skipped + DAY // 4))
        out = self.status()
        self.assertIn("consent: not given", out)
        self.assertNotIn("FAILED", out)
        self.px("setup", "--yes", "--config", self.config, "--state-dir", self.state)
        self.assertIn(f"max_spool = {self.max_spool}\n", read(self.config))
        self.day(DAY - 2 * (DAY // 4))
        out = self.status()
        self.assertIn("consent: given", out)
        self.assertEqual(len(self.records), runs + DAY - 2 * (DAY // 4))

    def end_of_week(self):
        out = self.status()
        self.assertIn("pending: 0\n", out)
        self.assertIn("unsent: 0 bytes (0 pending, 0 held)\n", out)
        self.assertNotIn("FAILED", out)
        self.assertNotIn("spool full", out)
        self.assertEqual(glob.glob(os.path.join(self.state, "spool", "rejected", "*")), [])
        self.assertEqual(glob.glob(os.path.join(self.state, "held", "*")), [])
        # What the agent kept (and sent): its sent/ entries and receipts.
        sent = cl.spool_entries(os.path.join(self.state, "spool", "sent"))
        receipts = {}
        for name in sent:
            with open(os.path.join(self.state, "spool", "sent", name + ".receipt")) as f:
                receipts[name] = json.load(f)["measurement_uid"]
        # Every measurement a round reported as kept is among them.
        kept = sum(r["measured"] for r in self.records if r["exit_code"] == 0)
        self.assertEqual(len(sent), kept)
        lines, _ = self.collector.export()
        uids = [l["measurement_uid"] for l in lines]
        contents = [l["content"].encode() for l in lines]
        # Exactly once: no uid and no content twice at the collector...
        self.assertEqual(len(set(uids)), len(uids))
        self.assertEqual(len(set(contents)), len(contents))
        # ...and it holds exactly what the agent kept, under the uids the
        # agent was given.
        self.assertEqual(sorted(contents), sorted(c for c, _ in sent.values()))
        by_content = {l["content"].encode(): l["measurement_uid"] for l in lines}
        for name, (content, _) in sent.items():
            self.assertEqual(by_content[content], receipts[name], name)
        self.assertEqual(self.collector.db_count(), len(sent))
        # Signed by the old key before the rotation, by the new one after.
        keys = {l["key_id"] for l in lines}
        self.assertEqual(keys, {self.old_key, self.new_key})
        # The country each measurement names is where the agent was when it
        # checked in: DE before the move, CN after it.
        cc = [json.loads(c)["probe_cc"] for c in contents]
        self.assertEqual(set(cc), {"DE", "CN"})
        self.assertEqual(self.spool_full_lines,
                         sum(1 for r in self.records if r.get("spool_full")))
        self.assertLessEqual(self.max_unsent, self.max_spool + len(TARGETS) * self.largest_entry)
        if self.sandboxed:
            # The state is the service's user's, and private (UMask=0077).
            for path in (self.state, os.path.join(self.state, "runs.jsonl"),
                         os.path.join(self.state, "parallax_ed25519")):
                st = os.stat(path)
                self.assertEqual((st.st_uid, st.st_mode & 0o077), (SERVICE_UID, 0), path)


if __name__ == "__main__":
    pxtest.main()
