"""Connections the collector must keep: more than select() can watch, and
keep-alive for the researcher API. Both were found by the load tests:

- with MHD's select() loop every connection whose descriptor was 1024 or
  higher was dropped at once ("Server returned nothing"), so no collector
  could serve ~1,000 clients whatever --max-connections and LimitNOFILE
  said;
- an answer queued in the first call of MHD's access handler makes MHD
  close the connection, and every GET was answered that way."""
import http.client
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

    def test_get_keeps_the_connection_alive(self):
        # MHD closes a connection after an answer queued in the first call
        # of the access handler; the researcher API answered every GET
        # that way, so each cost a new TCP connection (and a thread).
        c = self.collector()
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
        self.addCleanup(conn.close)
        conn.connect()
        first = conn.sock
        for path in ("/healthz", "/api/v1/measurements", "/metrics", "/nothing", "/healthz"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            self.assertFalse(r.will_close, f"GET {path}: Connection: {r.getheader('Connection')}")
            self.assertIs(conn.sock, first, f"GET {path} needed a new connection")


if __name__ == "__main__":
    pxtest.main()
