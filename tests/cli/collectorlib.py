"""Helpers of the collector tests: a real parallax-collector on a free
loopback port with its own database, plain-urllib HTTP, and signed
measurements made by the agent (`parallax submit`) or by OpenSSH
(`ssh-keygen -Y sign`). Every JSON document the collector emits is
checked against its schema in schemas/ by the helpers that fetch it.

The store is SQLite unless PX_TEST_STORE=postgresql: then every collector
gets a fresh schema of its own in the test cluster of tests/pg/pg.sh
(PX_PG_DIR names it; ctest starts it once per run)."""
import base64
import copy
import datetime
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pxtest

COLLECTOR_BIN = os.environ.get("PX_COLLECTOR_BIN",
                               os.path.join(pxtest.SOURCE, "build", "parallax-collector"))
NAMESPACE = "parallax-measurement-v1"

SUBMIT_REQUEST = pxtest.load_schema("submit-request.schema.json")
SUBMIT_RESPONSE = pxtest.load_schema("submit-response.schema.json")
ERROR = pxtest.load_schema("error.schema.json")
LIST = pxtest.load_schema("measurements-list.schema.json")
EXPORT_LINE = pxtest.load_schema("export-line.schema.json")
MEASUREMENT = pxtest.MEASUREMENT

# Sanitizer builds are slower: deadlines scale, assertions do not.
SLOW = 4 if pxtest.SANITIZED else 1


def check(validator, doc, what="document"):
    """Raises AssertionError naming every schema violation of doc."""
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(f"{what} does not match its schema: " + "; ".join(
            f'{"/".join(map(str, e.path)) or "(top)"}: {e.message}' for e in errors[:5])
            + f"\n{json.dumps(doc)[:600]}")
    return doc


