"""Every config a volunteer can copy from our docs is one `parallax run`
accepts (issue 20): each ```ini block of README.md, docs/ and dist/ that
configures the agent, each example of parallax.conf(5) and parallax(1),
and dist/parallax.conf itself go through `parallax config check`, which
reads a file exactly as `run` does. Also: comments after a value ("# …",
"; …") are comments, and a bad value is named by FILE:LINE.

Needs no network and no test peers."""
import glob
import os
import re
import shutil
import tempfile
import unittest

import pxtest

SOURCE = pxtest.SOURCE
# The keys of the agent's config (parallax.conf(5)); a block made of
# other keys configures something else (a systemd drop-in, the collector).
SECTION = re.compile(r"^\s*\[(\w+)\]\s*$", re.M)


def roff_text(line):
    return (line.replace("\\(aq", "'").replace("\\-", "-").replace("\\e", "\\")
            .replace("\\(em", "-").replace("\\&", ""))


def markdown_snippets(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for m in re.finditer(r"^```ini\n(.*?)^```", text, re.M | re.S):
        body = m.group(1)
        sections = SECTION.findall(body)
        if sections and sections != ["parallax"] * len(sections):
            continue  # [Service], [Unit]…: not the agent's file
        yield f"{os.path.relpath(path, SOURCE)}:{text[:m.start()].count(chr(10)) + 1}", body


def man_snippets(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i] == ".EX":
            start = i + 1
            j = start
            while j < len(lines) and lines[j] != ".EE":
                j += 1
            body = [roff_text(l) for l in lines[start:j]]
            if body and body[0].strip() == "[parallax]":
                yield f"{os.path.relpath(path, SOURCE)}:{start + 1}", "\n".join(body) + "\n"
            i = j
        i += 1


def all_snippets():
    md = [os.path.join(SOURCE, "README.md")] + sorted(
        glob.glob(os.path.join(SOURCE, "docs", "**", "*.md"), recursive=True)) + sorted(
        glob.glob(os.path.join(SOURCE, "dist", "**", "*.md"), recursive=True))
    for p in md:
        yield from markdown_snippets(p)
    for p in sorted(glob.glob(os.path.join(SOURCE, "docs", "man", "*.[0-9]"))):
        yield from man_snippets(p)
    with open(os.path.join(SOURCE, "dist", "parallax.conf"), encoding="utf-8") as f:
        yield "dist/parallax.conf", f.read()


class ConfigSnippets(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="px-snippets-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def check(self, text, name="snippet.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path, pxtest.run(["config", "check", path])

    def test_every_documented_config_is_accepted(self):
        found = list(all_snippets())
        # The volunteer guide's budget block, the man page's three
        # examples and the shipped file at least.
        self.assertGreaterEqual(len(found), 5, [w for w, _ in found])
        for where, text in found:
            with self.subTest(where=where):
                path, p = self.check(text)
                self.assertEqual(p.returncode, 0, f"{where}: {p.stderr}")
                self.assertIn(f"{path}: ok", p.stdout)

    def test_comments_after_values(self):
        _, p = self.check("[parallax]\nmax_targets = 5     # at most 5 a round\n"
                          "max_runtime = 5m\t; five minutes\n"
                          "collector = https://collector.example.org/#not-a-comment\n")
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_a_bad_value_is_named_by_file_and_line(self):
        path, p = self.check("[parallax]\n# a comment\nmax_targets = 5 # fine\n"
                             "probe_cc = Germany   # not a code\n")
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"{path}:4: --probe-cc: 'Germany' is not a two-letter country code",
                      p.stderr)
        path, p = self.check("[parallax]\nbudget = 5\n")
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"{path}:2:", p.stderr)
        p = pxtest.run(["config", "check", os.path.join(self.dir, "missing.conf")])
        self.assertEqual(p.returncode, 2)
        self.assertIn("missing.conf", p.stderr)
        p = pxtest.run(["config", "frobnicate"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("check", p.stderr)


if __name__ == "__main__":
    unittest.main()
