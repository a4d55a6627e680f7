"""What people give `parallax measure` as input: URLs, IDNs, Citizen Lab
test-list CSV files, files saved with a BOM, and the mistakes around them.
Measurements go to the loopback test world only (world_args: its resolver,
--no-system-resolver) and each validates against the schema."""
import os
import tempfile

import pxtest
from pxtest import PEER, by_input, measure, run, world_args

CITIZENLAB_HEADER = "url,category_code,category_description,date_added,source,notes\r\n"


class Input(pxtest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, data):
        path = os.path.join(self.dir.name, name)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        return path

    def assert_usage_error(self, args, needle):
        p = run(args)
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(needle, lines[0])
        self.assertEqual(p.stdout, "")
        return lines[0]

    def assert_probed_www(self, m, port):
        """m measured www.example.test itself: its DNS names and SNI, its
        certificate verified, on port."""
        tk = m["test_keys"]
        self.assertEqual({q["hostname"] for q in tk["queries"]}, {"www.example.test"})
        self.assertEqual({c["port"] for c in tk["tcp_connect"]}, {port})
        hs = tk["tls_handshakes"]
        self.assertEqual(len(hs), 2)
        for h in hs:
            self.assertEqual(h["server_name"], "www.example.test")
            self.assertTrue(h["verification"]["ok"], h)

    def test_urls_are_measured_as_their_host_with_the_url_as_input(self):
        urls = ["https://www.example.test/path",
                "https://www.example.test/a/b?q=1&r=two#frag",
                "http://www.example.test/",
                f"https://www.example.test:{pxtest.TLS_PORT}/explicit-port"]
        ms = by_input(measure(world_args(*urls, "www.example.test")))
        self.assertEqual(set(ms), set(urls) | {"www.example.test"})
        for u in urls:
            # No port in the URL: the TLS port (the world's --port), for
            # http:// too, since parallax probes TLS.
            self.assert_probed_www(ms[u], int(pxtest.TLS_PORT))
        self.assert_probed_www(ms["www.example.test"], int(pxtest.TLS_PORT))

    def test_url_port_and_userinfo(self):
        # The URL's own port wins over --port; nothing listens on the
        # world's good TLS address at that port, which is data, not an error.
        ms = measure(world_args("https://someone:secret@www.example.test:1/x"))
        self.assertEqual(len(ms), 1)
        m = ms[0]
        # The password is never recorded.
        self.assertEqual(m["input"], "https://www.example.test:1/x")
        self.assertNotIn("secret", str(m))
        self.assertEqual({c["port"] for c in m["test_keys"]["tcp_connect"]}, {1})
        self.assertEqual({c["ip"] for c in m["test_keys"]["tcp_connect"]},
                         {PEER["PX_TLS_GOOD"], "::1"})

    def test_idn_is_queried_as_its_a_label_and_recorded_as_written(self):
        ms = by_input(measure(world_args("bücher.example.test", "https://bücher.example.test/straße")))
        self.assertEqual(set(ms), {"bücher.example.test", "https://bücher.example.test/straße"})
        for m in ms.values():
            names = {q["hostname"] for q in m["test_keys"]["queries"]}
            self.assertEqual(names, {"xn--bcher-kva.example.test"})

    def test_citizenlab_csv_with_bom_and_quotes(self):
        path = self.write("global.csv", "\ufeff" + CITIZENLAB_HEADER +
                          "https://www.example.test/,NEWS,News Media,2014-04-15,citizenlab,\r\n"
                          'http://expired.example.test/old,HOST,"Hosting, Blogging",2016-01-01,,'
                          '"a ""quoted"" note,\r\nover two lines"\r\n'
                          "\r\n"
                          '"https://www.example.test/a,b",GRP,Groups,2020-01-01,x,\r\n')
        ms = measure(world_args("--targets-file", path))
        self.assertEqual([m["input"] for m in ms].count("https://www.example.test/"), 1)
        self.assertEqual(sorted(m["input"] for m in ms),
                         ["http://expired.example.test/old", "https://www.example.test/",
                          "https://www.example.test/a,b"])
        by = by_input(ms)
        self.assert_probed_www(by["https://www.example.test/"], int(pxtest.TLS_PORT))
        self.assertEqual({q["hostname"] for q in by["http://expired.example.test/old"]
                          ["test_keys"]["queries"]}, {"expired.example.test"})

    def test_plain_list_with_bom_crlf_and_stdin_csv(self):
        path = self.write("list.txt", "\ufeffwww.example.test\r\n# a comment\r\n"
                          "https://www.example.test/#top  # fragment kept, comment not\r\n")
        ms = measure(world_args("--targets-file", path))
        self.assertEqual(sorted(m["input"] for m in ms),
                         ["https://www.example.test/#top", "www.example.test"])
        p = run(["measure"] + world_args("--targets-file", "-"),
                stdin=CITIZENLAB_HEADER + "https://www.example.test/,NEWS,,,,\r\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([pxtest.json.loads(l)["input"] for l in p.stdout.splitlines()],
                         ["https://www.example.test/"])

    def test_refusals_are_usage_errors(self):
        no_dns = ["measure", "--no-system-resolver", "--address", "192.0.2.1"]
        empty = self.write("empty.txt", "")
        self.assert_usage_error(no_dns + ["--targets-file", empty], f"no targets in '{empty}'")
        only_comments = self.write("comments.txt", "\ufeff# nothing yet\n\n")
        self.assert_usage_error(no_dns + ["--targets-file", only_comments], "no targets in")
        header = self.write("header.csv", CITIZENLAB_HEADER)
        self.assert_usage_error(no_dns + ["--targets-file", header], "CSV header and no records")
        self.assert_usage_error(no_dns + ["--targets-file", self.dir.name], "is a directory")
        # An empty file is no reason to suggest --targets-file.
        line = self.assert_usage_error(no_dns + ["--targets-file", empty], "no targets")
        self.assertNotIn("give TARGET", line)

        self.assert_usage_error(no_dns + ["☃.example"], "libidn2 IDN2_DISALLOWED")
        self.assert_usage_error(no_dns + ["ftp://www.example.test/"], "unsupported URL scheme 'ftp'")
        self.assert_usage_error(no_dns + ["https://[::1]/"], "not an IP address")
        self.assert_usage_error(no_dns + ["https://"], "URL has no host")
        self.assert_usage_error(no_dns + ["https://www.example.test:99999/"], "port out of range")
        self.assert_usage_error(no_dns + ["https://www.example.test/" + "a" * 300], "longer than 260")
        self.assert_usage_error(no_dns + ["www.example.test/path"], "https://host/path")

        bad_csv = self.write("bad.csv", CITIZENLAB_HEADER + "https://ok.example/,NEWS,,,,\r\n"
                             'https://x.example/,NEWS,"never closed,,,\r\n')
        self.assert_usage_error(no_dns + ["--targets-file", bad_csv],
                                f"{bad_csv}:3: unterminated quoted field")
        bad_row = self.write("row.csv", CITIZENLAB_HEADER + '"a,b",NEWS,"x\ny",,,\n')
        self.assert_usage_error(no_dns + ["--targets-file", bad_row],
                                f"{bad_row}:2: bad target 'a,b'")
        utf16 = self.write("utf16.txt", "www.example.test\n".encode("utf-16"))
        self.assert_usage_error(no_dns + ["--targets-file", utf16], "UTF-16")
        binary = self.write("binary.txt", b"www.example.test\n\x00\x01\x02")
        self.assert_usage_error(no_dns + ["--targets-file", binary], f"{binary}:2: ")

    def test_resolver_ipv6_needs_brackets_for_a_port(self):
        line = self.assert_usage_error(["measure", "--resolver", "::1:53", "www.example.test"],
                                       "[::1]:53")
        self.assertIn("ambiguous", line)
        self.assert_usage_error(["measure", "--resolver", "1:2:3:4:5:6:7:8:53", "x.example"],
                                "[1:2:3:4:5:6:7:8]:53")
        for good in ("::1", "[::1]:53", "[::1:53]", "2001:db8::53"):
            p = run(["measure", "--resolver", good, "--help"])
            self.assertEqual(p.returncode, 0, (good, p.stderr))


if __name__ == "__main__":
    pxtest.main()
