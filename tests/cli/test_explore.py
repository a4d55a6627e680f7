"""`make explore` (scripts/explore.sh): the collector's pages over the
database a demo left behind, on loopback, until Ctrl-C -- here a database
of really signed measurements (tests/tools/gen_store.py) on a free port.
Refused: a missing database (with what to run first) and an address that
is not loopback."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import collectorlib as cl
import pxtest

sys.path.insert(0, os.path.join(pxtest.SOURCE, "tests", "tools"))
import gen_store  # noqa: E402

SCRIPT = os.path.join(pxtest.SOURCE, "scripts", "explore.sh")
BUILD = os.path.dirname(os.path.abspath(cl.COLLECTOR_BIN))


class Explore(pxtest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="px-explore-")

    def explore(self, **env):
        return subprocess.Popen([SCRIPT, BUILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, **env))

    def test_serves_the_database_until_ctrl_c(self):
        db = os.path.join(self.tmp, "collector.sqlite")
        info = gen_store.generate(cl.COLLECTOR_BIN, db, 40, days=1)
        port = cl.free_port()
        p = self.explore(PX_EXPLORE_DB=db, PX_EXPLORE_LISTEN=f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30 * cl.SLOW
        while True:
            try:
                st, _, _ = cl.get(url + "/healthz", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if p.poll() is not None:  # (not as assert's message: that would wait)
                self.fail(f"explore ended, exit {p.returncode}: {p.communicate()}")
            self.assertLess(time.monotonic(), deadline, "explore did not serve")
            time.sleep(0.05)
        st, headers, body = cl.get(url + "/")
        self.assertEqual(st, 200)
        self.assertIn("text/html", headers.get("content-type"))
        st, _, body = cl.get(url + "/api/v1/measurements?limit=5")
        self.assertEqual(st, 200, body)
        self.assertIn(info["domains"][0].encode(), cl.get(url + "/api/v1/measurements?limit=50")[2])
        p.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = p.communicate(timeout=30 * cl.SLOW)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(f"explore: http://127.0.0.1:{port}/", out)

    def test_refusals(self):
        p = self.explore(PX_EXPLORE_DB=os.path.join(self.tmp, "none.sqlite"))
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("run `make demo` first", err)
        db = os.path.join(self.tmp, "x.sqlite")
        open(db, "w").close()
        p = self.explore(PX_EXPLORE_DB=db, PX_EXPLORE_LISTEN="0.0.0.0:8080")
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("is not a loopback address", err)


if __name__ == "__main__":
    __import__("unittest").main(verbosity=2)  # no test world needed