def free_port():
    """A TCP port nothing listens on right now (bound once to 0 and let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout * SLOW
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.0f} s waiting for {what}")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- HTTP -------------------------------------------------------------------

# No proxy from the environment: these requests go to 127.0.0.1 only.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(method, url, body=None, headers=None, timeout=30):
    """(status, headers as a lower-case dict, body bytes); HTTP errors are
    answers too, not exceptions."""
    assert url.startswith("http://127.0.0.1:"), url
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/json"})
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def get(url, **kw):
    return request("GET", url, **kw)


def post(url, body, **kw):
    return request("POST", url, body=body, **kw)


def json_body(status, headers, body, validator, what):
    """Parses a JSON answer: content type, one line ending in a newline,
    schema."""
    assert headers.get("content-type", "").startswith("application/json"), (what, headers)
    doc = json.loads(body)
    return check(validator, doc, what)


def error_body(answer, status, code):
    """Checks an error answer: the status, the error schema and the code."""
    st, headers, body = answer
    if st != status:
        raise AssertionError(f"expected HTTP {status} {code}, got {st}: {body[:300]!r}")
    doc = json_body(st, headers, body, ERROR, f"HTTP {st} error")
    if doc["error"] != code:
        raise AssertionError(f"expected error {code}, got {doc}")
    return doc


# ---- the database -------------------------------------------------------------

STORE = os.environ.get("PX_TEST_STORE", "sqlite")
assert STORE in ("sqlite", "postgresql"), STORE
PG = pxtest._env_file(os.path.join(os.environ.get("PX_PG_DIR", ""), "pg.env")) \
    if os.environ.get("PX_PG_DIR") else {}


def require_store():
    """Exit 77 (ctest: skipped) when PX_TEST_STORE=postgresql but the test
    cluster is not up."""
    if STORE == "postgresql" and PG.get("PX_PG_READY") != "1":
        print("SKIPPED: the PostgreSQL test cluster is not up (run through ctest)",
              file=sys.stderr)
        sys.exit(77)


def psql(sql, url=None, check=True):
    """Runs sql through psql as the test role; returns the rows as tuples of
    strings (unaligned, '|' between fields)."""
    p = subprocess.run([PG.get("PX_PG_PSQL", "psql"), "-X", "-q", "-At", "-F", "|",
                        "-v", "ON_ERROR_STOP=1", "-d", url or PG["PX_PG_URL"], "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"psql: {sql}: {p.stderr}")
    return [tuple(line.split("|")) for line in p.stdout.splitlines()]


_schemas = [0]


class Database:
    """A collector's database: a file DIR/collector.sqlite, or a schema of
    its own in the PostgreSQL test cluster. url is what --db takes."""

    def __init__(self, workdir, store=None, path=None):
        self.store = store or STORE
        if self.store == "sqlite":
            self.path = path or os.path.join(workdir, "collector.sqlite")
            self.url = f"sqlite:{self.path}"
            self.schema = None
            return
        require_store()
        self.path = None
        _schemas[0] += 1
        self.schema = f"t{os.getpid()}_{_schemas[0]}_{os.urandom(3).hex()}"
        psql(f"CREATE SCHEMA {self.schema}")
        # libpq takes session options in the URL: the collector's tables
        # and partitions go into this schema.
        self.url = f"{PG['PX_PG_URL']}?options=-csearch_path%3D{self.schema}"

    @property
    def pg(self):
        return self.store == "postgresql"

    def sql(self, query):
        """Rows of query (tuples of strings), read by the sqlite3 command
        (the collector's WAL is honoured) or psql."""
        if self.pg:
            return psql(f"SET search_path = {self.schema}; {query}")
        p = subprocess.run(["sqlite3", "-separator", "|", self.path, query],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return [tuple(line.split("|")) for line in p.stdout.splitlines()]

    def count(self):
        return int(self.sql("SELECT count(*) FROM measurements")[0][0])

    def integrity(self):
        """(exit status, "ok" or what is wrong, stderr). SQLite: PRAGMA
        integrity_check. PostgreSQL (whose files a collector crash cannot
        hurt): the store's own invariants, every measurement with its uid
        row and no uid row without its measurement."""
        if not self.pg:
            p = subprocess.run(["sqlite3", self.path, "PRAGMA integrity_check;"],
                               capture_output=True, text=True, timeout=60)
            return p.returncode, p.stdout.strip(), p.stderr.strip()
        rows = self.sql(
            "SELECT (SELECT count(*) FROM measurements), (SELECT count(*) FROM measurement_uids), "
            "(SELECT count(*) FROM measurement_uids u JOIN measurements m ON "
            "m.measurement_start_time = u.measurement_start_time AND m.id = u.measurement_id "
            "AND m.uid = u.uid)")
        m, u, joined = rows[0]
        return 0, "ok" if m == u == joined else f"measurements {m}, uids {u}, matching {joined}", ""

    def raw_bytes(self):
        """{name: bytes} of everything the database keeps: the SQLite file
        and its -wal, -shm, -journal; for PostgreSQL, pg_dump of the
        collector's schema."""
        if not self.pg:
            out = {}
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(self.path + suffix):
                    with open(self.path + suffix, "rb") as f:
                        out[os.path.basename(self.path + suffix)] = f.read()
            return out
        dump = os.path.join(os.path.dirname(PG["PX_PG_PSQL"]), "pg_dump")
        p = subprocess.run([dump, "-d", PG["PX_PG_URL"], "-n", self.schema],
                           capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr
        # The dump shows bytea as hex: the contents once more, as text.
        contents = "\n".join(r[0] for r in self.sql(
            "SELECT convert_from(content, 'UTF8') FROM measurements")).encode()
        return {f"pg_dump -n {self.schema}": p.stdout, "measurements.content": contents}


# ---- the collector ----------------------------------------------------------

class Collector:
    """One parallax-collector process on 127.0.0.1:<free port>, database
    DIR/collector.sqlite (db: another path) or, with PX_TEST_STORE=postgresql,
    a schema of its own (database: a Database to share, e.g. between two
    nodes). start/stop/kill9/restart keep the port and the database."""

    def __init__(self, workdir, extra=(), port=None, db=None, database=None, env=None):
        self.workdir = workdir
        self.env = env
        self.extra = list(extra)
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.database = database or Database(workdir, path=db)
        self.db = self.database.path  # the SQLite file (None for PostgreSQL)
        self.proc = None
        self.returncode = None
        self.log_path = os.path.join(workdir, "collector.log")
        self.starts = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def api(self, path, **params):
        q = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")
        return f"{self.url}{path}" + (f"?{q}" if q else "")

    def key_args(self):
        """On PostgreSQL the tree-head key would go to the state directory:
        the test's own directory instead, as it is beside a SQLite file."""
        if self.database.pg and "--sth-key" not in self.extra and "--state-dir" not in self.extra:
            return ["--sth-key", os.path.join(self.workdir, "sth-key")]
        return []

    def start(self, timeout=15):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"---- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [COLLECTOR_BIN, "--listen", f"127.0.0.1:{self.port}", "--db", self.database.url]
            + self.key_args() + self.extra, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env=dict(os.environ, **self.env) if self.env else None)
        log.close()
        deadline = time.monotonic() + timeout * SLOW
        while True:
            if self.proc.poll() is not None:
                if (not self.fixed_port and self.starts == 1 and
                        "cannot listen" in self.log().rsplit("---- start", 1)[-1]):
                    # Someone took the free port meanwhile: take another.
                    self.port = free_port()
                    self.starts = 0
                    return self.start(timeout)
                raise AssertionError(f"parallax-collector exited with {self.proc.returncode}:\n"
                                     + self.log())
            try:
                st, _, body = get(self.url + "/healthz", timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError("parallax-collector did not become healthy:\n" + self.log())
            time.sleep(0.02)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM and wait; returns the exit status (None if it had to be
        killed)."""
        if self.proc is None:
            return self.returncode
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.returncode = None
                return None
        self.returncode = p.returncode
        return p.returncode

    def kill9(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        self.returncode = -9

    def restart(self):
        self.stop()
        return self.start()

    # -- API shortcuts --

    def healthz(self):
        st, headers, body = get(self.url + "/healthz")
        return st, (json.loads(body) if st == 200 else body)

    def submit(self, body, valid_request=True):
        """POSTs a submit body (a dict, or bytes as they are); returns
        (status, parsed JSON answer), the answer checked against the
        submit-response or error schema. A dict is first checked against
        the submit-request schema unless valid_request is false."""
        if isinstance(body, dict):
            if valid_request:
                check(SUBMIT_REQUEST, body, "submit request")
            data = json.dumps(body, ensure_ascii=False).encode()
        else:
            data = body
        st, headers, raw = post(self.url + "/api/v1/submit_measurement", data,
                                headers={"Content-Type": "application/json"})
        doc = json_body(st, headers, raw, SUBMIT_RESPONSE if st == 200 else ERROR,
                        f"submit answer (HTTP {st})")
        return st, doc

    def list_page(self, raw_query=None, **params):
        url = self.api("/api/v1/measurements", **params)
        if raw_query is not None:
            url = f"{self.url}/api/v1/measurements?{raw_query}"
        st, headers, body = get(url)
        if st != 200:
            raise AssertionError(f"GET {url}: HTTP {st}: {body[:300]!r}")
        return json_body(st, headers, body, LIST, "measurements list")

    def list_all(self, limit=1000, **params):
        """Every result of a filtered listing, walking next_cursor; checks
        that pages never overlap and that the last page says null."""
        out, cursor, seen = [], None, set()
        for _ in range(100000):
            page = self.list_page(limit=limit, **params, **({"cursor": cursor} if cursor else {}))
            assert page["metadata"]["count"] == len(page["results"]), page["metadata"]
            assert page["metadata"]["limit"] == limit, page["metadata"]
            for r in page["results"]:
                assert r["measurement_uid"] not in seen, f"uid twice: {r['measurement_uid']}"
                seen.add(r["measurement_uid"])
            out.extend(page["results"])
            cursor = page["metadata"]["next_cursor"]
            if cursor is None:
                return out
            assert page["results"], "an empty page with a next_cursor"
        raise AssertionError("pagination does not end")

    def count(self, **params):
        return len(self.list_all(**params))

    def export(self, raw_query=None, **params):
        """The export lines, each checked against export-line.schema.json."""
        url = self.api("/api/v1/export.jsonl", **params)
        if raw_query is not None:
            url = f"{self.url}/api/v1/export.jsonl?{raw_query}"
        st, headers, body = get(url)
        assert st == 200, (st, body[:300])
        assert headers.get("content-type", "").startswith("application/x-ndjson"), headers
        assert body == b"" or body.endswith(b"\n"), body[-100:]
        lines = body.decode("utf-8").splitlines()
        return [check(EXPORT_LINE, json.loads(line), "export line") for line in lines], body

    def raw(self, uid):
        return get(self.api("/api/v1/raw_measurement", measurement_uid=uid))

    def signature(self, uid):
        return get(self.api("/api/v1/measurement_signature", measurement_uid=uid))

    def allowed_signers(self):
        st, headers, body = get(self.url + "/api/v1/allowed_signers")
        assert st == 200, (st, body)
        assert headers.get("content-type", "").startswith("text/plain"), headers
        return body.decode()

    def metrics(self):
        st, headers, body = get(self.url + "/metrics")
        assert st == 200, (st, body)
        assert headers.get("content-type", "").startswith("text/plain"), headers
        return parse_metrics(body.decode())

    def accepted(self):
        return self.metrics().get(("parallax_collector_measurements_accepted_total", ()), 0)

    def db_count(self):
        """Rows in the database, read beside the collector (sqlite3, psql)."""
        return self.database.count()

    def integrity(self):
        return self.database.integrity()


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([-+]?(?:[0-9.eE+-]+|Inf|NaN))$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> {(name, ((label, value), ...)): float}.
    Fails on a line that is not a comment, a blank or a sample, and on a
    sample of a metric without # TYPE."""
    out, typed = {}, set()
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                typed.add(parts[2])
            continue
        m = _METRIC.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels = m.group(1), ()
        if m.group(3):
            labels = tuple(sorted(_LABEL.findall(m.group(3))))
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert name in typed or base in typed or re.sub(r"_(bucket|sum|count)$", "", name) in typed, \
            f"sample without # TYPE: {line}"
        out[(name, labels)] = float(m.group(4))
    return out


# ---- measurements -----------------------------------------------------------

def compact(m):
    return json.dumps(m, separators=(",", ":"), ensure_ascii=False)


def measure_lines(*targets, extra=()):
    """Runs `parallax measure` against the test world; returns the exact
    output lines (str, no newline), each validated against the measurement
    schema."""
    p = pxtest.run(["measure"] + pxtest.world_args(*extra) + list(targets))
    if p.returncode != 0:
        raise AssertionError(f"parallax measure: exit {p.returncode}: {p.stderr}")
    lines = p.stdout.split("\n")
    assert lines[-1] == "", "output does not end in a newline"
    lines = lines[:-1]
    assert len(lines) == len(targets), (len(lines), targets)
    for line in lines:
        check(MEASUREMENT, json.loads(line), "measurement")
    return lines


def variant(base, i, start=None, cc=None, asn=None, input=None, step=61):
    """A distinct, schema-valid measurement derived from base (a dict): its
    own measurement_start_time (start + i*step seconds), country, network
    and input. Returns the compact JSON text."""
    m = copy.deepcopy(base)
    start = start or datetime.datetime(2014, 10, 20, 12, 0, 0)
    t = start + datetime.timedelta(seconds=i * step)
    m["measurement_start_time"] = t.strftime("%Y-%m-%d %H:%M:%S")
    m["test_start_time"] = m["measurement_start_time"]
    if cc is not None:
        m["probe_cc"] = cc
    if asn is not None:
        m["probe_asn"] = asn
    if input is not None:
        m["input"] = input
    num = m["probe_asn"][2:]
    m["report_id"] = f'{t.strftime("%Y%m%dT%H%M%SZ")}_tlscertconsistency_{m["probe_cc"]}_{num}_v{i:06d}'
    check(MEASUREMENT, m, "variant")
    return compact(m)


def submit_body(content, signature):
    if isinstance(content, bytes):
        content = content.decode("utf-8")
    return {"format": "json", "content": content, "signature": signature}


def key_id_of_pub(pub_line):
    """The OpenSSH SHA256: fingerprint of an ssh-ed25519 public key line."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def spool_entries(d):
    """{NAME: (content bytes, signature text)} of one spool directory (see
    Agent.entries); a half pair of an older version is not an entry."""
    out = {}
    if not os.path.isdir(d):
        return out
    for f in sorted(os.listdir(d)):
        path = os.path.join(d, f)
        if f.startswith("."):
            continue
        if f.endswith(".jsonl"):
            with open(path, encoding="utf-8") as fh:
                e = json.loads(fh.read())
            out[f[:-len(".jsonl")]] = (e["content"].encode("utf-8"), e["signature"])
        elif f.endswith(".json") and os.path.exists(path + ".sig") and \
                f[:-len(".json")] not in out and not os.path.exists(path + "l"):
            with open(path, "rb") as fh:
                content = fh.read()
            with open(path + ".sig") as fh:
                out[f[:-len(".json")]] = (content, fh.read())
    return out


def agent_would_sign(line):
    """Whether the agent's signer signs line (agent/signer_policy.h): one
    line, one JSON object without duplicate members, software_name
    "parallax", test_name "tls_cert_consistency", probe_ip "127.0.0.1"."""
    if not line or "\n" in line or "\r" in line or len(line.encode()) > 8 << 20:
        return False

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate member")
        return dict(pairs)
    try:
        m = json.loads(line, object_pairs_hook=no_duplicates)
    except ValueError:
        return False
    return (isinstance(m, dict) and m.get("software_name") == "parallax"
            and m.get("test_name") == "tls_cert_consistency" and m.get("probe_ip") == "127.0.0.1")


class Agent:
    """An agent state directory: `parallax submit --state-dir D` signs and
    spools; sign() returns the spooled (content bytes, signature text)
    pairs and empties pending/ again.

    The agent signs only its own measurements. What it refuses (the
    hostile and malformed uploads the collector tests send) is signed with
    the agent's key by OpenSSH instead, `ssh-keygen -Y sign`, as an
    attacker who took the key would, and spooled by writing the entry
    beside the agent's."""

    def __init__(self, state_dir):
        self.dir = state_dir

    @property
    def pending(self):
        return os.path.join(self.dir, "spool", "pending")

    def openssh_key(self):
        """The agent's key (PKCS#8 PEM) as an OpenSSH private key file, for
        ssh-keygen; made once, beside the state directory."""
        path = os.path.join(os.path.dirname(os.path.abspath(self.dir)),
                            f".{os.path.basename(self.dir)}-openssh")
        if not os.path.exists(path):
            from cryptography.hazmat.primitives import serialization
            if not os.path.exists(os.path.join(self.dir, "parallax_ed25519")):
                self.spool([])  # submit with nothing to sign creates the key
            with open(os.path.join(self.dir, "parallax_ed25519"), "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            data = key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.OpenSSH,
                                     serialization.NoEncryption())
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.rename(path + ".tmp", path)
        return path

    def openssh_sign(self, lines):
        """[(content bytes, signature)] signed by ssh-keygen with the agent's key."""
        d = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(self.dir)))
        try:
            files = []
            for i, line in enumerate(lines):
                p = os.path.join(d, f"m{i}.json")
                with open(p, "wb") as f:
                    f.write(line.encode())
                files.append(p)
            key = self.openssh_key()
            for k in range(0, len(files), 200):
                subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE]
                               + files[k:k + 200], check=True, capture_output=True)
            out = []
            for p, line in zip(files, lines):
                with open(p + ".sig") as f:
                    out.append((line.encode(), f.read()))
            return out
        finally:
            shutil.rmtree(d)

    def spool(self, lines):
        """Signs and spools lines (str); returns nothing, leaves them pending."""
        ours = [l for l in lines if agent_would_sign(l)]
        others = [l for l in lines if not agent_would_sign(l)]
        path = os.path.join(os.path.dirname(self.dir), f".submit-{os.getpid()}-{time.monotonic_ns()}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for line in ours:
                f.write(line + "\n")
        p = pxtest.run(["submit", "--state-dir", self.dir, path])
        os.unlink(path)
        if p.returncode != 0:
            raise AssertionError(f"parallax submit: exit {p.returncode}: {p.stderr}")
        if others:
            os.makedirs(self.pending, exist_ok=True)
            for content, sig in self.openssh_sign(others):
                name = (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "_" +
                        hashlib.sha256(content).hexdigest()[:32])
                entry = json.dumps({"content": content.decode(), "signature": sig},
                                   separators=(",", ":"))
                with open(os.path.join(self.pending, f".py-{name}"), "w") as f:
                    f.write(entry + "\n")
                os.rename(os.path.join(self.pending, f".py-{name}"),
                          os.path.join(self.pending, name + ".jsonl"))
        return p

    def entries(self, sub="pending"):
        """{NAME: (content bytes, signature text)} of the spool's sub
        directory, read independently of parallax: NAME.jsonl entries (one
        {"content", "signature"} line) and the NAME.json + NAME.json.sig
        pairs of older versions."""
        return spool_entries(os.path.join(self.dir, "spool", sub))

    def pairs(self, sub="pending"):
        """{content bytes: signature text} of the spool's sub directory."""
        return dict(self.entries(sub).values())

    def sign(self, lines):
        """[(content bytes, signature)] in the order of lines."""
        self.spool(lines)
        pairs = self.pairs()
        for j in glob.glob(os.path.join(self.pending, "*.json*")):
            os.unlink(j)
        return [(line.encode(), pairs[line.encode()]) for line in lines]

    @property
    def pub(self):
        with open(os.path.join(self.dir, "parallax_ed25519.pub")) as f:
            return f.read().strip()

    @property
    def key_id(self):
        return key_id_of_pub(self.pub)

    def status(self):
        p = pxtest.run(["status", "--state-dir", self.dir])
        assert p.returncode == 0, p.stderr
        out = {}
        for line in p.stdout.splitlines():
            k, _, v = line.partition(": ")
            out[k] = v
        return out

    def counts(self):
        return {sub: len(self.entries(sub)) for sub in ("pending", "sent", "rejected")}


class SSHKey:
    """An Ed25519 key made by ssh-keygen; signs files with ssh-keygen -Y sign."""

    def __init__(self, directory, name="id_ed25519"):
        self.path = os.path.join(directory, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", self.path],
                       check=True, capture_output=True)
        with open(self.path + ".pub") as f:
            self.pub = f.read().strip()
        self.key_id = key_id_of_pub(self.pub)
        fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", self.path + ".pub"],
                            check=True, capture_output=True, text=True).stdout.split()[1]
        assert fp == self.key_id, (fp, self.key_id)

    def sign(self, contents, namespace=NAMESPACE):
        """[(content bytes, signature)] for contents (bytes or str), signed
        over their exact bytes."""
        d = tempfile.mkdtemp(dir=os.path.dirname(self.path))
        files = []
        for i, c in enumerate(contents):
            p = os.path.join(d, f"m{i}.json")
            with open(p, "wb") as f:
                f.write(c.encode() if isinstance(c, str) else c)
            files.append(p)
        out = []
        for k in range(0, len(files), 200):
            subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", self.path, "-n", namespace]
                           + files[k:k + 200], check=True, capture_output=True)
        for p, c in zip(files, contents):
            with open(p + ".sig") as f:
                out.append((c.encode() if isinstance(c, str) else c, f.read()))
        shutil.rmtree(d)
        return out


