"""Issue 5, done when: install into a DESTDIR, verify the installed units,
then run `parallax setup --yes` and a `parallax run` from the installed
files against the test world, with the collector (also the installed one)
geolocating the volunteer from an MMDB instead of being told the country.

Everything runs from DESTDIR; nothing is installed on the host."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("PX_SOURCE_DIR", os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "cli"))
import pxtest  # noqa: E402
import worldlib  # noqa: E402
from worldlib import URL, W, WORLD  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(pxtest.BIN))
PREFIX = "/usr/local"
CC = "DE"  # tests/tools/make-mmdb.pl puts the vantages' 198.51.100.0/24 in DE, AS3320


def in_ns(ns, *cmd, timeout=180, check=True):
    return worldlib.in_ns(ns, *cmd, timeout=timeout, check=check)


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            print("SKIPPED: the test world needs root (network namespaces)", file=sys.stderr)
            sys.exit(77)
        cls.dir = tempfile.mkdtemp(prefix="px-install-")
        cls.root = os.path.join(cls.dir, "root")
        p = subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=cls.root),
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + p.stdout + p.stderr)
        cls.install_log = p.stdout
        cls.bin = os.path.join(cls.root, PREFIX.lstrip("/"), "bin")
        cls.config = os.path.join(cls.root, "etc", "parallax", "parallax.conf")
        cls.state = os.path.join(cls.dir, "state")
        cls.collector = None
        up = subprocess.run([WORLD, "up", os.path.join(cls.dir, "world")], capture_output=True,
                            text=True, timeout=120)
        if up.returncode == 77:
            print("SKIPPED: " + up.stderr.strip(), file=sys.stderr)
            sys.exit(77)
        if up.returncode != 0:
            raise AssertionError("world.sh up failed:\n" + up.stdout + up.stderr)
        cls.ca = os.path.join(cls.dir, "world", "pki", "ca.pem")
        mmdb = os.path.join(cls.dir, "mmdb")
        os.makedirs(mmdb)
        subprocess.run(["perl", os.path.join(SOURCE, "tests", "tools", "make-mmdb.pl"), mmdb],
                       check=True, capture_output=True, timeout=120)
        targets = os.path.join(cls.dir, "targets.txt")
        with open(targets, "w") as f:
            f.write(f'{W["DOMAIN_ICLOUD"]}\n{W["DOMAIN_APPLEID"]}\n')
        cls.collector_log = open(os.path.join(cls.dir, "collector.log"), "w")
        cls.collector = subprocess.Popen(
            [WORLD, "exec", "core", "--", os.path.join(cls.bin, "parallax-collector"),
             "--listen", f'{W["COLLECTOR_ADDR"]}:{W["COLLECTOR_PORT"]}',
             "--db", f"sqlite:{cls.dir}/collector.sqlite", "--ca-file", cls.ca,
             "--targets", targets, "--allow-nonpublic-addresses",
             "--geoip-db", os.path.join(mmdb, "country.mmdb"),
             "--geoip-db", os.path.join(mmdb, "networks.mmdb")],
            stdout=cls.collector_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while in_ns("core", "curl", "-fsS", f"{URL}/healthz", check=False).returncode != 0:
            if time.monotonic() > deadline or cls.collector.poll() is not None:
                raise AssertionError("the installed collector did not start")
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "collector", None) is not None:
            cls.collector.terminate()
            try:
                cls.collector.wait(timeout=20)
            except subprocess.TimeoutExpired:
                cls.collector.kill()
        if getattr(cls, "dir", None):
            subprocess.run([WORLD, "down", os.path.join(cls.dir, "world")], capture_output=True,
                           timeout=120)
            shutil.rmtree(cls.dir, ignore_errors=True)

    def installed(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def test_1_files_in_their_fhs_places(self):
        for path in ["bin/parallax", "bin/parallax-collector",
                     "share/man/man1/parallax.1", "share/man/man5/parallax.conf.5",
                     "share/man/man8/parallax-collector.8",
                     "lib/systemd/system/parallax.service", "lib/systemd/system/parallax.timer",
                     "lib/systemd/system/parallax-collector.service",
                     "share/parallax/schemas/measurement.schema.json",
                     "share/doc/parallax/LICENSE", "share/doc/parallax/docs/volunteer.md",
                     "share/doc/parallax/parallax.conf.example"]:
            self.assertTrue(os.path.exists(self.installed(f"{PREFIX}/{path}")), path)
        self.assertTrue(os.access(self.installed(f"{PREFIX}/bin/parallax"), os.X_OK))
        # Every document the installed README links is installed beside it.
        doc = self.installed(f"{PREFIX}/share/doc/parallax")
        with open(os.path.join(doc, "README.md")) as f:
            linked = set(re.findall(r"\bdocs/[a-z_-]+\.md", f.read()))
        self.assertTrue(linked)
        for d in sorted(linked):
            self.assertTrue(os.path.exists(os.path.join(doc, d)), f"README links {d}")
        with open(self.config) as f:
            self.assertIn("parallax setup", f.read())
        with open(self.installed(f"{PREFIX}/lib/systemd/system/parallax.service")) as f:
            unit = f.read()
        self.assertIn(f"ExecStart={PREFIX}/bin/parallax run --config /etc/parallax/parallax.conf",
                      unit)
        self.assertIn("ConditionPathExists=/var/lib/parallax/consent", unit)

    def test_2_installed_units_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        # verify insists that ExecStart binaries exist and that the
        # Documentation= man pages open: point both at DESTDIR, the only
        # change made to the installed units.
        units = os.path.join(self.dir, "units")
        os.makedirs(units, exist_ok=True)
        paths = []
        for u in ("parallax.service", "parallax.timer", "parallax-collector.service"):
            with open(self.installed(f"{PREFIX}/lib/systemd/system/{u}")) as f:
                text = f.read()
            paths.append(os.path.join(units, u))
            with open(paths[-1], "w") as f:
                f.write(text.replace(f"{PREFIX}/bin/", self.installed(f"{PREFIX}/bin/")))
        env = dict(os.environ, MANPATH=self.installed(f"{PREFIX}/share/man"))
        p = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True,
                           timeout=120, env=env)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))

    def test_3_setup_and_run_from_the_installed_files(self):
        parallax = os.path.join(self.bin, "parallax")
        # A reinstall keeps an edited config; this one is still the template,
        # which setup may fill in without --force.
        p = in_ns(CC, parallax, "setup", "--yes", "--config", self.config, "--state-dir",
                  self.state, "--collector", URL, "--resolver", W["RESOLVER_" + CC],
                  "--no-system-resolver", "--ca-file", self.ca, "--allow-nonpublic-addresses",
                  "--timeout", "3000")
        self.assertIn("(written)", p.stdout)
        with open(self.config) as f:
            self.assertIn(f"collector = {URL}", f.read())
        p = in_ns(CC, parallax, "run", "--config", self.config)
        self.assertIn("uploaded 2", p.stderr)
        listing = json.loads(in_ns("core", "curl", "-fsS", f"{URL}/api/v1/measurements").stdout)
        self.assertEqual(sorted(r["input"] for r in listing["results"]),
                         sorted([W["DOMAIN_ICLOUD"], W["DOMAIN_APPLEID"]]))
        # Nobody told the agent where it is: the collector's MMDB did.
        self.assertEqual({(r["probe_cc"], r["probe_asn"]) for r in listing["results"]},
                         {(CC, W["ASN_" + CC])})
        status = in_ns(CC, parallax, "status", "--state-dir", self.state).stdout
        self.assertIn("consent: given", status)
        self.assertIn("2/2 measured", status)
        # A second install keeps the volunteer's config.
        with open(self.config) as f:
            written = f.read()
        subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=self.root),
                       check=True, capture_output=True, timeout=120)
        with open(self.config) as f:
            self.assertEqual(f.read(), written)


if __name__ == "__main__":
    unittest.main(verbosity=2)
