"""The collector's side of Type=notify, against a socket of our own in
place of systemd's: READY=1 (with a STATUS= line) only once the port
accepts connections, STOPPING=1 when SIGTERM starts the stop, exit 0; the
same through an abstract-namespace name ('@' in NOTIFY_SOCKET); WATCHDOG=1
under WATCHDOG_USEC unless WATCHDOG_PID names another process; no socket
or a dead one is no reason to fail. And the stop itself: a submission
that is in flight when SIGTERM arrives is committed and answered 200."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import collectorlib as cl
import pxtest


class Notified:
    """A parallax-collector started with NOTIFY_SOCKET=name (a path, or
    '@name' for the abstract namespace), receiving on sock."""

    def __init__(self, workdir, sock, name, env=None):
        self.port = cl.free_port()
        self.database = cl.Database(workdir)
        self.sock = sock
        self.log_path = os.path.join(workdir, "collector.log")
        full = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
        full.update(env or {})
        if name is None:
            full.pop("NOTIFY_SOCKET", None)
        else:
            full["NOTIFY_SOCKET"] = name
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [cl.COLLECTOR_BIN, "--listen", f"127.0.0.1:{self.port}", "--db", self.database.url],
                env=full, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def recv(self, timeout=20):
        """The next datagram as {key: value}, keys in order; None on
        timeout."""
        self.sock.settimeout(timeout * cl.SLOW)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        text = data.decode()
        out = {}
        for line in text.split("\n"):
            if line:
                k, sep, v = line.partition("=")
                assert sep, f"not KEY=VALUE: {line!r} in {text!r}"
                out[k] = v
        return out

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout * cl.SLOW)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Notify(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-collector-notify-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)

    def listener(self, abstract=False):
        """(socket, NOTIFY_SOCKET value): a datagram socket bound to a path
        in the test directory, or to an abstract name."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = f"px-notify-{os.getpid()}-{time.monotonic_ns()}"
            s.bind("\0" + name)
            return s, "@" + name
        path = os.path.join(self.dir, "notify")
        s.bind(path)
        return s, path

    def start(self, sock, name, env=None):
        c = Notified(self.dir, sock, name, env)
        self.addCleanup(c.kill)
        return c

    def ready_then_stopping(self, abstract):
        sock, name = self.listener(abstract)
        c = self.start(sock, name)
        msg = c.recv()
        self.assertIsNotNone(msg, "no notification:\n" + c.log())
        self.assertEqual(list(msg)[0], "READY", msg)
        self.assertEqual(msg["READY"], "1")
        self.assertIn(f"127.0.0.1:{c.port}", msg.get("STATUS", ""), msg)
        # Ready means ready: the port takes a connection at once, no retry.
        self.assertTrue(cl.port_open(c.port), "READY=1 before the port accepts connections")
        st, _, body = cl.get(f"http://127.0.0.1:{c.port}/healthz")
        self.assertEqual(st, 200, body)
        c.proc.send_signal(signal.SIGTERM)
        msg = c.recv()
        self.assertIsNotNone(msg, "no STOPPING=1:\n" + c.log())
        self.assertEqual(msg.get("STOPPING"), "1", msg)
        self.assertEqual(c.proc.wait(timeout=30 * cl.SLOW), 0, c.log())
        self.assertIsNone(c.recv(timeout=0.2), "a notification after STOPPING=1")

    def test_ready_then_stopping_path_socket(self):
        self.ready_then_stopping(abstract=False)

    def test_ready_then_stopping_abstract_socket(self):
        self.ready_then_stopping(abstract=True)

    def test_sigint_stops_too(self):
        sock, name = self.listener()
        c = self.start(sock, name)
        self.assertEqual(c.recv()["READY"], "1")
        c.proc.send_signal(signal.SIGINT)
        self.assertEqual(c.recv().get("STOPPING"), "1")
        self.assertEqual(c.proc.wait(timeout=30 * cl.SLOW), 0, c.log())

    def test_without_notify_socket(self):
        c = self.start(None, None)
        cl.wait_until(lambda: cl.port_open(c.port) or c.proc.poll() is not None, 15, "the port")
        self.assertIsNone(c.proc.poll(), c.log())
        self.assertEqual(c.stop(), 0, c.log())

    def test_dead_notify_socket_is_not_fatal(self):
        # Nobody listens there: the collector says so and serves anyway.
        c = self.start(None, os.path.join(self.dir, "nobody-listens"))
        cl.wait_until(lambda: cl.port_open(c.port) or c.proc.poll() is not None, 15, "the port")
        self.assertIsNone(c.proc.poll(), c.log())
        self.assertEqual(c.stop(), 0, c.log())
        self.assertIn("cannot notify the service manager", c.log())

    def test_watchdog(self):
        sock, name = self.listener()
        c = self.start(sock, name, env={"WATCHDOG_USEC": "200000"})
        self.assertEqual(c.recv()["READY"], "1")
        for _ in range(3):
            msg = c.recv(timeout=2)
            self.assertEqual(msg, {"WATCHDOG": "1"}, c.log())
        self.assertEqual(c.stop(), 0, c.log())

    def test_watchdog_of_another_process_ignored(self):
        sock, name = self.listener()
        c = self.start(sock, name, env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
        self.assertEqual(c.recv()["READY"], "1")
        self.assertIsNone(c.recv(timeout=0.6), "pinged a watchdog meant for pid 1")
        self.assertEqual(c.stop(), 0, c.log())

    def test_in_flight_submission_committed_on_stop(self):
        """Headers and half the body, then SIGTERM; the rest of the body
        after STOPPING=1: the answer is 200 and the row is in the database
        when the process has exited 0."""
        line = cl.measure_lines("www.example.test")[0]
        agent = cl.Agent(os.path.join(self.dir, "agent"))
        content, signature = agent.sign([line])[0]
        body = json.dumps(cl.submit_body(content, signature)).encode()

        sock, name = self.listener()
        c = self.start(sock, name)
        self.assertEqual(c.recv()["READY"], "1")
        before = self._requests(c)
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60 * cl.SLOW)
        self.addCleanup(conn.close)
        conn.putrequest("POST", "/api/v1/submit_measurement")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        half = len(body) // 2
        conn.sock.sendall(body[:half])
        # The request is in the server's hands (counted when its request
        # line is parsed) before the stop begins: a poll that sees two more
        # requests than the poll before it saw the POST as well.
        seen = [before]

        def counted():
            seen.append(self._requests(c))
            return seen[-1] >= seen[-2] + 2
        cl.wait_until(counted, 10, "the request to be in flight")
        c.proc.send_signal(signal.SIGTERM)
        self.assertEqual(c.recv().get("STOPPING"), "1", c.log())
        self.assertIsNone(c.proc.poll(), "exited with a request in flight:\n" + c.log())
        conn.sock.sendall(body[half:])
        resp = conn.getresponse()
        answer = resp.read()
        self.assertEqual(resp.status, 200, answer)
        uid = json.loads(answer)["measurement_uid"]
        self.assertEqual(c.proc.wait(timeout=30 * cl.SLOW), 0, c.log())
        self.assertEqual(c.database.sql("SELECT uid FROM measurements"), [(uid,)])

    @staticmethod
    def _requests(c):
        """parallax_collector_requests_total, this request included."""
        st, _, body = cl.get(f"http://127.0.0.1:{c.port}/metrics")
        assert st == 200, (st, body)
        return cl.parse_metrics(body.decode())[("parallax_collector_requests_total", ())]


if __name__ == "__main__":
    pxtest.main()
