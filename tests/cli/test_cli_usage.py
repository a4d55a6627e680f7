"""Command-line contract: bad usage exits 2 with a one-line reason, help and
version exit 0, runtime errors exit 1."""
import os
import tempfile

import pxtest
from pxtest import run


class Usage(pxtest.TestCase):
    def assert_usage_error(self, args, needle):
        p = run(args)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(needle, lines[0])
        self.assertEqual(p.stdout, "")

    def test_help_and_version(self):
        for args in (["--help"], ["measure", "--help"], ["measure", "-h"]):
            p = run(args)
            self.assertEqual(p.returncode, 0)
            self.assertIn("Usage: parallax", p.stdout)
        p = run(["measure", "--help"])
        for flag in ("--resolver", "--system-resolver", "--no-system-resolver", "--address",
                     "--port", "--ca-file", "--timeout", "--parallel", "--probe-cc",
                     "--probe-asn", "--allow-nonpublic-addresses", "--output", "--targets-file"):
            self.assertIn(flag, p.stdout)
        p = run(["--version"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^parallax \d+\.\d+\.\d+ \(libuv 1\.")

    def test_bad_flags(self):
        self.assert_usage_error(["measure", "--frobnicate", "example.com"], "unknown option")
        self.assert_usage_error(["measure", "example.com", "--port"], "missing value")
        self.assert_usage_error(["measure", "--port", "0", "example.com"], "--port")
        self.assert_usage_error(["measure", "--port", "65536", "example.com"], "--port")
        self.assert_usage_error(["measure", "--port", "44x", "example.com"], "--port")
        self.assert_usage_error(["measure", "--timeout", "soon", "example.com"], "--timeout")
        self.assert_usage_error(["measure", "--timeout", "0", "example.com"], "--timeout")
        self.assert_usage_error(["measure", "--parallel", "0", "example.com"], "--parallel")
        self.assert_usage_error(["measure", "--parallel", "100000", "example.com"], "--parallel")
        self.assert_usage_error(["measure", "--probe-cc", "CHN", "example.com"], "--probe-cc")
        self.assert_usage_error(["measure", "--probe-asn", "AS12x", "example.com"], "--probe-asn")
        self.assert_usage_error(["measure", "--ca-file", "/nonexistent/ca.pem", "example.com"], "--ca-file")
        self.assert_usage_error(["measure", "--address", "example.com", "example.com"], "--address")
        self.assert_usage_error(["measure", "-x", "example.com"], "unknown option '-x'")
        self.assert_usage_error(["frobnicate"], "unknown command")

    def test_bad_resolvers(self):
        for bad in ("dns.google", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:99999",
                    "[2001:db8::1", "2001:db8::1]:53", "1.2.3", "[192.0.2.1]:53"):
            self.assert_usage_error(["measure", "--resolver", bad, "example.com"], "--resolver")
        # Accepted forms parse (the run itself then records failures).
        for good in ("192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53", "2001:db8::1"):
            p = run(["measure", "--resolver", good, "--timeout", "1", "--help"])
            self.assertEqual(p.returncode, 0, (good, p.stderr))

    def test_bad_targets(self):
        for bad in ("exa mple.com", "example..com", "x-.example", "example.com:0",
                    "example.com:http", "192.0.2.1", "[2001:db8::1]:443", "ftp://example.com/"):
            self.assert_usage_error(["measure", "--no-system-resolver", "--address",
                                     "192.0.2.1", bad], "bad target")
        self.assert_usage_error(["measure"], "no targets")
        self.assert_usage_error(["measure", "--no-system-resolver", "example.com"], "nothing to probe")

    def test_targets_file_errors_name_the_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("# comment\nexample.com\n\n   www.example.com  # trailing\nbad target\n")
        try:
            p = run(["measure", "--no-system-resolver", "--address", "192.0.2.1",
                     "--targets-file", f.name])
            self.assertEqual(p.returncode, 2)
            self.assertIn(f"{f.name}:5: bad target 'bad target'", p.stderr)
        finally:
            os.unlink(f.name)
        self.assert_usage_error(["measure", "--targets-file", "/nonexistent/t.txt"], "--targets-file")

    def test_unwritable_output_is_a_runtime_error(self):
        p = run(["measure", "--no-system-resolver", "--address", pxtest.PEER["PX_TCP_REFUSED"],
                 "--port", pxtest.TLS_PORT, "--output", "/nonexistent/dir/out.jsonl", "example.com"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot open output", p.stderr)
        p = run(["measure", "--no-system-resolver", "--address", pxtest.PEER["PX_TCP_REFUSED"],
                 "--port", pxtest.TLS_PORT, "--output", "/dev/full", "example.com"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot write", p.stderr)


if __name__ == "__main__":
    pxtest.main()
