"""The real programs inside (an approximation of) the sandbox their units
describe (tests/cli/sandbox_exec.py: the units' own syscall filter and
address families as seccomp, W^X, a read-only / with only the state
directory writable, /proc showing only their own processes, an
unprivileged uid): the collector comes up and says READY=1 over the
notification socket, a whole `parallax run` round (check-in, measuring,
the forked signer, spool, upload) succeeds, and the collector stops
cleanly. verify and security only read the unit files; this shows the
programs can live with what the units forbid. Root only (mount
namespace); skipped otherwise."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import collectorlib as cl
import pxtest
import sandbox_exec

BUILD = os.path.dirname(os.path.abspath(pxtest.BIN))
UNITS = os.path.join(BUILD, "dist", "systemd")
# Inside systemd's range for dynamic users (61184-65519), like DynamicUser=.
AGENT_UID, COLLECTOR_UID = 61301, 61302


def unavailable():
    return sandbox_exec.unavailable(os.path.join(UNITS, "parallax.service"))


class Sandbox(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-systemd-sandbox-")
        os.chmod(cls.tmp, 0o755)  # the sandboxed uids walk through it
        # The service's user runs what is installed, where anyone may read
        # it, never the build tree (a checkout may sit in a 0700 home or
        # temporary directory): copies, like `cmake --install` makes.
        bindir = os.path.join(cls.tmp, "bin")
        os.mkdir(bindir, 0o755)
        cls.agent_bin = shutil.copy2(pxtest.BIN, bindir)
        cls.collector_bin = shutil.copy2(cl.COLLECTOR_BIN, bindir)
        cls.ca = shutil.copy2(pxtest.CA, bindir)
        for f in (cls.agent_bin, cls.collector_bin, cls.ca):
            os.chmod(f, 0o755 if f != cls.ca else 0o644)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def env(**extra):
        """The environment of a sandboxed program (no leak check under
        ASan: sandbox_exec.environ says why)."""
        return sandbox_exec.environ(dict(os.environ, **extra), pxtest.SANITIZED)

    def world_args(self):
        args = pxtest.world_args()
        args[args.index(pxtest.CA)] = self.ca
        return args

    def sandboxed(self, unit, uid, state, argv):
        return sandbox_exec.argv(os.path.join(UNITS, unit), uid, state, argv)

    def test_collector_and_agent_round_in_their_sandboxes(self):
        cstate = os.path.join(self.tmp, "collector")
        astate = os.path.join(self.tmp, "agent")
        os.mkdir(cstate, 0o700)
        os.mkdir(astate, 0o700)
        notify = os.path.join(self.tmp, "notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(ns.close)
        ns.bind(notify)
        os.chmod(notify, 0o777)  # like systemd's, writable by the service's user
        ns.settimeout(30 * cl.SLOW)

        port = cl.free_port()
        log = open(os.path.join(self.tmp, "collector.log"), "wb")
        self.addCleanup(log.close)
        collector = subprocess.Popen(
            self.sandboxed("parallax-collector.service", COLLECTOR_UID, cstate,
                           [self.collector_bin, "--listen", f"127.0.0.1:{port}",
                            "--db", f"sqlite:{cstate}/collector.sqlite", "--state-dir", cstate,
                            "--allow-nonpublic-addresses"]),
            env=self.env(NOTIFY_SOCKET=notify), stdin=subprocess.DEVNULL,
            stdout=log, stderr=log)

        def collector_log():
            with open(log.name, errors="replace") as f:
                return f.read()[-3000:]

        def reap():
            if collector.poll() is None:
                collector.kill()
            collector.wait()
        self.addCleanup(reap)
        try:
            ready = ns.recv(4096).decode()
        except socket.timeout:
            self.fail("no READY=1 from the sandboxed collector:\n" + collector_log())
        self.assertIn("READY=1", ready.split("\n"), collector_log())

        url = f"http://127.0.0.1:{port}"
        # As a volunteer would: setup (consent, config, key) first, where
        # the agent has it, then the round as the unit runs it.
        run = [self.agent_bin, "run", "--state-dir", astate]
        if pxtest.run(["setup", "--help"]).returncode == 0:
            conf = os.path.join(self.tmp, "parallax.conf")
            p = pxtest.run(["setup", "--yes", "--config", conf, "--state-dir", astate,
                            "--collector", url], stdin="")
            self.assertEqual(p.returncode, 0, f"parallax setup --yes:\n{p.stdout}{p.stderr}")
            # No chmod: the service's user must be able to read the config
            # setup wrote, as it must in /etc/parallax.
            run += ["--config", conf]
        else:
            run += ["--collector", url]
        p = subprocess.run(
            self.sandboxed("parallax.service", AGENT_UID, astate,
                           run + self.world_args() + ["www.example.test", "www.icloud.com"]),
            env=self.env(), capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, f"sandboxed parallax run failed:\n{p.stderr}\n"
                         + collector_log())

        st, _, body = cl.get(f"{url}/api/v1/measurements")
        self.assertEqual(st, 200, body)
        self.assertEqual(sorted(r["input"] for r in json.loads(body)["results"]),
                         ["www.example.test", "www.icloud.com"])

        collector.send_signal(signal.SIGTERM)
        self.assertEqual(ns.recv(4096).decode().split("\n")[0], "STOPPING=1")
        self.assertEqual(collector.wait(timeout=60 * cl.SLOW), 0, collector_log())
        # What it wrote belongs to the service's user, private (UMask=0077).
        st = os.stat(os.path.join(cstate, "collector.sqlite"))
        self.assertEqual((st.st_uid, st.st_mode & 0o077), (COLLECTOR_UID, 0))


if __name__ == "__main__":
    why = unavailable()
    if why is not None:
        print(f"SKIPPED: {why}", file=sys.stderr)
        sys.exit(77)
    pxtest.main()
