"""The agent's upload path with real processes: the spool while the
collector is down, `parallax upload` delivering each measurement exactly
once, refusals ending in rejected/, and the transports: a real HTTP proxy
(tinyproxy), a real SOCKS5 proxy (danted) and HTTPS through a real nginx
TLS reverse proxy with --collector-ca and --collector-pin."""
import base64
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import collectorlib as cl
import pxtest


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class Daemon:
    """A helper server started in the foreground in its own session, so
    it and every child it forks are stopped together by process group."""

    def __init__(self, name, argv, workdir, port):
        self.name, self.port = name, port
        self.log = os.path.join(workdir, f"{name}.out")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15 * cl.SLOW
        while not cl.port_open(port):
            if self.proc.poll() is not None:
                raise AssertionError(f"{name} exited with {self.proc.returncode}: "
                                     + read(self.log, "rb").decode(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{name} does not listen on {port}")
            time.sleep(0.02)

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        # Children of the group that outlive the leader.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cl.wait_until(lambda: not cl.port_open(self.port), 10, f"{self.name} to close its port")


class UploadPath(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-upload-")
        cls.targets = ["www.example.test", "expired.example.test", "wronghost.example.test"]
        cls.lines = cl.measure_lines(*cls.targets)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)
        self.agent = cl.Agent(os.path.join(self.dir, "agent"))

    def collector(self, port=None, start=True, extra=()):
        c = cl.Collector(self.dir, port=port, extra=extra)
        self.addCleanup(self._stop, c)
        return c.start() if start else c

    def _stop(self, c):
        rc = c.stop()
        self.assertIn(rc, (0, None) if c.starts == 0 else (0,), c.log())

    def daemon(self, *args):
        d = Daemon(*args)
        self.addCleanup(d.stop)
        return d

    def upload(self, url, *extra, expect=0):
        p = pxtest.run(["upload", "--state-dir", self.agent.dir, "--collector", url] + list(extra))
        if expect is not None:
            self.assertEqual(p.returncode, expect, p.stderr)
        return p

    def assert_counts(self, pending, sent, rejected):
        st = self.agent.status()
        self.assertEqual((int(st["pending"]), int(st["sent"].split()[0]), int(st["rejected"])),
                         (pending, sent, rejected), st)
        self.assertEqual(self.agent.counts(), {"pending": pending, "sent": sent, "rejected": rejected})
        return st

    def fresh_lines(self, n, start=0):
        base = json.loads(self.lines[0])
        return [cl.variant(base, start + i) for i in range(n)]

    # ---- 1 ---------------------------------------------------------------

    def test_collector_down_then_upload_delivers_exactly_once(self):
        port = cl.free_port()
        url = f"http://127.0.0.1:{port}"
        p = pxtest.run(["measure"] + pxtest.world_args("--state-dir", self.agent.dir,
                                                        "--collector", url) + self.targets)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.splitlines()
        self.assertEqual(len(out), 3)
        for line in out:
            cl.check(cl.MEASUREMENT, json.loads(line), "measurement")
        st = self.assert_counts(3, 0, 0)
        self.assertIn("last error", st, st)
        self.assertTrue(st["last error"], st)
        self.assertIn("pending 3", p.stderr)
        # The spool holds exactly the measurements written, each one entry
        # (line and signature in one file) that parallax verify and OpenSSH
        # accept.
        pairs = self.agent.pairs()
        self.assertEqual(sorted(pairs), sorted(line.encode() for line in out))
        files = sorted(glob.glob(os.path.join(self.agent.pending, "*.jsonl")))
        self.assertEqual(len(files), 3, os.listdir(self.agent.pending))
        v = pxtest.run(["verify"] + files)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn("3 verified, 0 failed", v.stdout)
        signers = f'{self.agent.key_id} namespaces="parallax-measurement-v1" {self.agent.pub}\n'
        for content, sig in pairs.items():
            r = cl.ssh_verify(self.dir, signers, self.agent.key_id, content, sig)
            self.assertEqual(r.returncode, 0, r.stderr)
        # Still down: upload fails, keeps them pending, exit status 1.
        p = self.upload(url, expect=1)
        self.assert_counts(3, 0, 0)

        c = self.collector(port=port)
        self.upload(url)
        self.assert_counts(0, 3, 0)
        stored = c.list_all()
        self.assertEqual(len(stored), 3)
        receipts = {}
        for r in glob.glob(os.path.join(self.agent.dir, "spool", "sent", "*.receipt")):
            receipts[r] = json.loads(read(r))["measurement_uid"]
        self.assertEqual(sorted(receipts.values()), sorted(x["measurement_uid"] for x in stored))
        sent = self.agent.entries("sent")
        for r, uid in receipts.items():
            st_, _, body = c.raw(uid)
            self.assertEqual((st_, body), (200, sent[os.path.basename(r)[:-len(".receipt")]][0]))
        # Again: nothing new is sent.
        p = self.upload(url)
        self.assertEqual(c.count(), 3)
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 3)
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())], 0)
        self.assert_counts(0, 3, 0)

    # ---- 2 ---------------------------------------------------------------

    def test_refused_measurement_goes_to_rejected(self):
        c = self.collector()
        self.agent.spool([self.lines[0], '{"hello":"not a measurement"}'])
        self.assert_counts(2, 0, 0)
        p = self.upload(c.url)
        self.assertIn("rejected 1", p.stderr)
        st = self.assert_counts(0, 1, 1)
        reasons = glob.glob(os.path.join(self.agent.dir, "spool", "rejected", "*.reason"))
        self.assertEqual(len(reasons), 1)
        reason = json.loads(read(reasons[0]))
        self.assertEqual(reason["http_status"], 422, reason)
        self.assertIn("invalid_measurement", reason["reason"])
        content, sig = self.agent.entries("rejected")[os.path.basename(reasons[0])[:-len(".reason")]]
        self.assertEqual(content, b'{"hello":"not a measurement"}')
        self.assertIn("BEGIN SSH SIGNATURE", sig)
        self.assertIn("422", st.get("last error", "") + read(reasons[0]))
        self.assertEqual(c.count(), 1)
        # Nothing pending: upload succeeds and sends nothing.
        self.upload(c.url)
        self.assert_counts(0, 1, 1)
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_rejected_total",
                            (("reason", "invalid_measurement"),))], 1)
        self.assertEqual(m[("parallax_collector_measurements_accepted_total", ())], 1)

    def test_wrong_collector_path_does_not_reject_measurements(self):
        # A 404 from a URL that is not the submit endpoint (a mistyped
        # --collector path) says nothing about the measurements: they must
        # stay pending and reach the collector once the URL is right, not be
        # moved to rejected/ where nothing ever sends them again.
        c = self.collector()
        self.agent.spool(self.lines[:2])
        p = self.upload(c.url + "/collector", expect=None)
        counts = self.agent.counts()
        self.assertEqual(counts, {"pending": 2, "sent": 0, "rejected": 0},
                         f"exit {p.returncode}: {p.stderr}")
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.upload(c.url)
        self.assert_counts(0, 2, 0)
        self.assertEqual(c.count(), 2)

    # ---- 3 ---------------------------------------------------------------

    def test_submit_names_the_bad_line(self):
        c = self.collector()
        path = write(os.path.join(self.dir, "in.jsonl"),
                     self.lines[0] + "\n\nthis is not JSON\n" + self.lines[1] + "\n[1,2]\n")
        p = pxtest.run(["submit", "--state-dir", self.agent.dir, "--collector", c.url, path])
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"{path}:3", p.stderr)
        self.assertIn(f"{path}:5", p.stderr)
        for good in (1, 2, 4):
            self.assertNotIn(f"{path}:{good}:", p.stderr)
        stored = {c.raw(r["measurement_uid"])[2] for r in c.list_all()}
        self.assertEqual(stored, {self.lines[0].encode(), self.lines[1].encode()})
        self.assert_counts(0, 2, 0)

    # ---- 4 ---------------------------------------------------------------

    def test_upload_through_http_proxy(self):
        if shutil.which("tinyproxy") is None:
            self.skipTest("tinyproxy is not installed")
        c = self.collector()
        d = tempfile.mkdtemp(dir=self.dir)
        port = cl.free_port()
        log = os.path.join(d, "tinyproxy.log")
        conf = write(os.path.join(d, "tinyproxy.conf"), "\n".join([
            f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1",
            f'LogFile "{log}"', "LogLevel Connect", f'PidFile "{d}/tinyproxy.pid"',
            "MaxClients 20", "DisableViaHeader Yes", ""]))
        proxy = self.daemon("tinyproxy", ["tinyproxy", "-d", "-c", conf], d, port)
        self.agent.spool(self.lines)
        self.upload(c.url, "--proxy", f"http://127.0.0.1:{port}")
        self.assert_counts(0, 3, 0)
        self.assertEqual(c.count(), 3)
        requests = [l for l in read(log).splitlines()
                    if f"POST {c.url}/api/v1/submit_measurement" in l]
        self.assertGreaterEqual(len(requests), 3, read(log)[-2000:])
        # Proxy gone, collector up: the upload fails and stays pending.
        proxy.stop()
        self.agent.spool(self.fresh_lines(1))
        p = self.upload(c.url, "--proxy", f"http://127.0.0.1:{port}", expect=1)
        self.assert_counts(1, 3, 0)
        self.assertEqual(c.count(), 3)
        self.upload(c.url)
        self.assert_counts(0, 4, 0)

    def test_upload_through_socks5_proxy(self):
        if shutil.which("danted") is None and not os.path.exists("/usr/sbin/danted"):
            self.skipTest("danted (dante-server) is not installed")
        c = self.collector()
        d = tempfile.mkdtemp(dir=self.dir)
        port = cl.free_port()
        log = os.path.join(d, "danted.log")
        root = os.geteuid() == 0
        users = "user.privileged: root\nuser.unprivileged: nobody\n" if root else ""
        conf = write(os.path.join(d, "danted.conf"), f"""\
logoutput: {log}
internal: 127.0.0.1 port = {port}
external: lo
socksmethod: none
clientmethod: none
{users}client pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    log: connect disconnect error
}}
socks pass {{
    from: 127.0.0.0/8 to: 127.0.0.0/8
    command: connect
    log: connect disconnect error
}}
""")
        argv = [shutil.which("danted") or "/usr/sbin/danted", "-f", conf,
                "-p", os.path.join(d, "danted.pid")]
        try:
            proxy = self.daemon("danted", argv, d, port)
        except AssertionError:
            if root:
                raise
            self.skipTest("danted does not run as an unprivileged user here")
        self.agent.spool(self.lines)
        self.upload(c.url, "--proxy", f"socks5h://127.0.0.1:{port}")
        self.assert_counts(0, 3, 0)
        self.assertEqual(c.count(), 3)
        # danted logs the relayed connection to the collector's port.
        cl.wait_until(lambda: f"127.0.0.1.{c.port}" in read(log), 10, "danted to log the connection")
        proxy.stop()
        self.agent.spool(self.fresh_lines(1))
        self.upload(c.url, "--proxy", f"socks5h://127.0.0.1:{port}", expect=1)
        self.assert_counts(1, 3, 0)
        self.assertEqual(c.count(), 3)

    # ---- 5 ---------------------------------------------------------------

    def _pki(self, d):
        def ossl(*args):
            subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=parallax test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        write(os.path.join(d, "ext.cnf"), "basicConstraints=CA:FALSE\n"
              "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
        # A second, unrelated key: the wrong pin.
        ossl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key")

        def pin(args):
            pub = subprocess.run(["openssl"] + args, check=True, capture_output=True, cwd=d).stdout
            der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                                 check=True, capture_output=True).stdout
            return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()
        return (os.path.join(d, "ca.pem"), pin(["x509", "-in", "server.pem", "-pubkey", "-noout"]),
                pin(["pkey", "-in", "other.key", "-pubout"]))

    def nginx(self, d, upstream, tls, location=""):
        """nginx in the foreground as a reverse proxy for 127.0.0.1:upstream
        on a free port (TLS with d/server.pem when tls), adding
        X-Forwarded-For. Returns the port."""
        if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
            self.skipTest("nginx is not installed")
        port = cl.free_port()
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        listen = (f"listen 127.0.0.1:{port} ssl;\n        ssl_certificate {d}/server.pem;\n"
                  f"        ssl_certificate_key {d}/server.key;" if tls else f"listen 127.0.0.1:{port};")
        conf = write(os.path.join(d, "nginx.conf"), f"""\
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        {listen}
        client_max_body_size 2m;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto {"https" if tls else "http"};
            {location}
        }}
    }}
}}
""")
        self.daemon("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", conf,
                              "-e", f"{d}/error.log"], d, port)
        return port

    def test_https_through_nginx(self):
        c = self.collector(extra=["--trusted-proxy", "127.0.0.1/32"])
        d = tempfile.mkdtemp(dir=self.dir)
        ca, good_pin, wrong_pin = self._pki(d)
        port = self.nginx(d, c.port, tls=True)
        url = f"https://127.0.0.1:{port}"

        self.agent.spool(self.lines[:1])
        self.upload(url, "--collector-ca", ca)
        self.assert_counts(0, 1, 0)
        self.assertEqual(c.count(), 1)
        cl.wait_until(lambda: " 200 " in read(os.path.join(d, "access.log")), 5, "nginx access log")
        self.assertIn('"POST /api/v1/submit_measurement HTTP/', read(os.path.join(d, "access.log")))

        # Without our CA the server is not trusted: nothing sent.
        self.agent.spool(self.lines[1:2])
        p = self.upload(url, expect=1)
        self.assert_counts(1, 1, 0)
        self.assertIn("last error", self.agent.status())
        self.assertEqual(c.count(), 1)
        # Pinned to the server's key: sent. Pinned to another key: refused.
        self.upload(url, "--collector-ca", ca, "--collector-pin", good_pin)
        self.assert_counts(0, 2, 0)
        self.agent.spool(self.lines[2:3])
        p = self.upload(url, "--collector-ca", ca, "--collector-pin", wrong_pin, expect=1)
        self.assert_counts(1, 2, 0)
        self.assertEqual(c.count(), 2)
        self.upload(url, "--collector-ca", ca, "--collector-pin", good_pin)
        self.assert_counts(0, 3, 0)
        self.assertEqual(c.count(), 3)
        # The collector down behind a running nginx: a 502 is not a verdict
        # on the measurement, it stays pending.
        self.assertEqual(c.stop(), 0)
        self.agent.spool(self.fresh_lines(1, start=40))
        self.upload(url, "--collector-ca", ca, expect=1)
        self.assert_counts(1, 3, 0)
        self.assertIn(" 502 ", read(os.path.join(d, "access.log")))
        c.start()
        self.upload(url, "--collector-ca", ca)
        self.assert_counts(0, 4, 0)
        self.assertEqual(c.count(), 4)

        # The client address nginx forwards is never stored.
        content, sig = self.agent.sign(self.fresh_lines(1, start=50))[0]
        ctx = ssl.create_default_context(cafile=ca)
        req = urllib.request.Request(url + "/api/v1/submit_measurement",
                                     data=json.dumps(cl.submit_body(content, sig)).encode(),
                                     headers={"Content-Type": "application/json",
                                              "X-Forwarded-For": "198.51.100.77"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx))
        with opener.open(req, timeout=30) as resp:
            self.assertEqual(resp.status, 200)
            cl.check(cl.SUBMIT_RESPONSE, json.loads(resp.read()))
        self.assertEqual(c.count(), 5)
        self.assertEqual(c.stop(), 0)
        for f in glob.glob(c.db + "*"):
            self.assertNotIn(b"198.51.100.77", read(f, "rb"), f)
        c.start()
        # Read through nginx too: measurement_url names the address the
        # researcher used (the Host nginx passes on).
        with opener.open(url + "/api/v1/measurements", timeout=30) as resp:
            page = cl.check(cl.LIST, json.loads(resp.read()), "measurements list via nginx")
        self.assertEqual(page["metadata"]["count"], 5)
        for r in page["results"]:
            self.assertRegex(r["measurement_url"], rf"^https?://127\.0\.0\.1:{port}/api/v1/raw_measurement\?")

    def test_per_ip_limit_behind_trusted_proxy(self):
        # docs/api.md: with --trusted-proxy the client address comes from
        # X-Forwarded-For and is what --per-ip-limit counts. A client that
        # holds its whole allowance through nginx must not lock out another
        # client behind the same nginx.
        c = self.collector(extra=["--trusted-proxy", "127.0.0.1/32", "--per-ip-limit", "2",
                                  "--timeout", "60"])
        d = tempfile.mkdtemp(dir=self.dir)
        port = self.nginx(d, c.port, tls=False,
                          location="proxy_request_buffering off; proxy_http_version 1.1;")
        polls = [0]

        def requests_total():
            # Read from another loopback source address, so this reader is
            # not one of 127.0.0.1's connections.
            polls[0] += 1
            with socket.create_connection(("127.0.0.1", c.port), timeout=10,
                                          source_address=("127.0.0.2", 0)) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            return cl.parse_metrics(body.decode())[("parallax_collector_requests_total", ())]

        base = requests_total() - polls[0]
        held = []
        self.addCleanup(lambda: [h.close() for h in held])
        for _ in range(2):
            # Client A (198.51.100.1): a submission whose body never comes.
            h = socket.create_connection(("127.0.0.1", port), timeout=10)
            h.sendall(b"POST /api/v1/submit_measurement HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"X-Forwarded-For: 198.51.100.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            held.append(h)
        cl.wait_until(lambda: requests_total() - polls[0] >= base + 2, 10,
                      "client A's two requests to reach the collector")
        # A third request of client A is over its allowance...
        st, _, _ = cl.get(f"http://127.0.0.1:{port}/healthz",
                          headers={"X-Forwarded-For": "198.51.100.1"})
        self.assertNotEqual(st, 200, "client A got more than --per-ip-limit connections")
        # ...client B is another address and is served.
        st, headers, body = cl.get(f"http://127.0.0.1:{port}/healthz",
                                   headers={"X-Forwarded-For": "198.51.100.2"})
        self.assertEqual(st, 200, f"client B was refused while client A held its connections "
                                  f"(nginx says {st}: the limit counted nginx, not the client)")
        self.assertEqual(json.loads(body), {"status": "ok"})


if __name__ == "__main__":
    pxtest.main()
