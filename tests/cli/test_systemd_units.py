"""The systemd units of dist/systemd as `cmake --install` puts them: in
PREFIX/lib/systemd/system, every placeholder filled, ExecStart naming the
installed binaries with flags they accept. `systemd-analyze verify` finds
nothing to say about them, and `systemd-analyze security --offline=yes`
rates both services 2.0 or better (the issue's bar for parallax.service).

verify insists that ExecStart binaries exist, and nothing is installed in
the real PREFIX here: the copies it checks name the build tree's binaries
instead, the only change made to them."""
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

import pxtest

BUILD = os.path.dirname(os.path.abspath(pxtest.BIN))
COLLECTOR_BIN = os.environ.get("PX_COLLECTOR_BIN", os.path.join(BUILD, "parallax-collector"))
UNITS = ("parallax.service", "parallax.timer", "parallax-collector.service")
EXPOSURE_MAX = 2.0
SLOW = 4 if pxtest.SANITIZED else 1


def analyze_available():
    """systemd-analyze with --offline= (systemd 250 and later)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return "systemd-analyze is not installed"
    p = subprocess.run([exe, "--version"], capture_output=True, text=True)
    m = re.match(r"systemd (\d+)", p.stdout)
    if p.returncode != 0 or m is None or int(m.group(1)) < 250:
        return f"systemd-analyze too old for --offline (need 250): {p.stdout[:40]!r}"
    return None


def parse_unit(text):
    """{section: [(key, value)]} of a unit file (no line continuations are
    used in ours; a backslash at a line end fails the test)."""
    out, section = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        assert not s.endswith("\\"), f"continuation line: {line}"
        if s.startswith("["):
            section = s.strip("[]")
            out.setdefault(section, [])
            continue
        k, _, v = s.partition("=")
        out[section].append((k.strip(), v.strip()))
    return out


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit, section, key):
    v = values(unit, section, key)
    assert len(v) == 1, f"[{section}] {key}= set {len(v)} times: {v}"
    return v[0]


def expand(argv, env):
    """ExecStart words as systemd expands them: ${VAR} inside a word, a
    bare $VAR word split at whitespace into zero or more words."""
    out = []
    for w in argv:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            out.extend(env.get(m.group(1), "").split())
        else:
            out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda x: env[x.group(1)], w))
    return out


def exposure(text, unit):
    m = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(unit), text)
    assert m, f"no overall exposure for {unit} in:\n{text[-1500:]}"
    return float(m.group(1))


class Units(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-systemd-")
        dest = os.path.join(cls.tmp, "dest")
        p = subprocess.run(["cmake", "--install", BUILD, "--component", "systemd"],
                           env=dict(os.environ, DESTDIR=dest), capture_output=True, text=True)
        assert p.returncode == 0, f"cmake --install: {p.stdout}{p.stderr}"
        found = glob.glob(os.path.join(dest, "**", "lib", "systemd", "system", "parallax.service"),
                          recursive=True)
        assert len(found) == 1, found
        cls.unitdir = os.path.dirname(found[0])
        # PREFIX is what lies between DESTDIR and lib/systemd/system.
        cls.prefix = cls.unitdir[len(dest):-len("/lib/systemd/system")] or "/"
        cls.text = {}
        for u in UNITS:
            with open(os.path.join(cls.unitdir, u)) as f:
                cls.text[u] = f.read()
        cls.unit = {u: parse_unit(t) for u, t in cls.text.items()}

        # The copies verify and security read: the build tree's binaries.
        cls.check_dir = os.path.join(cls.tmp, "check")
        os.mkdir(cls.check_dir)
        bindir = os.path.join(cls.prefix, "bin").replace("//", "/")
        for u in UNITS:
            text = cls.text[u].replace(f"ExecStart={bindir}/", f"ExecStart={BUILD}/")
            with open(os.path.join(cls.check_dir, u), "w") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def analyze(self, *args):
        return subprocess.run(["systemd-analyze"] + list(args), capture_output=True, text=True,
                              cwd=self.check_dir, timeout=120)

    # ---- install and placeholders -------------------------------------------

    def test_installed_and_filled_in(self):
        self.assertEqual(sorted(os.listdir(self.unitdir)), sorted(UNITS))
        for u, text in self.text.items():
            self.assertIsNone(re.search(r"@[A-Za-z_]+@", text), f"{u}: a placeholder left")
        for u in ("parallax.service", "parallax-collector.service"):
            exe = shlex.split(one(self.unit[u], "Service", "ExecStart"))[0]
            self.assertTrue(os.path.isabs(exe), exe)
            self.assertEqual(os.path.dirname(exe), os.path.join(self.prefix, "bin").replace("//", "/"))

    # ---- systemd-analyze ----------------------------------------------------

    def test_verify_is_silent(self):
        # --man=no: the man pages are installed with the rest, not here.
        p = self.analyze("verify", "--man=no", *[f"./{u}" for u in UNITS])
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_security_exposure(self):
        scores = {}
        for u in ("parallax.service", "parallax-collector.service"):
            p = self.analyze("security", "--offline=yes", f"--threshold={int(EXPOSURE_MAX * 10)}",
                             "--no-pager", f"./{u}")
            scores[u] = exposure(p.stdout + p.stderr, u)
            self.assertLessEqual(scores[u], EXPOSURE_MAX, p.stdout)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        print("\nsystemd-analyze security --offline=yes: " +
              ", ".join(f"{u} {s:.1f}" for u, s in scores.items()), file=sys.stderr)

    # ---- what each unit promises ----------------------------------------------

    def test_agent_service(self):
        u = self.unit["parallax.service"]
        self.assertEqual(one(u, "Unit", "ConditionPathExists"), "/var/lib/parallax/consent")
        expect = {"Type": "oneshot", "DynamicUser": "yes", "StateDirectory": "parallax",
                  "CapabilityBoundingSet": "", "AmbientCapabilities": "",
                  "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
                  "ProtectSystem": "strict", "UMask": "0077"}
        for k, v in expect.items():
            self.assertEqual(one(u, "Service", k), v, k)
        self.assertIn("@system-service", values(u, "Service", "SystemCallFilter"))
        for k in ("MemoryMax", "CPUQuota", "TimeoutStartSec"):
            one(u, "Service", k)
        # It measures arbitrary addresses: nothing may wall the network off.
        for k in ("IPAddressDeny", "IPAddressAllow", "PrivateNetwork"):
            self.assertEqual(values(u, "Service", k), [], k)

    def test_timer(self):
        t = self.unit["parallax.timer"]
        self.assertEqual(one(t, "Timer", "OnCalendar"), "hourly")
        self.assertEqual(one(t, "Timer", "FixedRandomDelay"), "yes")
        self.assertEqual(one(t, "Timer", "Persistent"), "true")
        self.assertRegex(one(t, "Timer", "RandomizedDelaySec"), r"^\d+(s|min|h)?$")
        self.assertEqual(one(t, "Install", "WantedBy"), "timers.target")
        p = self.analyze("calendar", one(t, "Timer", "OnCalendar"))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_collector_service(self):
        u = self.unit["parallax-collector.service"]
        expect = {"Type": "notify", "DynamicUser": "yes", "StateDirectory": "parallax-collector",
                  "Restart": "on-failure", "CapabilityBoundingSet": ""}
        for k, v in expect.items():
            self.assertEqual(one(u, "Service", k), v, k)
        self.assertIn("AF_UNIX", one(u, "Service", "RestrictAddressFamilies").split(),
                      "sd_notify needs AF_UNIX")
        stop = one(u, "Service", "TimeoutStopSec")
        secs = int(re.fullmatch(r"(\d+)s?", stop).group(1))
        self.assertGreater(secs, 30, "a stop waits up to 30 s for requests in flight")
        env_files = values(u, "Service", "EnvironmentFile")
        self.assertEqual(len(env_files), 1)
        self.assertTrue(env_files[0].startswith("-"), "the env file is optional")

    # ---- the command lines run ------------------------------------------------

    def test_agent_execstart_flags_accepted(self):
        """The agent's ExecStart, config and state directory swapped for
        temporary ones, with --help appended: the flags before it parse."""
        argv_unit = shlex.split(one(self.unit["parallax.service"], "Service", "ExecStart"))
        argv = list(argv_unit)
        state = os.path.join(self.tmp, "agent-state")
        conf = os.path.join(self.tmp, "parallax.conf")
        with open(conf, "w") as f:
            f.write("# empty: every default\n")
        argv = expand(argv, {"STATE_DIRECTORY": state})
        argv[argv.index("--config") + 1] = conf
        argv[0] = pxtest.BIN
        p = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Usage: parallax run", p.stdout)
        # The unit reads the config where `parallax setup` writes it.
        m = re.search(r"\(default (/\S+/parallax\.conf)", p.stdout)
        if m:
            unit_conf = argv_unit[argv_unit.index("--config") + 1]
            self.assertEqual(unit_conf, m.group(1))

    def test_collector_execstart_runs(self):
        """The collector's ExecStart as systemd would run it, with the
        defaults of Environment= and an env file's extra flags: it comes up
        (READY=1 on the notification socket), serves, stops on SIGTERM."""
        u = self.unit["parallax-collector.service"]
        env = {}
        for v in values(u, "Service", "Environment"):
            k, _, val = v.partition("=")
            env[k] = val
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        state = os.path.join(self.tmp, "collector-state")
        os.mkdir(state, 0o700)
        env.update(STATE_DIRECTORY=state, PX_COLLECTOR_LISTEN=f"127.0.0.1:{port}",
                   PX_COLLECTOR_ARGS="--timeout 10  --max-connections 64")
        argv = expand(shlex.split(one(u, "Service", "ExecStart")), env)
        argv[0] = COLLECTOR_BIN
        self.assertIn("--timeout", argv)
        notify = os.path.join(self.tmp, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
            ns.bind(notify)
            ns.settimeout(20 * SLOW)
            proc = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=notify, **env),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            try:
                msg = ns.recv(4096).decode()
                self.assertIn("READY=1", msg.split("\n"))
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    self.assertIn(b" 200 ", c.recv(4096))
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30 * SLOW), 0, proc.stdout.read())
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
        self.assertTrue(os.path.exists(os.path.join(state, "collector.sqlite")))


if __name__ == "__main__":
    why = analyze_available()
    if why is not None:
        print(f"SKIPPED: {why}", file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
