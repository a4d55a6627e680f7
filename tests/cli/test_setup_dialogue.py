"""`parallax setup` at a terminal, as a new volunteer meets it (issue 20),
driven through a real pseudo-terminal with pexpect: every answer is
checked by the code of its flag and asked again with the reason, the
collector is contacted before anything is written (one that does not
answer is a warning and a choice), and Ctrl-C or a "no" leaves nothing
behind. Only loopback: a collector of our own, dead ports."""
import os
import shutil
import signal
import tempfile
import unittest

import pexpect

import collectorlib as cl
import pxtest


class SetupDialogue(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="px-setup-")
        self.config = os.path.join(self.dir, "etc", "parallax.conf")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(os.path.dirname(self.config))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def spawn(self, *args):
        child = pexpect.spawn(pxtest.BIN, ["setup", "--config", self.config, "--state-dir",
                                           self.state, *args],
                              encoding="utf-8", timeout=30 * cl.SLOW, dimensions=(50, 200))
        self.addCleanup(child.close, force=True)
        return child

    def assert_nothing_written(self):
        self.assertFalse(os.path.exists(self.config), "a config was written")
        self.assertFalse(os.path.exists(os.path.join(self.state, "consent")),
                         "consent was recorded")
        self.assertFalse(os.path.exists(os.path.join(self.state, "parallax_ed25519")),
                         "a key was made")

    def test_bad_answers_are_asked_again_and_a_silent_collector_is_a_choice(self):
        dead = f"http://127.0.0.1:{cl.free_port()}"
        child = self.spawn()
        child.expect_exact("Collector URL (https://")
        child.sendline("collector.example.org")  # no scheme
        child.expect_exact("is not an http:// or https:// URL; please try again")
        child.expect_exact("Collector URL (https://")
        child.sendline("")
        child.expect_exact("an answer is needed; please try again")
        child.expect_exact("Collector URL (https://")
        child.sendline(dead)
        child.expect_exact(f"the collector {dead} does not answer")
        child.expect_exact("Keep it anyway")
        child.sendline("n")
        child.expect_exact("Nothing was written")
        child.expect(pexpect.EOF)
        child.close()
        self.assertEqual(child.exitstatus, 2)
        self.assert_nothing_written()

    def test_proxy_answers_are_checked_like_their_flags(self):
        c = cl.Collector(tempfile.mkdtemp(dir=self.dir), extra=["--allow-nonpublic-addresses"])
        self.addCleanup(c.stop)
        c.start()
        proxy = f"socks5h://127.0.0.1:{cl.free_port()}"  # nothing listens: a warning
        child = self.spawn("--collector", c.url, "--proxy", proxy)
        child.expect_exact("Your country (two letters")
        child.sendline("Germany")
        child.expect_exact("'Germany' is not a two-letter country code; please try again")
        child.expect_exact("Your country (two letters")
        child.sendline("DE")
        child.expect_exact("AS number")
        child.sendline("Telekom")
        child.expect_exact("please try again")
        child.expect_exact("AS number")
        child.sendline("AS3320")
        child.expect_exact("public IP address")
        child.sendline("dunno")
        child.expect_exact("please try again")
        child.expect_exact("public IP address")
        child.sendline("unknown")
        child.expect_exact(f"the collector {c.url} does not answer")
        child.expect_exact("Keep it anyway")
        child.sendline("y")
        child.expect_exact("[y/N]")
        child.sendline("y")
        child.expect(pexpect.EOF)
        child.close()
        self.assertEqual(child.exitstatus, 0, child.before)
        with open(self.config) as f:
            text = f.read()
        for line in ("probe_cc = DE", "probe_asn = AS3320", "public_address = unknown",
                     f"proxy = {proxy}", f"collector = {c.url}"):
            self.assertIn(line + "\n", text)
        # What setup wrote is what run accepts.
        p = pxtest.run(["config", "check", self.config])
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_ctrl_c_leaves_nothing_behind(self):
        c = cl.Collector(tempfile.mkdtemp(dir=self.dir), extra=["--allow-nonpublic-addresses"])
        self.addCleanup(c.stop)
        c.start()
        child = self.spawn()
        child.expect_exact("Collector URL (https://")
        child.sendline(c.url)
        child.expect_exact(f"Collector {c.url} answers.")
        child.expect_exact("[y/N]")
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
        self.assertTrue(child.signalstatus == signal.SIGINT or child.exitstatus not in (0, None),
                        (child.exitstatus, child.signalstatus))
        self.assert_nothing_written()


if __name__ == "__main__":
    unittest.main()
