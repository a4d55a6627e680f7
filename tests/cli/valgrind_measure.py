"""The agent's main path under valgrind: a run against the test world that
touches DNS (UDP, TCP retry, failures) and TLS (valid, broken, hostile
peers) must be free of memory errors and leaks."""
import os
import shutil
import subprocess
import sys

import pxtest
from pxtest import PEER

pxtest.require_peers()
if shutil.which("valgrind") is None:
    print("SKIPPED: valgrind is not installed", file=sys.stderr)
    sys.exit(77)

args = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
        "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
        "--track-fds=no", pxtest.BIN, "measure",
        "--resolver", pxtest.DNS, "--resolver", pxtest.BAD_DNS, "--no-system-resolver",
        "--address", PEER["PX_TLS_MITM"], "--allow-nonpublic-addresses",
        "--port", pxtest.TLS_PORT, "--ca-file", pxtest.CA, "--timeout", "3000",
        "--parallel", "8",
        "www.example.test", "alias2.example.test", "expired.example.test", "reset.example.test",
        "closed.example.test", "garbage.example.test", "truncated.bad.test",
        "malformed.bad.test", "nx.example.test"]
p = subprocess.run(args, capture_output=True, text=True, timeout=500)
lines = p.stdout.splitlines()
print(p.stderr[-4000:], file=sys.stderr)
if p.returncode != 0:
    print(f"FAIL: valgrind exit {p.returncode}", file=sys.stderr)
    sys.exit(1)
if len(lines) != 9:
    print(f"FAIL: {len(lines)} measurements, expected 9", file=sys.stderr)
    sys.exit(1)
print("valgrind: clean, 9 measurements")
