"""Shared helpers of the command-line tests: run the real parallax binary
against the local test world (tests/peers) and check what it writes."""
import base64
import json
import os
import subprocess
import sys
import unittest

import jsonschema

SOURCE = os.environ.get("PX_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PX_BIN", os.path.join(SOURCE, "build", "parallax"))
PEERS_DIR = os.environ.get("PX_PEERS_DIR", "")
SANITIZED = os.environ.get("PX_SANITIZE") == "1"


def _env_file(path):
    values = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    values[k] = v
    except FileNotFoundError:
        pass
    return values


PEER = _env_file(os.environ.get("PX_PEERS_ENV", os.path.join(SOURCE, "tests", "peers", "peers.env")))
STATE = _env_file(os.path.join(PEERS_DIR, "state.env")) if PEERS_DIR else {}
CA = os.path.join(PEERS_DIR, "pki", "ca.pem")
DNS = f'{PEER.get("PX_DNS_GOOD")}:{PEER.get("PX_DNS_PORT")}'
BAD_DNS = f'{PEER.get("PX_DNS_BAD")}:{PEER.get("PX_DNS_PORT")}'
TLS_PORT = PEER.get("PX_TLS_PORT", "8443")


def require_peers():
    """Exit 77 (ctest: skipped) when the fixture is not up: never pass
    silently without the peers."""
    if STATE.get("PEERS_READY") != "1":
        print("SKIPPED: the local test world is not up (run through ctest)", file=sys.stderr)
        sys.exit(77)


_SCHEMAS = {}


def _resolving(schema):
    """How a validator finds the other schemas of schemas/ by their $id,
    so that one may $ref another (ooni-export-line.schema.json refers to
    the measurement's): locally, nothing is fetched. jsonschema 4.18 and
    later take a referencing registry; Debian 12's 4.10 a RefResolver."""
    import glob
    if not _SCHEMAS:
        for path in sorted(glob.glob(os.path.join(SOURCE, "schemas", "*.schema.json"))):
            with open(path) as f:
                doc = json.load(f)
            _SCHEMAS[doc["$id"]] = doc
    try:
        from referencing import Registry, Resource
    except ImportError:
        return {"resolver": jsonschema.RefResolver.from_schema(schema, store=dict(_SCHEMAS))}
    return {"registry": Registry().with_resources(
        (uri, Resource.from_contents(doc)) for uri, doc in _SCHEMAS.items())}


def load_schema(name):
    with open(os.path.join(SOURCE, "schemas", name)) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        **_resolving(schema))


MEASUREMENT = load_schema("measurement.schema.json")
RUN_RECORD = load_schema("run-record.schema.json")


def run(args, stdin=None, env=None, timeout=120):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([BIN] + list(args), input=stdin, capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def is_compact(text):
    """No whitespace outside JSON strings: one line, nothing to strip."""
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in " \t\r\n":
            return False
    return True


def measure(args, timeout=120):
    """Runs `parallax measure` with args; returns the measurements after
    checking the exit status, that every line is one compact JSON object
    and that each validates against the schema."""
    p = run(["measure"] + list(args), timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {p.stderr}")
    out = []
    for line in p.stdout.splitlines():
        m = json.loads(line)
        assert is_compact(line), line[:200]
        errors = sorted(MEASUREMENT.iter_errors(m), key=lambda e: e.path)
        if errors:
            raise AssertionError("schema: " + "; ".join(
                f'{"/".join(map(str, e.path))}: {e.message}' for e in errors[:5]))
        out.append(m)
    return out


def world_args(*extra, timeout_ms=2000):
    # dnsmasq answers once, at once: a short late-reply window keeps the
    # suite quick (test_cli_measure checks the default and the window).
    return ["--resolver", DNS, "--no-system-resolver", "--port", TLS_PORT,
            "--ca-file", CA, "--allow-nonpublic-addresses", "--timeout",
            str(timeout_ms), "--dns-late-window", "200"] + list(extra)


def by_input(measurements):
    return {m["input"]: m for m in measurements}


def openssl(*args, data=None):
    p = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, check=True)
    return p.stdout


def fingerprints(pem_path):
    """(sha256, spki_sha256) of a certificate, computed by the openssl
    command, independently of parallax."""
    text = openssl("x509", "-in", pem_path, "-noout", "-fingerprint", "-sha256").decode()
    sha = text.strip().split("=", 1)[1].replace(":", "").lower()
    pub = openssl("x509", "-in", pem_path, "-noout", "-pubkey")
    der = openssl("pkey", "-pubin", "-outform", "DER", data=pub)
    spki = openssl("dgst", "-sha256", "-r", data=der).decode().split()[0]
    return sha, spki


def der_of(item):
    return base64.b64decode(item["data"], validate=True)


class TestCase(unittest.TestCase):
    maxDiff = None


def main():
    require_peers()
    unittest.main(verbosity=2)