# ---- SSHSIG surgery (for the forgery tests) ---------------------------------

def sshsig_decode(armored):
    lines = armored.strip().splitlines()
    assert lines[0] == "-----BEGIN SSH SIGNATURE-----" and lines[-1] == "-----END SSH SIGNATURE-----"
    return base64.b64decode("".join(lines[1:-1]))


def sshsig_encode(blob):
    b64 = base64.b64encode(blob).decode()
    body = "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"


def _ssh_string(data, off):
    n = int.from_bytes(data[off:off + 4], "big")
    return data[off + 4:off + 4 + n], off + 4 + n


def sshsig_swap_key(armored, pub_line):
    """The same SSHSIG with its public key blob replaced by pub_line's."""
    blob = sshsig_decode(armored)
    assert blob[:6] == b"SSHSIG"
    off = 10  # magic + version
    old, end = _ssh_string(blob, off)
    new = base64.b64decode(pub_line.split()[1])
    return sshsig_encode(blob[:off] + len(new).to_bytes(4, "big") + new + blob[end:])


# ---- OpenSSH verification ---------------------------------------------------

def ssh_verify(workdir, allowed_signers_text, key_id, content, signature):
    """Runs the real `ssh-keygen -Y verify`; returns the CompletedProcess."""
    d = tempfile.mkdtemp(dir=workdir)
    try:
        a = os.path.join(d, "allowed_signers")
        s = os.path.join(d, "m.json.sig")
        with open(a, "w") as f:
            f.write(allowed_signers_text)
        with open(s, "w") as f:
            f.write(signature)
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", a, "-I", key_id,
                               "-n", NAMESPACE, "-s", s], input=content,
                              capture_output=True, timeout=30)
    finally:
        shutil.rmtree(d)


def ssh_check_novalidate(workdir, content, signature):
    d = tempfile.mkdtemp(dir=workdir)
    try:
        s = os.path.join(d, "m.json.sig")
        with open(s, "w") as f:
            f.write(signature)
        return subprocess.run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", s],
                              input=content, capture_output=True, timeout=30)
    finally:
        shutil.rmtree(d)


class ChunkedPost:
    """POSTs body with Transfer-Encoding: chunked through http.client,
    stopping early when the server answers (or closes) before the body is
    through. Returns (status or None, body bytes or None)."""

    @staticmethod
    def send(port, path, body, chunk=65536, content_length=False, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.putrequest("POST", path)
            conn.putheader("Content-Type", "application/json")
            if content_length:
                conn.putheader("Content-Length", str(len(body)))
            else:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            sock = conn.sock
            import select
            try:
                for off in range(0, len(body), chunk):
                    r, _, _ = select.select([sock], [], [], 0)
                    if r:
                        break  # the server has spoken (or closed): stop sending
                    piece = body[off:off + chunk]
                    if content_length:
                        sock.sendall(piece)
                    else:
                        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                else:
                    if not content_length:
                        sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.BadStatusLine):
                return None, None
        finally:
            conn.close()
