"""Connections the collector must keep: more than select() can watch.
Found by the load tests: with MHD's select() loop every connection whose
descriptor was 1024 or higher was dropped at once ("Server returned
nothing"), so no collector could serve ~1,000 clients whatever
--max-connections and LimitNOFILE said."""
import shutil
import socket
import tempfile

import loadlib
from loadlib import cl, pxtest


class Connections(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        loadlib.raise_nofile()
        cls.tmp = tempfile.mkdtemp(prefix="px-connections-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def collector(self, *extra):
        c = cl.Collector(tempfile.mkdtemp(dir=self.tmp), extra=list(extra))
        self.addCleanup(lambda: self.assertEqual(c.stop(), 0, c.log()))
        return c.start()

    def test_connections_beyond_fd_setsize(self):
        # 1,100 connections held open at once, from 32 addresses (34 each,
        # under the allowance of 64): their descriptors in the collector
        # run past 1024. Each must get its answer.
        n = 1100
        if loadlib.raise_nofile() < n + 200:
            self.skipTest("open-file limit too low for 1,100 sockets")
        c = self.collector("--max-connections", "1400")
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for i in range(n):
            s = socket.socket()
            s.bind((f"127.83.0.{1 + i % 32}", 0))
            s.settimeout(30 * cl.SLOW)
            s.connect(("127.0.0.1", c.port))
            socks.append(s)
        # The collector holds every one at the same time before the first
        # request (with select() those past descriptor 1023 were closed
        # at once, so this count was never reached).
        loadlib.wait_for(lambda: (loadlib.proc_sample(c.proc.pid) or (0, 0))[1] >= n, 30,
                         f"the collector to hold {n} connections")
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answered = 0
        for s in socks:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            if data.startswith(b"HTTP/1.1 200"):
                answered += 1
        self.assertEqual(answered, n, f"only {answered} of {n} concurrent connections were served")
        self.assertNotIn("FD_SETSIZE", c.log())


if __name__ == "__main__":
    pxtest.main()
