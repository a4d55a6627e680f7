"""Docs that work when pasted (issue 20): every shell block of README.md
and docs/ marked runnable (a fence whose info string is `sh runnable`) is
run with bash -euo pipefail in an empty directory, with the built
`parallax` first on PATH, and must succeed. Such blocks use nothing but
local files: no network, no root."""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import pxtest


def runnable_blocks():
    docs = [os.path.join(pxtest.SOURCE, "README.md")] + sorted(
        glob.glob(os.path.join(pxtest.SOURCE, "docs", "*.md")))
    for path in docs:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"^```sh runnable\n(.*?)^```", text, re.M | re.S):
            line = text[:m.start()].count("\n") + 1
            yield f"{os.path.relpath(path, pxtest.SOURCE)}:{line}", m.group(1)


class RunnableDocs(unittest.TestCase):
    def test_every_runnable_block_runs(self):
        blocks = list(runnable_blocks())
        self.assertTrue(blocks, "no block is marked runnable")
        bindir = os.path.dirname(os.path.abspath(pxtest.BIN))
        for where, script in blocks:
            with self.subTest(where=where):
                d = tempfile.mkdtemp(prefix="px-doc-")
                try:
                    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"],
                               HOME=d)
                    p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=d,
                                       env=env, capture_output=True, text=True, timeout=120)
                    self.assertEqual(p.returncode, 0, f"{where}:\n{script}\nstdout:\n"
                                     f"{p.stdout}\nstderr:\n{p.stderr}")
                finally:
                    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
