"""The units under a real systemd as PID 1 (issue 15): systemd-nspawn boots
the host's own systemd in a container over a throwaway copy of this
machine's root (volatile /, writable overlays of /etc, /usr and /var whose
upper layers live in a temporary directory, host network so the loopback
test world is reachable), the project's .deb (made by `cpack` from this
build tree) is installed in it with dpkg, and then, as a volunteer and an
operator would:

- parallax-collector.service starts as Type=notify: `systemctl start`
  returns only once it answers; a stop with a submission in flight waits
  for it (200) and a restart still has every acknowledged measurement;
- `parallax setup --yes`, `systemctl enable --now parallax.timer` (a
  drop-in makes it fire every 15 s): the timer starts parallax.service,
  which runs under a dynamic uid with its StateDirectory= (setup's root
  owned files migrated to /var/lib/private/parallax), measures the test
  world, uploads to the collector; `journalctl -u parallax` shows the
  round's summary and `parallax status` the run and systemd's next firing;
- `systemd-analyze security` asks the running systemd about both units.

Skipped (77) with the reason when the container cannot be had: not root,
systemd-nspawn missing (Debian's systemd-container), or nspawn not booting
(its command line and output are in the message)."""
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import collectorlib as cl
import pxtest

BUILD = os.path.dirname(os.path.abspath(pxtest.BIN))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fires every 15 s, at once: the shipped hourly schedule with its random
# delay is what the drop-in replaces, nothing else.
TIMER_DROPIN = "[Timer]\nOnCalendar=\nOnCalendar=*:*:0/15\nRandomizedDelaySec=0\nAccuracySec=1s\n"
# Booted instead of graphical.target: systemd's own early units, the
# journal and D-Bus, but none of the host's enabled servers (nginx,
# PostgreSQL, NSD... on the shared network) and none of its timers.
BOOT_TARGET = """[Unit]
Description=parallax test boot
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
"""
TARGETS = ["www.example.test", "www.icloud.com"]


def cmake_cache(key):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split("=", 1)[1].strip()
    return None


def unavailable():
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn boots a container)"
    if shutil.which("systemd-nspawn") is None:
        return ("systemd-nspawn is not installed (Debian: apt-get install systemd-container; "
                "scripts/install-deps.sh installs it)")
    for tool in ("nsenter", "cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/lib/systemd/systemd"):
        return "there is no systemd on this machine to boot (/lib/systemd/systemd)"
    # Whether a container boots here (systemd-detect-virt calls this
    # Firecracker VM "docker", yet nspawn boots fine) only a boot can tell.
    return None


