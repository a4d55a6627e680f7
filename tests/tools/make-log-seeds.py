#!/usr/bin/env python3
"""make-log-seeds.py DIR -- the seed corpus of tests/fuzz/fuzz_log_proof.c.

The fuzz harness holds a 37-leaf log (leaf i: SHA-256 of "measurement i",
uid "uid-i", received 2027-01-01T00:00:00Z + i seconds). This script
builds the same log with an implementation of its own (RFC 9162 2.1,
independent of common/merkle.c) and writes the answers a collector gives
for it: inclusion proofs, consistency proofs, a page of leaves, and a
signed tree head made by ssh-keygen -Y sign, so the fuzzer starts from
inputs that pass every check."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone

N = 37
T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)


def when(i):
    return (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaf(i):
    sha = hashlib.sha256(f"measurement {i}".encode()).hexdigest()
    return sha, f"{sha} uid-{i} {when(i)}"


LEAF_HASH = [hashlib.sha256(b"\0" + leaf(i)[1].encode()).digest() for i in range(N)]


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return hashlib.sha256(b"\1" + mth(d[:k]) + mth(d[k:])).digest()


def path(m, d):
    if len(d) <= 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, whole):
    if m == len(d):
        return [] if whole else [mth(d)]
    k = split(len(d))
    if m <= k:
        return subproof(m, d[:k], whole) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def leaf_json(i):
    sha, text = leaf(i)
    return {"leaf_index": i, "measurement_uid": f"uid-{i}", "content_sha256": sha,
            "received_at": when(i), "leaf": text, "leaf_hash": LEAF_HASH[i].hex()}


def main(out):
    os.makedirs(out, exist_ok=True)
    docs = {}
    for i, size in ((0, 1), (5, 37), (36, 37), (12, 13), (31, 32)):
        d = leaf_json(i)
        d.update(tree_size=size, root_hash=mth(LEAF_HASH[:size]).hex(),
                 audit_path=[h.hex() for h in path(i, LEAF_HASH[:size])])
        docs[f"inclusion-{i}-{size}"] = d
    for first in (1, 10, 16, 36):
        docs[f"consistency-{first}-{N}"] = {
            "first": first, "second": N,
            "first_root_hash": mth(LEAF_HASH[:first]).hex(),
            "second_root_hash": mth(LEAF_HASH).hex(),
            "consistency_path": [h.hex() for h in subproof(first, LEAF_HASH, True)]}
    docs["leaves-0-8"] = {"tree_size": N, "leaves": [leaf_json(i) for i in range(8)]}
    sth = '{"tree_size":%d,"root_hash":"%s","timestamp":"%s"}' % (N, mth(LEAF_HASH).hex(),
                                                                  when(100))
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "sth-key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        msg = os.path.join(tmp, "sth")
        with open(msg, "w") as f:
            f.write(sth)
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "parallax-sth-v1", "-f", key, msg],
                       check=True, capture_output=True)
        sig = open(msg + ".sig").read()
        fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", key + ".pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
        pub = open(key + ".pub").read().strip()
    docs["sth-signed"] = {"tree_size": N, "root_hash": mth(LEAF_HASH).hex(), "timestamp": when(100),
                          "key_id": fp, "public_key": pub, "signature": sig}
    for name, d in docs.items():
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(d, f, separators=(",", ":"))
    with open(os.path.join(out, "sth-text"), "w") as f:
        f.write(sth)


if __name__ == "__main__":
    main(sys.argv[1])
