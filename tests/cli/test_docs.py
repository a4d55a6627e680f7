"""The documentation says what the programs do: every flag the commands'
--help prints is in the man pages, every config key the agent accepts is
in parallax.conf(5) (and nothing else is), the pages are clean roff, the
example configs and the command lines in the docs are accepted, and the
Python verification script in docs/researcher.md really verifies a
measurement signed by `parallax submit` (and refuses a tampered one).

Needs no network, no root and no test peers: everything runs on files in a
temporary directory."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import pxtest

BIN = pxtest.BIN
SOURCE = pxtest.SOURCE
COLLECTOR_BIN = os.environ.get("PX_COLLECTOR_BIN",
                               os.path.join(SOURCE, "build", "parallax-collector"))
MAN = os.path.join(SOURCE, "docs", "man")
PAGES = ("parallax.1", "parallax-collector.8", "parallax.conf.5")
DOCS = ("volunteer.md", "researcher.md", "operator.md")
COMMANDS = ("setup", "run", "measure", "compare", "submit", "upload", "status", "config", "keygen",
            "verify")
FLAG = re.compile(r"--[a-z][a-z0-9-]*[a-z0-9]")  # --ipv6-prefix-len has a digit


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def help_flags(argv):
    """The long flags a --help text mentions."""
    p = run(argv + ["--help"])
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} --help: exit {p.returncode}: {p.stderr}")
    return set(FLAG.findall(p.stdout))


def roff(page):
    with open(os.path.join(MAN, page), encoding="utf-8") as f:
        return f.read()


def unroff(text):
    """The words of roff source: escapes resolved, fonts dropped."""
    text = re.sub(r"\\f[BIRP]", "", text)
    for escape, plain in (("\\-", "-"), ("\\&", ""), ("\\%", ""), ("\\(aq", "'"),
                          ("\\(dq", '"'), ("\\e", "\\")):
        text = text.replace(escape, plain)
    return text


def mentioned(text, word):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


def markdown_blocks(name, lang=None):
    """The fenced code blocks of docs/NAME (of one language if lang)."""
    with open(os.path.join(SOURCE, "docs", name), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)
    return [body for kind, body in blocks if lang is None or kind == lang]


def logical_lines(block):
    """Shell lines with their backslash continuations joined."""
    return block.replace("\\\n", " ").splitlines()


# Per command, the flags its --help lists; computed once.
_FLAGS = {}


def flags_of(cmd):
    if cmd not in _FLAGS:
        _FLAGS[cmd] = help_flags([BIN, cmd]) | {"--help"}
    return _FLAGS[cmd]


class ManPages(unittest.TestCase):
    maxDiff = None

    def test_every_agent_flag_is_in_parallax_1(self):
        text = unroff(roff("parallax.1"))
        missing = {}
        for cmd in ("",) + COMMANDS:
            argv = [BIN] + ([cmd] if cmd else [])
            flags = help_flags(argv)
            self.assertTrue(flags, f"no flags found in parallax {cmd} --help")
            gone = sorted(f for f in flags if not mentioned(text, f))
            if gone:
                missing[cmd or "(top)"] = gone
        self.assertEqual(missing, {}, "flags printed by --help but missing from parallax.1")
        entries = set(re.findall(r"(?m)^\.B (\w+)$", roff("parallax.1")))
        self.assertEqual(sorted(set(COMMANDS) - entries), [],
                         "commands without an entry of their own in parallax.1")

    def test_every_collector_flag_is_in_parallax_collector_8(self):
        text = unroff(roff("parallax-collector.8"))
        flags = help_flags([COLLECTOR_BIN]) | help_flags([COLLECTOR_BIN, "migrate"])
        self.assertIn("--geoip-db", flags)
        self.assertIn("--batch", flags)
        self.assertIn(".SH MIGRATE", roff("parallax-collector.8"))
        gone = sorted(f for f in flags if not mentioned(text, f))
        self.assertEqual(gone, [], "collector flags missing from parallax-collector.8")

    def test_every_config_key_is_in_parallax_conf_5_and_no_other(self):
        accepted = {f[2:].replace("-", "_") for f in help_flags([BIN, "run"])}
        accepted -= {"config", "help", "version"}
        accepted.add("targets")  # a list of targets: the one key that is no flag
        documented = set(re.findall(r'(?m)^\.BI (\w+) " = ', roff("parallax.conf.5")))
        self.assertEqual(sorted(accepted - documented), [],
                         "config keys the agent accepts but parallax.conf(5) does not describe")
        self.assertEqual(sorted(documented - accepted), [],
                         "keys parallax.conf(5) describes but the agent does not accept")

    def test_example_configs_are_accepted(self):
        """Every example config of parallax.conf(5) loads (`run --config F
        --help` reads the file before it prints the usage), and a bad key
        is refused with the file and line, as the page says."""
        examples = [unroff(b) for b in re.findall(r"(?ms)^\.EX\n(.*?)^\.EE$",
                                                   roff("parallax.conf.5"))]
        examples = [e for e in examples if e.startswith("[parallax]")]
        self.assertGreaterEqual(len(examples), 3, "expected the home, Tor and Pi examples")
        with tempfile.TemporaryDirectory(prefix="px-docs-") as d:
            path = os.path.join(d, "parallax.conf")
            for example in examples:
                with open(path, "w") as f:
                    f.write(example)
                p = run([BIN, "run", "--config", path, "--help"])
                self.assertEqual(p.returncode, 0, f"{example}\n-> {p.stderr}")
            with open(path, "w") as f:
                f.write("[parallax]\ncollector = https://collector.example.org\nbudget = 5m\n")
            p = run([BIN, "run", "--config", path, "--help"])
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(f"{path}:3: unknown key 'budget'", p.stderr)

    def test_pages_are_clean_roff(self):
        groff = shutil.which("groff")
        if groff is None:
            self.skipTest("groff is not installed (Debian: groff-base): roff not checked")
        for page in PAGES:
            p = run([groff, "-man", "-ww", "-z", os.path.join(MAN, page)])
            self.assertEqual((p.returncode, p.stderr), (0, ""), f"groff warns about {page}")
            self.assertRegex(roff(page), r"^\.TH ", page)


class CommandLinesInDocs(unittest.TestCase):
    """The command lines shown in the docs and the man pages' examples use
    flags the commands have."""

    def lines(self):
        for name in DOCS:
            for block in markdown_blocks(name):
                for line in logical_lines(block):
                    yield name, line
        for page in PAGES:
            for block in re.findall(r"(?ms)^\.EX\n(.*?)^\.EE$", roff(page)):
                for line in logical_lines(unroff(block)):
                    yield page, line

    def test_agent_command_lines(self):
        seen, bad = 0, []
        pattern = re.compile(r"(?<![\w/-])parallax (" + "|".join(COMMANDS) + r")\b(.*)")
        for where, line in self.lines():
            m = pattern.search(line)
            if m is None:
                continue
            seen += 1
            rest = m.group(2).split("#")[0]
            for flag in FLAG.findall(rest):
                if flag not in flags_of(m.group(1)):
                    bad.append(f"{where}: parallax {m.group(1)} has no {flag}: {line.strip()}")
        self.assertGreater(seen, 10)
        self.assertEqual(bad, [])

    def test_collector_command_lines(self):
        flags = help_flags([COLLECTOR_BIN]) | {"--help"}
        migrate = help_flags([COLLECTOR_BIN, "migrate"]) | {"--help"}
        seen, bad = 0, []
        for where, line in self.lines():
            m = re.search(r"(?:parallax-collector |PX_COLLECTOR_ARGS=)(.*)", line)
            if m is None or "systemctl" in line or "journalctl" in line:
                continue
            seen += 1
            known = migrate if re.search(r"parallax-collector migrate\b", line) else flags
            for flag in FLAG.findall(m.group(1)):
                if flag not in known:
                    bad.append(f"{where}: parallax-collector has no {flag}: {line.strip()}")
        self.assertGreater(seen, 2)
        self.assertEqual(bad, [])


class ResearcherScript(unittest.TestCase):
    """docs/researcher.md's Python verification script, run as printed."""

    @classmethod
    def setUpClass(cls):
        scripts = [b for b in markdown_blocks("researcher.md", "python")
                   if "verify_sshsig.py" in b.splitlines()[0]]
        if len(scripts) != 1:
            raise AssertionError("docs/researcher.md: expected one python block headed "
                                 "'# verify_sshsig.py'")
        cls.script = scripts[0]
        cls.dir = tempfile.mkdtemp(prefix="px-docs-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        try:
            import cryptography  # noqa: F401
        except ImportError:
            self.skipTest("python3-cryptography is not installed: the script of "
                          "docs/researcher.md was not run")

    def test_script_is_short(self):
        code = [l for l in self.script.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        self.assertLessEqual(len(code), 20, "the script should stay short enough to read")

    def test_verifies_a_signed_measurement_and_refuses_changes(self):
        d = self.dir
        script = os.path.join(d, "verify_sshsig.py")
        with open(script, "w") as f:
            f.write(self.script)
        state = os.path.join(d, "state")
        p = run([BIN, "keygen", "--state-dir", state])
        self.assertEqual(p.returncode, 0, p.stderr)
        key_id = re.search(r"^key id: (SHA256:\S+)$", p.stdout, re.M).group(1)

        # Not a measurement the collector would take, but one the agent's
        # signer signs (its software, test and probe_ip), with characters
        # beyond ASCII.
        line = ('{"software_name":"parallax","test_name":"tls_cert_consistency",'
                '"probe_ip":"127.0.0.1","measurement_start_time":"2014-10-20 12:00:00",'
                '"input":"www.icloud.com","probe_cc":"CN",'
                '"probe_network_name":"Chinanet \u2014 \u4e2d\u56fd\u7535\u4fe1",'
                '"subject":"CN=www.icloud.com,O=www.icloud.com,C=cn"}')
        jsonl = os.path.join(d, "in.jsonl")
        with open(jsonl, "w", encoding="utf-8") as f:
            f.write(line + "\n")
        p = run([BIN, "submit", "--state-dir", state, jsonl])  # no --collector: spool only
        self.assertEqual(p.returncode, 0, p.stderr)
        # The spool entry holds both; the script takes them as two files,
        # as a researcher gets them (an export line split in two).
        pending = os.path.join(state, "spool", "pending")
        names = [n for n in os.listdir(pending) if n.endswith(".jsonl")]
        self.assertEqual(len(names), 1, names)
        with open(os.path.join(pending, names[0]), encoding="utf-8") as f:
            entry = json.loads(f.read())
        self.assertEqual(entry["content"].encode("utf-8"), line.encode("utf-8"))
        m = os.path.join(d, "m.json")
        with open(m, "wb") as f:
            f.write(entry["content"].encode("utf-8"))
        with open(m + ".sig", "w") as f:
            f.write(entry["signature"])

        def verify(message, key=key_id):
            return run([sys.executable, script, message, m + ".sig", key])

        p = verify(m)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("verified", p.stdout)

        tampered = os.path.join(d, "tampered.json")
        with open(tampered, "wb") as f:
            f.write(line.replace('"probe_cc":"CN"', '"probe_cc":"DE"').encode("utf-8"))
        p = verify(tampered)
        self.assertNotEqual(p.returncode, 0, "a changed measurement was accepted")
        self.assertIn("InvalidSignature", p.stderr)

        p = verify(m, key="SHA256:" + "A" * 43)
        self.assertNotEqual(p.returncode, 0, "another key id was accepted")
        self.assertIn("FAILED", p.stderr)

        # The same pair, judged by OpenSSH, as docs/researcher.md also shows.
        if shutil.which("ssh-keygen"):
            with open(m, "rb") as f:
                p = subprocess.run(["ssh-keygen", "-Y", "check-novalidate", "-n",
                                    "parallax-measurement-v1", "-s", m + ".sig"],
                                   stdin=f, capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)



class NoPathOutside(unittest.TestCase):
    def test_no_doc_names_a_file_outside_the_repository(self):
        import glob as _glob
        src = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
        docs = [os.path.join(src, "README.md")] + _glob.glob(os.path.join(src, "docs", "*.md")) \
            + _glob.glob(os.path.join(src, "dist", "**", "*.md"), recursive=True)
        outside = []
        for d in docs:
            with open(d, encoding="utf-8") as f:
                text = f.read()
            for ref in re.findall(r"(?<![\w/.])\.\./[\w./-]+", text):
                target = os.path.realpath(os.path.join(os.path.dirname(d), ref))
                if not target.startswith(src + os.sep):
                    outside.append(f"{os.path.relpath(d, src)}: {ref}")
        self.assertEqual(outside, [])

if __name__ == "__main__":
    unittest.main(verbosity=2)