def _die_with_parent():
    """In nspawn before exec: a test killed by ctest's timeout takes its
    container with it (SIGTERM makes nspawn power the container off)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Container:
    """A booted systemd-nspawn container over the host's root. Owns the
    nspawn process; shutdown() powers it off (and kills it if it hangs)."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.name = f"pxpid1-{os.getpid()}"
        self.share = os.path.join(tmp, "share")
        os.makedirs(self.share, mode=0o755)
        self.upper = {d: os.path.join(tmp, "upper", d) for d in ("etc", "usr", "var")}
        for d in self.upper.values():
            os.makedirs(d)
        etc = self.upper["etc"]
        os.makedirs(os.path.join(etc, "systemd", "system"))
        with open(os.path.join(etc, "systemd", "system", "px-test.target"), "w") as f:
            f.write(BOOT_TARGET)
        # Its own machine id: the journal and DynamicUser= are per machine.
        with open(os.path.join(etc, "machine-id"), "w") as f:
            f.write(uuid.uuid4().hex + "\n")
        # The host's firewall is no container's business (shared network).
        os.symlink("/dev/null", os.path.join(etc, "systemd", "system", "nftables.service"))
        self.log_path = os.path.join(tmp, "nspawn.log")
        self.proc = None
        self.leader = None

    def command(self):
        return (["systemd-nspawn", "--directory=/", "--volatile=yes", f"--machine={self.name}",
                 "--register=no", "--keep-unit", "--link-journal=no", "--console=passive",
                 f"--bind-ro={self.share}:/px"]
                + [f"--overlay=/{d}:{u}:/{d}" for d, u in self.upper.items()]
                + ["--boot", "--", "--unit=px-test.target"])

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def boot(self, timeout=60):
        """None once systemd in the container says running (or degraded);
        else why not, with nspawn's command line and output."""
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        log.close()
        own = os.readlink("/proc/self/ns/pid")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.leader is None:
                self.leader = self._child_in_other_pid_ns(own)
            if self.leader is not None:
                p = self.run("systemctl", "is-system-running", check=False, timeout=20)
                state = p.stdout.strip()
                if state in ("running", "degraded"):
                    return None
            time.sleep(0.2)
        why = (f"exit {self.proc.returncode}" if self.proc.poll() is not None
               else f"no running systemd after {timeout}s (state {state!r})")
        return f"`{' '.join(self.command())}`: {why}:\n{self.log()}"

    def _child_in_other_pid_ns(self, own):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
            for k in kids:
                if os.readlink(f"/proc/{k}/ns/pid") != own:
                    return int(k)
        except OSError:
            pass
        return None

    def run(self, *cmd, check=True, input=None, timeout=120):
        """cmd as root inside the container (its mount, PID, IPC, UTS and
        cgroup namespaces; the network is the host's), clean environment."""
        p = subprocess.run(["nsenter", "-t", str(self.leader), "-m", "-p", "-u", "-i", "-C", "-r",
                            "-w", "--", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8",
                            "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *cmd],
                           input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"in the container: {' '.join(cmd)}: exit {p.returncode}\n"
                                 f"{p.stdout}{p.stderr}")
        return p

    def write(self, path, text):
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path, input=text)

    def show(self, unit, *props):
        out = self.run("systemctl", "show", unit, *[f"--property={p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def shutdown(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.leader is not None:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=20)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Pid1(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-systemd-pid1-")
        cls.box = Container(cls.tmp)
        # The .deb as a release would make it, from this build tree.
        p = subprocess.run(["cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
                            "-G", "DEB", "-B", os.path.join(cls.tmp, "cpack")],
                           cwd=BUILD, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise AssertionError("cpack failed:\n" + p.stdout + p.stderr)
        debs = [f for f in os.listdir(os.path.join(cls.tmp, "cpack")) if f.endswith(".deb")]
        assert len(debs) == 1, debs
        shutil.copy(os.path.join(cls.tmp, "cpack", debs[0]), os.path.join(cls.box.share, "px.deb"))
        shutil.copy(pxtest.CA, os.path.join(cls.box.share, "ca.pem"))
        why = cls.box.boot()
        if why is not None:
            cls.box.shutdown()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            print("SKIPPED: systemd does not boot in a container here: " + why, file=sys.stderr)
            sys.exit(77)
        cls.prefix = cmake_cache("CMAKE_INSTALL_PREFIX") or "/usr/local"
        cls.port = cl.free_port()
        cls.url = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        cls.box.shutdown()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def journal(self, unit):
        return self.box.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def sanitizer_dropin(self, unit):
        """LeakSanitizer's ptrace is refused by the units' filter, as it
        should be: in an ASan build the leak check is left to the other
        tests, the memory checks stay (their reports go to the journal,
        test_6 reads it)."""
        if pxtest.SANITIZED:
            self.box.write(f"/etc/systemd/system/{unit}.d/asan.conf",
                           "[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0:abort_on_error=1\n"
                           "Environment=UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1\n")

    def test_1_the_deb_installs_its_units(self):
        b = self.box
        # A machine with parallax installed lends the container its
        # package, config and state too: a fresh install starts from none.
        b.run("dpkg", "--purge", "parallax", check=False)
        b.run("rm", "-rf", "/etc/parallax", "/var/lib/parallax", "/var/lib/private/parallax",
              "/var/lib/parallax-collector", "/var/lib/private/parallax-collector")
        b.run("dpkg", "-i", "/px/px.deb")
        # The running systemd knows the units, from the package's path.
        for unit in ("parallax.service", "parallax.timer", "parallax-collector.service"):
            st = b.show(unit, "LoadState", "FragmentPath")
            self.assertEqual(st["LoadState"], "loaded", (unit, st))
            self.assertTrue(st["FragmentPath"].startswith(self.prefix + "/lib/systemd/system/"), st)
        # The binary the unit starts is the one the .deb installed.
        exec_start = b.show("parallax.service", "ExecStart")["ExecStart"]
        path = re.search(r"path=(\S+)", exec_start).group(1)
        self.assertEqual(b.run("dpkg", "-S", path).stdout.split(":")[0], "parallax")

    def test_2_collector_type_notify_graceful_stop_restart(self):
        b = self.box
        with open(os.path.join(self.box.share, "targets.txt"), "w") as f:
            f.write("".join(t + "\n" for t in TARGETS))
        b.write("/etc/parallax/collector.env",
                f"PX_COLLECTOR_LISTEN=127.0.0.1:{self.port}\n"
                "PX_COLLECTOR_ARGS=--allow-nonpublic-addresses --targets /px/targets.txt\n")
        self.sanitizer_dropin("parallax-collector.service")
        b.run("systemctl", "daemon-reload")
        b.run("systemctl", "start", "parallax-collector.service", timeout=120)
        # start returned: READY=1 came, and it came only once it listens.
        st, _, body = cl.get(self.url + "/healthz")
        self.assertEqual(st, 200, body)
        s = b.show("parallax-collector.service", "Type", "ActiveState", "SubState", "MainPID",
                   "StatusText")
        self.assertEqual((s["Type"], s["ActiveState"], s["SubState"]),
                         ("notify", "active", "running"), s)
        # What it told systemd with READY=1.
        self.assertEqual(s["StatusText"], f"listening on 127.0.0.1:{self.port}, database "
                         "sqlite:/var/lib/parallax-collector/collector.sqlite", s)
        uid = int(b.run("stat", "-c", "%u", f"/proc/{s['MainPID']}").stdout)
        self.assertTrue(61184 <= uid <= 65519, f"collector uid {uid} is not a dynamic user")

        # Acknowledged before the stop, and one in flight during it.
        agent = cl.Agent(os.path.join(self.tmp, "submitter"))
        lines = cl.measure_lines("www.example.test")
        base = json.loads(lines[0])
        signed = agent.sign([cl.variant(base, i) for i in range(6)])
        acked = []
        for content, signature in signed[:5]:
            conn_st, doc = self.submit(content, signature)
            self.assertEqual(conn_st, 200, doc)
            acked.append(doc["measurement_uid"])
        body = json.dumps(cl.submit_body(*signed[5])).encode()
        before = self.requests()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60 * cl.SLOW)
        self.addCleanup(conn.close)
        conn.putrequest("POST", "/api/v1/submit_measurement")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        half = len(body) // 2
        conn.sock.sendall(body[:half])
        # In the collector's hands (counted once its request line is
        # parsed) before the stop: a poll that sees two more requests than
        # the poll before it saw the POST as well.
        seen = [before]

        def counted():
            seen.append(self.requests())
            return seen[-1] >= seen[-2] + 2
        cl.wait_until(counted, 10, "the request to be in flight")
        b.run("systemctl", "stop", "--no-block", "parallax-collector.service")
        cl.wait_until(lambda: b.show("parallax-collector.service", "ActiveState")["ActiveState"]
                      == "deactivating", 10, "the stop to begin")
        time.sleep(0.5)
        # Still stopping: it waits for the request it is answering.
        s = b.show("parallax-collector.service", "ActiveState", "StatusText")
        self.assertEqual(s, {"ActiveState": "deactivating",
                             "StatusText": "stopping: finishing requests in flight"})
        conn.sock.sendall(body[half:])
        resp = conn.getresponse()
        answer = resp.read()
        self.assertEqual(resp.status, 200, answer)
        acked.append(json.loads(answer)["measurement_uid"])
        cl.wait_until(lambda: b.show("parallax-collector.service", "ActiveState")["ActiveState"]
                      == "inactive", 60 * cl.SLOW, "the collector to stop")
        s = b.show("parallax-collector.service", "Result", "ExecMainStatus")
        self.assertEqual((s["Result"], s["ExecMainStatus"]), ("success", "0"),
                         self.journal("parallax-collector"))

        # Back, with the watchdog docs/operator.md offers as a drop-in.
        b.write("/etc/systemd/system/parallax-collector.service.d/watchdog.conf",
                "[Service]\nWatchdogSec=2s\n")
        b.run("systemctl", "daemon-reload")
        b.run("systemctl", "start", "parallax-collector.service", timeout=120)
        started = b.show("parallax-collector.service", "MainPID", "WatchdogUSec")
        self.assertEqual(started["WatchdogUSec"], "2s", started)
        st, _, body = cl.get(self.url + "/api/v1/measurements?limit=100")
        self.assertEqual(st, 200, body)
        stored = {r["measurement_uid"] for r in json.loads(body)["results"]}
        self.assertEqual(set(acked) - stored, set(), "acknowledged but lost over a restart")
        # Its state is where StateDirectory= puts it, private to its user.
        out = b.run("stat", "-c", "%u %a", "/var/lib/private/parallax-collector/collector.sqlite")
        owner, mode = out.stdout.split()
        self.assertTrue(61184 <= int(owner) <= 65519, owner)
        self.assertEqual(int(mode, 8) & 0o077, 0, mode)
        # Three watchdog periods later: pinged, not restarted.
        time.sleep(6)
        s = b.show("parallax-collector.service", "MainPID", "NRestarts", "ActiveState",
                   "WatchdogTimestampMonotonic", "ExecMainStartTimestampMonotonic")
        self.assertEqual((s["ActiveState"], s["MainPID"], s["NRestarts"]),
                         ("active", started["MainPID"], "0"), self.journal("parallax-collector"))
        self.assertGreater(int(s["WatchdogTimestampMonotonic"]),
                           int(s["ExecMainStartTimestampMonotonic"]) + 4_000_000, s)

    def requests(self):
        """parallax_collector_requests_total, this request included."""
        st, _, body = cl.get(self.url + "/metrics")
        assert st == 200, (st, body)
        return cl.parse_metrics(body.decode())[("parallax_collector_requests_total", ())]

    def submit(self, content, signature):
        data = json.dumps(cl.submit_body(content, signature)).encode()
        st, _, raw = cl.post(self.url + "/api/v1/submit_measurement", data,
                             headers={"Content-Type": "application/json"})
        return st, json.loads(raw)

    def test_3_timer_fires_the_sandboxed_round(self):
        b = self.box
        if b.show("parallax-collector.service", "ActiveState")["ActiveState"] != "active":
            self.skipTest("needs the collector of test_2")
        st, _, body = cl.get(self.url + "/api/v1/measurements?limit=1000")
        before = len(json.loads(body)["results"])
        # Installed, no consent yet: a round is not even started.
        self.assertNotConsented()
        b.run("parallax", "setup", "--yes", "--collector", self.url,
              "--resolver", pxtest.DNS, "--no-system-resolver", "--port", pxtest.TLS_PORT,
              "--ca-file", "/px/ca.pem", "--allow-nonpublic-addresses", "--timeout", "2000",
              "--dns-late-window", "200")
        b.write("/etc/systemd/system/parallax.timer.d/test.conf", TIMER_DROPIN)
        self.sanitizer_dropin("parallax.service")
        b.run("systemctl", "daemon-reload")
        b.run("systemctl", "enable", "--now", "parallax.timer")
        self.assertEqual(b.run("systemctl", "is-enabled", "parallax.timer").stdout.strip(),
                         "enabled")

        def finished():
            s = b.show("parallax.service", "ExecMainExitTimestampMonotonic", "ActiveState")
            return s["ExecMainExitTimestampMonotonic"] not in ("", "0") and \
                s["ActiveState"] != "activating"
        cl.wait_until(finished, 60 * cl.SLOW, "parallax.timer to start a round", interval=0.5)
        s = b.show("parallax.service", "Result", "ExecMainStatus", "ExecMainPID")
        log = self.journal("parallax.service")
        self.assertEqual((s["Result"], s["ExecMainStatus"]), ("success", "0"), log)
        self.assertNotEqual(b.show("parallax.timer", "LastTriggerUSec")["LastTriggerUSec"], "",
                            "the round was not started by the timer")

        # The journal: the round's summary, logged by the dynamic user.
        self.assertRegex(log, r"parallax run: 2 measured, 2 with a verified handshake", log)
        self.assertRegex(log, rf"parallax run: uploaded 2 to {self.url}, rejected 0", log)
        entries = [json.loads(line) for line in b.run(
            "journalctl", "--no-pager", "-o", "json", "-u", "parallax.service",
            f"_PID={s['ExecMainPID']}").stdout.splitlines()]
        # (systemd's executor, "(parallax)", logs under the same _PID as
        # root before it becomes the service's user: the StateDirectory=
        # migration below.)
        own = [e for e in entries if e.get("_COMM") == "parallax"]
        self.assertTrue(own, log)
        uids = {int(e["_UID"]) for e in own}
        self.assertEqual(len(uids), 1, [(e["_UID"], e.get("_COMM"), e.get("MESSAGE"))
                                        for e in own])
        uids_seen = uids.pop()
        self.assertTrue(61184 <= uids_seen <= 65519, "parallax.service is not a dynamic user")

        # StateDirectory= took over what setup (root) wrote.
        self.assertIn("Found pre-existing public StateDirectory= directory /var/lib/parallax, "
                      "migrating to /var/lib/private/parallax", log)
        self.assertEqual(b.run("readlink", "/var/lib/parallax").stdout.strip(),
                         "private/parallax")
        out = b.run("find", "/var/lib/private/parallax", "-printf", "%U %m %p\n").stdout
        modes = {}
        for line in out.splitlines():
            owner, mode, path = line.split(" ", 2)
            self.assertEqual(int(owner), uids_seen, line)
            modes[path] = int(mode, 8)
        # StateDirectoryMode=0700; the private key is the owner's alone.
        self.assertEqual(modes["/var/lib/private/parallax"], 0o700, out)
        self.assertEqual(modes["/var/lib/private/parallax/parallax_ed25519"] & 0o077, 0, out)

        st, _, body = cl.get(self.url + "/api/v1/measurements?limit=1000")
        results = json.loads(body)["results"]
        self.assertGreaterEqual(len(results) - before, 2)
        self.assertTrue(set(TARGETS) <= {r["input"] for r in results})

        # parallax status (as root, reading the state the service wrote):
        # the run, and the next firing as systemd has it.
        status = b.run("parallax", "status").stdout
        self.assertIn("consent: given", status)
        self.assertRegex(status, r"exit 0\s+2/2 measured", status)
        nxt = re.search(r"^next run: (.+) \(parallax\.timer\)$", status, re.M)
        self.assertIsNotNone(nxt, status)
        self.assertEqual(nxt.group(1), b.show("parallax.timer", "NextElapseUSecRealtime")
                         ["NextElapseUSecRealtime"])

    def assertNotConsented(self):
        b = self.box
        b.run("systemctl", "start", "parallax.service")
        s = b.show("parallax.service", "ConditionResult", "ActiveState")
        self.assertEqual(s, {"ConditionResult": "no", "ActiveState": "inactive"})

    def test_4_withdraw_and_consent_again(self):
        b = self.box
        if b.run("test", "-e", "/var/lib/parallax/consent", check=False).returncode != 0:
            self.skipTest("needs the round of test_3")
        # Paused as docs/volunteer.md says: no round starts behind the
        # test's back from here on, and status says there is no next one.
        b.run("systemctl", "stop", "parallax.timer")
        cl.wait_until(lambda: b.show("parallax.service", "ActiveState")["ActiveState"]
                      == "inactive", 120 * cl.SLOW, "a round in progress to end")
        self.assertIn("next run: unknown (parallax.timer is not active",
                      b.run("parallax", "status").stdout)
        b.run("parallax", "setup", "--withdraw")
        self.assertNotConsented()
        runs = b.run("parallax", "status").stdout
        self.assertIn("consent: not given", runs)
        # Consent again, as root, into the directory the dynamic user owns
        # now: the next round (started by hand, the timer may too) reads it.
        b.run("parallax", "setup", "--yes")
        b.run("systemctl", "start", "parallax.service", timeout=120)
        s = b.show("parallax.service", "ConditionResult", "Result", "ExecMainStatus")
        self.assertEqual(s, {"ConditionResult": "yes", "Result": "success", "ExecMainStatus": "0"},
                         self.journal("parallax.service"))
        status = b.run("parallax", "status").stdout
        self.assertIn("consent: given", status)
        last = re.findall(r"^  \S+  exit (\d+)  (\d+)/(\d+) measured", status, re.M)
        self.assertEqual(last[-1], ("0", "2", "2"), status)

    def doc_command(self, doc, needle):
        """The shell command of doc's code block line containing needle,
        continuation lines joined, without its sudo."""
        with open(os.path.join(pxtest.SOURCE, "docs", doc)) as f:
            text = f.read().replace("\\\n", " ")
        lines = [line.strip() for line in text.splitlines() if needle in line]
        self.assertTrue(lines, f"{doc} has no command with {needle!r}")
        cmd = lines[0].split()
        self.assertEqual(cmd[0], "sudo", lines[0])
        return cmd[1:]

    def test_4b_key_rotation_as_volunteer_md_says(self):
        b = self.box
        if b.run("test", "-e", "/var/lib/parallax/consent", check=False).returncode != 0:
            self.skipTest("needs the round of test_3")
        key = re.compile(r"^key id: (\S+)$", re.M)
        old = key.search(b.run("parallax", "status").stdout).group(1)
        # The service's own user runs it (DynamicUser=, User=parallax):
        # the next round can still use what it wrote.
        b.run(*self.doc_command("volunteer.md", "parallax keygen --rotate"), timeout=120)
        status = b.run("parallax", "status").stdout
        self.assertNotEqual(key.search(status).group(1), old, status)
        self.assertIn("key rotation: waiting to be sent", status)
        b.run("systemctl", "start", "parallax.service", timeout=120)
        s = b.show("parallax.service", "Result", "ExecMainStatus")
        self.assertEqual(s, {"Result": "success", "ExecMainStatus": "0"},
                         self.journal("parallax.service"))
        status = b.run("parallax", "status").stdout
        self.assertNotIn("key rotation: waiting", status)
        # (Only the consent marker, readable by all, is root's: test_4's
        # `parallax setup --yes` wrote it, as designed.)
        out = b.run("find", "/var/lib/private/parallax", "!", "-uid",
                    b.run("stat", "-c", "%u", "/var/lib/private/parallax").stdout.strip(),
                    "!", "-name", "consent").stdout
        self.assertEqual(out, "", "files the service's user does not own")

    def test_5_security_of_the_running_units(self):
        for unit, limit in (("parallax.service", 2.0), ("parallax-collector.service", 2.0)):
            p = self.box.run("systemd-analyze", "security", "--no-pager", unit)
            m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            self.assertLessEqual(float(m.group(1)), limit, p.stdout)

    def test_6_journal_clean(self):
        """Nothing the units forbid was tried (a refused call is logged by
        the program as an error) and no sanitizer report."""
        text = self.box.run("journalctl", "--no-pager", "-o", "cat", "-u", "parallax.service",
                            "-u", "parallax-collector.service").stdout
        for bad in ("Sanitizer", "runtime error:", "Operation not permitted", "Permission denied"):
            self.assertNotIn(bad, text)


if __name__ == "__main__":
    why = unavailable()
    if why is not None:
        print(f"SKIPPED: {why}", file=sys.stderr)
        sys.exit(77)
    pxtest.main()
