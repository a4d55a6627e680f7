"""What a volunteer's machine does unattended, with real processes: `parallax
setup` (consent, config, key), `parallax run` refusing without consent,
one run at a time, the run budget (targets, time, bytes), collector
fallbacks, measurements held while our public address is unknown and
released later, run records in `parallax status`, journald priority
prefixes, and `parallax keygen --rotate` reaching the collector's
allowed_signers."""
import fcntl
import glob
import json
import os
import shutil
import subprocess
import tempfile

import collectorlib as cl
import pxtest


def read(path):
    with open(path) as f:
        return f.read()


class Volunteer(pxtest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="px-volunteer-")
        self.state = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "etc", "parallax.conf")
        self.collectors = []

    def tearDown(self):
        for c in self.collectors:
            c.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def collector(self, *extra):
        c = cl.Collector(self.dir if not self.collectors else tempfile.mkdtemp(dir=self.dir),
                         extra=list(extra) + ["--allow-nonpublic-addresses"])
        self.collectors.append(c)
        return c.start()

    def px(self, *args, ok=(0,), env=None):
        p = pxtest.run(list(args), env=env, timeout=180)
        if p.returncode not in ok:
            raise AssertionError(f"parallax {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def setup(self, *settings, ok=(0,)):
        return self.px("setup", "--yes", "--config", self.config, "--state-dir", self.state,
                       *settings, ok=ok)

    def run_round(self, *extra, ok=(0,), env=None):
        return self.px("run", "--config", self.config, "--state-dir", self.state, *extra, ok=ok,
                       env=env)

    def world(self, timeout_ms=2000):
        """Settings that measure the loopback test world."""
        return ["--resolver", pxtest.DNS, "--no-system-resolver", "--port", pxtest.TLS_PORT,
                "--ca-file", pxtest.CA, "--allow-nonpublic-addresses", "--timeout",
                str(timeout_ms)]

    def targets_file(self, *targets):
        path = os.path.join(self.dir, "targets.txt")
        with open(path, "w") as f:
            f.write("# test targets\n" + "".join(t + "\n" for t in targets))
        return path

    def records(self):
        path = os.path.join(self.state, "runs.jsonl")
        recs = [json.loads(l) for l in read(path).splitlines()] if os.path.exists(path) else []
        for r in recs:
            cl.check(pxtest.RUN_RECORD, r, "run record")
        return recs

    def spooled_inputs(self, sub="pending"):
        entries = cl.spool_entries(os.path.join(self.state, "spool", sub))
        return [json.loads(content)["input"] for content, _ in entries.values()]

    # ---- setup and consent ----------------------------------------------

    def test_setup_writes_config_key_and_consent(self):
        c = self.collector()
        p = self.setup("--collector", c.url, "--collector", "http://127.0.0.1:9",
                       "--max-targets", "5", "--no-upload", *self.world())
        self.assertIn("CC BY 4.0", p.stdout)
        self.assertIn("key id:", p.stdout)
        text = read(self.config)
        self.assertIn(f"collector = {c.url} http://127.0.0.1:9\n", text)
        self.assertIn("max_targets = 5\n", text)
        self.assertIn("no_upload = yes\n", text)
        self.assertIn("system_resolver", text.replace("no_system_resolver", "system_resolver"))
        self.assertEqual(os.stat(self.config).st_mode & 0o777, 0o644)
        marker = json.loads(read(os.path.join(self.state, "consent")))
        self.assertEqual(marker["data_licence"], "CC-BY-4.0")
        self.assertEqual(marker["consent_version"], 1)
        self.assertEqual(marker["how"], "--yes")
        key_id = cl.key_id_of_pub(read(os.path.join(self.state, "parallax_ed25519.pub")))
        self.assertEqual(marker["key_id"], key_id)
        self.assertEqual(os.stat(os.path.join(self.state, "parallax_ed25519")).st_mode & 0o777, 0o600)

        # Again without settings: the volunteer's file is kept as it is.
        os.unlink(os.path.join(self.state, "consent"))
        p = self.setup()
        self.assertIn("(kept)", p.stdout)
        self.assertEqual(read(self.config), text)
        self.assertTrue(os.path.exists(os.path.join(self.state, "consent")))
        # With settings it is not silently replaced...
        p = self.setup("--collector", c.url, ok=(2,))
        self.assertIn("--force", p.stderr)
        self.assertEqual(read(self.config), text)
        # ...unless asked to.
        self.setup("--force", "--collector", c.url)
        self.assertNotIn("max_targets", read(self.config))

    def test_setup_needs_consent_and_a_collector(self):
        p = self.px("setup", "--config", self.config, "--state-dir", self.state,
                    "--collector", "http://127.0.0.1:9", ok=(2,))
        self.assertIn("--yes", p.stderr)
        p = self.setup(ok=(2,))
        self.assertIn("--collector", p.stderr)
        # Through a proxy the collector cannot tell where the volunteer is.
        p = self.setup("--collector", "http://127.0.0.1:9", "--proxy", "socks5h://127.0.0.1:9050",
                       ok=(2,))
        self.assertIn("--probe-cc", p.stderr)
        self.setup("--collector", "http://127.0.0.1:9", "--proxy", "socks5h://127.0.0.1:9050",
                   "--probe-cc", "DE", "--probe-asn", "AS3320", "--public-address", "unknown")
        self.assertIn("public_address = unknown", read(self.config))
        p = self.setup("--collector", "ftp://x", ok=(2,))
        self.assertIn("--collector", p.stderr)
        p = self.px("setup", "--withdraw", "--state-dir", self.state)
        self.assertIn("withdrawn", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.state, "consent")))

    def test_run_refuses_without_consent(self):
        c = self.collector()
        p = self.px("run", "--state-dir", self.state, "--collector", c.url, *self.world(),
                    "icloud.com", ok=(2,))
        self.assertIn("parallax setup", p.stderr)
        self.assertEqual(self.spooled_inputs(), [])
        self.assertEqual(cl.get(c.api("/api/v1/measurements"))[2].count(b"measurement_uid"), 0)

    def test_bad_config_names_file_and_line(self):
        os.makedirs(os.path.dirname(self.config))
        with open(self.config, "w") as f:
            f.write("[parallax]\ncollector = http://127.0.0.1:9\nmax_bytes = lots\n")
        p = self.px("run", "--config", self.config, "--state-dir", self.state, ok=(2,))
        self.assertIn(f"{self.config}:3: --max-bytes", p.stderr)

    # ---- runs -------------------------------------------------------------

    def test_run_uploads_records_and_reports(self):
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        p = self.run_round("--targets-file", self.targets_file("www.icloud.com", "www.example.test"))
        self.assertIn("uploaded 2", p.stderr)
        [rec] = self.records()
        self.assertEqual((rec["exit_code"], rec["targets"], rec["measured"], rec["held"]), (0, 2, 2, 0))
        self.assertEqual(rec["check_in"], "collector")
        self.assertIsNone(rec["stopped_by"])
        self.assertGreater(rec["bytes"], 1000)
        self.assertEqual(rec["collector"], c.url)
        listing = json.loads(cl.get(c.api("/api/v1/measurements"))[2])
        self.assertEqual(sorted(r["input"] for r in listing["results"]),
                         ["www.example.test", "www.icloud.com"])
        status = pxtest.run(["status", "--state-dir", self.state]).stdout
        self.assertIn("consent: given", status)
        self.assertIn("runs: 1 recorded", status)
        self.assertIn("2/2 measured", status)
        self.assertIn("next run:", status)

    def test_one_run_at_a_time(self):
        self.setup("--collector", "http://127.0.0.1:9", *self.world())
        os.makedirs(self.state, exist_ok=True)
        with open(os.path.join(self.state, "run.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lock.write("4242\n")
            lock.flush()
            p = self.run_round("icloud.com")
        self.assertIn("another run (pid 4242) is in progress", p.stderr)
        self.assertEqual(self.records(), [])

    def test_max_targets_moves_along_the_list(self):
        self.setup("--collector", "http://127.0.0.1:9", "--no-upload", "--public-address",
                   "unknown", "--max-targets", "2", *self.world())
        targets = self.targets_file("a.example.test", "b.example.test", "c.example.test")
        self.run_round("--targets-file", targets)
        self.assertEqual(sorted(self.spooled_inputs()), ["a.example.test", "b.example.test"])
        self.run_round("--targets-file", targets)
        self.assertEqual(sorted(self.spooled_inputs()),
                         ["a.example.test", "a.example.test", "b.example.test", "c.example.test"])
        self.assertEqual([r["not_started"] for r in self.records()], [1, 1])

    def test_max_runtime_and_max_bytes_stop_cleanly(self):
        self.setup("--collector", "http://127.0.0.1:9", "--no-upload", "--public-address",
                   "unknown", "--parallel", "1", *self.world(timeout_ms=3000))
        # stall.example.test accepts the connection and never answers: its
        # handshake is in flight (3 s) when the budget of 1 s runs out; it
        # finishes with its timeout, nothing else starts.
        targets = self.targets_file("stall.example.test", "www.example.test", "www.icloud.com")
        p = self.run_round("--max-runtime", "1s", "--targets-file", targets)
        rec = self.records()[-1]
        self.assertEqual((rec["measured"], rec["not_started"], rec["stopped_by"]),
                         (1, 2, "max_runtime"), p.stderr)
        self.assertIn("max_runtime", p.stderr)
        self.assertEqual(len(self.spooled_inputs()), 1)
        # One byte: spent by the first DNS exchange.
        p = self.run_round("--max-bytes", "1", "--targets-file", targets)
        rec = self.records()[-1]
        self.assertEqual((rec["measured"], rec["not_started"], rec["stopped_by"]),
                         (1, 2, "max_bytes"), p.stderr)
        self.assertEqual(rec["exit_code"], 0)

    def test_a_flag_replaces_the_configs_list(self):
        """run --help, parallax(1) and parallax.conf(5) say a flag wins;
        for a list key that means the file's list is replaced, not added
        to."""
        a, b = self.collector(), self.collector()
        dead_dns = "127.0.0.1:9"  # the config's resolver: nothing answers there
        self.setup("--collector", a.url, "--resolver", dead_dns, "--no-system-resolver",
                   *[x for x in self.world() if x not in ("--resolver", pxtest.DNS,
                                                         "--no-system-resolver")])
        self.assertIn(f"collector = {a.url}\n", read(self.config))
        p = self.run_round("--collector", b.url, "--resolver", pxtest.DNS, "www.example.test")
        self.assertNotIn(a.url, p.stderr)
        self.assertEqual(self.records()[-1]["collector"], b.url)
        self.assertEqual(cl.get(a.api("/api/v1/measurements"))[2].count(b"measurement_uid"), 0)
        listing = json.loads(cl.get(b.api("/api/v1/measurements"))[2])
        [row] = listing["results"]
        m = json.loads(cl.get(b.api("/api/v1/raw_measurement",
                                    measurement_uid=row["measurement_uid"]))[2])
        used = {q["resolver_address"] for q in m["test_keys"]["queries"]}
        self.assertEqual(used, {pxtest.DNS}, used)

    def test_a_failed_run_is_recorded_and_shown_first(self):
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        self.run_round("www.example.test")
        with open(self.config, "a") as f:
            f.write("probe_cc = Germany   # not a code\n")
        p = self.run_round("www.example.test", ok=(2,))
        self.assertIn("'Germany' is not a two-letter country code", p.stderr)
        rec = self.records()[-1]
        self.assertEqual(rec["exit_code"], 2)
        self.assertIn("Germany", rec["error"])
        st = pxtest.run(["status", "--state-dir", self.state]).stdout
        first = st.splitlines()[1]
        self.assertTrue(first.startswith("last run FAILED at "), st)
        self.assertIn("Germany", first)
        # Fixed: the next good run is what status shows.
        with open(self.config) as f:
            text = f.read().replace("probe_cc = Germany   # not a code\n", "")
        with open(self.config, "w") as f:
            f.write(text)
        self.run_round("www.example.test")
        self.assertEqual(self.records()[-1]["exit_code"], 0)
        self.assertNotIn("FAILED", pxtest.run(["status", "--state-dir", self.state]).stdout)

    def test_status_only_reads_and_takes_the_config(self):
        missing = os.path.join(self.dir, "no-such-state")
        p = pxtest.run(["status", "--state-dir", missing])
        self.assertEqual(p.returncode, 1)
        self.assertIn("--state-dir", p.stderr)
        self.assertFalse(os.path.exists(missing), "status created the state directory")
        p = pxtest.run(["status", "--state-dir", self.state, "--collector", "http://127.0.0.1:9"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--collector does not apply", p.stderr)
        help_text = pxtest.run(["status", "--help"]).stdout
        for ignored in ("--collector", "--max-targets", "--proxy", "--no-upload"):
            self.assertNotIn(ignored, help_text)
        self.assertNotIn("--max-targets", pxtest.run(["upload", "--help"]).stdout)
        # upload and status read the config: no --collector needed.
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        self.px("measure", "--state-dir", self.state, "--collector", c.url, "--no-upload",
                *self.world(), "www.example.test")
        self.assertEqual(cl.Agent(self.state).counts()["pending"], 1)
        p = pxtest.run(["upload", "--config", self.config, "--state-dir", self.state])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(c.db_count(), 1)
        p = pxtest.run(["status", "--config", self.config, "--state-dir", self.state])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("pending: 0", p.stdout)

    def test_transport_errors_say_what_to_check(self):
        c = self.collector()
        tls_to_plain = c.url.replace("http://", "https://")
        p = pxtest.run(["compare", "--collector", tls_to_plain, "--domain", "www.example.test"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("wrong version number", p.stderr)
        self.assertIn("try http:// instead of https://", p.stderr)
        p = pxtest.run(["compare", "--collector", f"http://127.0.0.1:{cl.free_port()}",
                        "--domain", "www.example.test"])
        self.assertIn("is the collector running at that address and port", p.stderr)

    def test_offline_round_is_named_and_not_uploaded(self):
        """No route to any resolver (a network namespace with only lo):
        the queries say network_unreachable, the run says the machine is
        offline, exits 1, uploads nothing and status shows why."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a network namespace")
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        script = ('ip link set lo up && exec "$@"')
        p = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", pxtest.BIN, "run",
                            "--config", self.config, "--state-dir", self.state,
                            "--resolver", "198.51.100.53", "--no-system-resolver",
                            "--public-address", "203.0.113.7", "www.example.test"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("no resolver reachable: is this machine online?", p.stderr)
        rec = self.records()[-1]
        self.assertTrue(rec["offline"])
        self.assertIn("no resolver reachable", rec["error"])
        self.assertEqual(c.db_count(), 0)
        # The round is kept in held/ with its reason, not left pending
        # for the next round to upload as if it were data.
        self.assertEqual(cl.Agent(self.state).entries(), {})
        [held] = glob.glob(os.path.join(self.state, "held", "*.json"))
        self.assertIn("offline", read(held[:-5] + ".reason"))
        self.assertEqual(rec["held"], 1)
        queries = json.loads(read(held))["test_keys"]["queries"]
        self.assertTrue(queries)
        self.assertEqual({q["failure"] for q in queries}, {"network_unreachable"})
        st = pxtest.run(["status", "--state-dir", self.state]).stdout
        self.assertIn("last run FAILED", st)
        self.assertIn("no resolver reachable", st)
        self.assertIn("kept local: 1", st)
        # Without --public-address the check-in fails too, so the round is
        # held for want of the address; offline, that reason changes, or
        # the next run that learns the address would release it.
        p = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", pxtest.BIN, "run",
                            "--config", self.config, "--state-dir", self.state,
                            "--resolver", "198.51.100.53", "--no-system-resolver",
                            "icloud.com"], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stderr)
        reasons = [read(h[:-5] + ".reason")
                   for h in glob.glob(os.path.join(self.state, "held", "*.json"))]
        self.assertEqual(len(reasons), 2, reasons)
        self.assertTrue(all(r.startswith("offline") for r in reasons), reasons)
        # Back online: a round measures and uploads its own, and the
        # offline ones stay where they are.
        p = self.run_round("www.example.test")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(c.db_count(), 1)
        self.assertEqual(len(glob.glob(os.path.join(self.state, "held", "*.json"))), 2)

    def test_fallback_collector_and_held_until_the_address_is_known(self):
        down = f"http://127.0.0.1:{cl.free_port()}"
        self.setup("--collector", down, *self.world())
        # The only collector is down: our public address is unknown, so
        # nothing may be signed and sent yet.
        p = self.run_round("icloud.com")
        self.assertIn("public address is unknown", p.stderr)
        self.assertEqual(self.records()[-1]["held"], 1)
        held = glob.glob(os.path.join(self.state, "held", "*.json"))
        self.assertEqual(len(held), 1)
        self.assertIn("public address unknown", read(held[0][:-5] + ".reason"))
        self.assertIn("kept local: 1", pxtest.run(["status", "--state-dir", self.state]).stdout)
        # A fallback that answers: check-in there, the held one is scrubbed,
        # signed and sent along with the new one.
        c = self.collector()
        p = self.run_round("--collector", c.url, "icloud.com")
        self.assertIn("released 1", p.stderr)
        self.assertEqual(glob.glob(os.path.join(self.state, "held", "*.json")), [])
        rec = self.records()[-1]
        self.assertEqual((rec["collector"], rec["held"]), (c.url, 0))
        listing = json.loads(cl.get(c.api("/api/v1/measurements"))[2])
        self.assertEqual(len(listing["results"]), 2)

    def test_journald_priority_prefixes(self):
        self.setup("--collector", f"http://127.0.0.1:{cl.free_port()}", *self.world())
        err_path = os.path.join(self.dir, "stderr")
        with open(err_path, "w") as err:
            st = os.fstat(err.fileno())
            env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
            subprocess.run([pxtest.BIN, "run", "--config", self.config, "--state-dir", self.state,
                            "icloud.com"], stdout=subprocess.DEVNULL, stderr=err, env=env,
                           timeout=120, check=True)
        lines = read(err_path).splitlines()
        self.assertTrue(any(l.startswith("<4>parallax run: check-in with") for l in lines), lines)
        self.assertTrue(all(l[0] == "<" and l[2] == ">" for l in lines), lines)
        # Not the journal (a terminal or a file): no prefixes.
        p = self.run_round("icloud.com", "--log-level", "error")
        self.assertNotIn("<4>", p.stderr)
        self.assertNotIn("check-in with", p.stderr)

    def test_root_leaves_the_services_state_alone(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to own files as another user")
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        # As after the service's first round: its dynamic user owns it all.
        for base, dirs, files in os.walk(self.state):
            for name in dirs + files:
                os.chown(os.path.join(base, name), 4242, 4242)
        os.chown(self.state, 4242, 4242)
        for cmd in (["upload", "--collector", c.url], ["keygen", "--rotate"],
                    ["run", "--config", self.config, "icloud.com"]):
            p = self.px(*cmd, "--state-dir", self.state, ok=(1, 2))
            self.assertIn("belongs to uid 4242", p.stderr, cmd)
        root_owned = [os.path.join(b, n) for b, d, f in os.walk(self.state) for n in d + f
                      if os.stat(os.path.join(b, n)).st_uid == 0]
        self.assertEqual(root_owned, [])
        # Reading is fine.
        self.assertIn("consent: given", self.px("status", "--state-dir", self.state).stdout)

    def test_measure_with_collector_scrubs_and_respects_no_upload(self):
        c = self.collector()
        os.makedirs(self.state)
        p = self.px("measure", "--state-dir", self.state, "--collector", c.url, "--no-upload",
                    *self.world(), "www.example.test")
        self.assertEqual(len(self.spooled_inputs()), 1, p.stderr)
        self.assertEqual(json.loads(cl.get(c.api("/api/v1/measurements"))[2])["results"], [])
        self.px("upload", "--state-dir", self.state, "--collector", c.url)
        self.assertEqual(len(json.loads(cl.get(c.api("/api/v1/measurements"))[2])["results"]), 1)

    # ---- a new identity ---------------------------------------------------

    def test_keygen_rotate_reaches_allowed_signers(self):
        c = self.collector()
        self.setup("--collector", c.url, *self.world())
        self.run_round("icloud.com")
        old_pub = read(os.path.join(self.state, "parallax_ed25519.pub")).strip()
        old_id = cl.key_id_of_pub(old_pub)
        # Without a collector on the command line the statement waits...
        p = self.px("keygen", "--rotate", "--state-dir", self.state)
        self.assertIn(f"old key id: {old_id}", p.stdout)
        self.assertTrue(os.path.exists(os.path.join(self.state, "key-rotation.json")))
        self.assertIn("key rotation: waiting", pxtest.run(["status", "--state-dir", self.state]).stdout)
        new_id = cl.key_id_of_pub(read(os.path.join(self.state, "parallax_ed25519.pub")))
        self.assertNotEqual(new_id, old_id)
        self.assertEqual(len(glob.glob(os.path.join(self.state, "parallax_ed25519.old-*.pub"))), 1)
        # ...and goes with the next round's upload.
        self.run_round("icloud.com")
        self.assertFalse(os.path.exists(os.path.join(self.state, "key-rotation.json")))
        signers = cl.get(c.api("/api/v1/allowed_signers"))[2].decode()
        old_line = [l for l in signers.splitlines() if l.startswith(old_id)]
        self.assertEqual(len(old_line), 1, signers)
        self.assertIn('valid-before="', old_line[0])
        self.assertTrue(any(l.startswith(new_id) and "valid-before" not in l
                            for l in signers.splitlines()), signers)


if __name__ == "__main__":
    pxtest.main()
