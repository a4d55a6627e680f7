#!/usr/bin/python3
"""capture-dns.py OUTDIR -- real DNS answers for the fuzz_dns_answer corpus.

Asks the tests/peers DNS servers (dnsmasq, and the deliberately broken
bad_dns.py; start them with tests/peers/peers.sh start DIR) the questions
the agent asks, over UDP and TCP, with and without EDNS, and writes each
raw response to OUTDIR/<server>-<name>-<type>-<transport>. Stdlib only.
"""
import os
import random
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {}
with open(os.path.join(HERE, "..", "..", "peers", "peers.env")) as f:
    for line in f:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            ENV[k] = v

PORT = int(ENV["PX_DNS_PORT"])
SERVERS = {"good": ENV["PX_DNS_GOOD"], "bad": ENV["PX_DNS_BAD"]}
QUESTIONS = {
    "good": ["www.example.test", "alias2.example.test", "nonpublic.example.test",
             "www.icloud.com", "missing.example.test"],
    "bad": ["servfail.bad.test", "refused.bad.test", "truncated.bad.test",
            "malformed.bad.test", "loop.bad.test", "garbage.bad.test",
            "wrongid.bad.test", "ok.bad.test"],
}
TYPES = {"A": 1, "AAAA": 28}


def query(name, qtype, edns):
    qid = random.randrange(65536)
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return msg


def ask(server, msg, tcp):
    if tcp:
        with socket.create_connection((server, PORT), timeout=2) as s:
            s.sendall(struct.pack(">H", len(msg)) + msg)
            head = s.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return None
            return s.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(msg, (server, PORT))
        return s.recv(65535)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for which, server in SERVERS.items():
        for name in QUESTIONS[which]:
            for tname, qtype in TYPES.items():
                for tcp in (False, True):
                    edns = tname == "A"  # both forms, without doubling the corpus
                    try:
                        data = ask(server, query(name, qtype, edns), tcp)
                    except OSError:
                        continue
                    if not data:
                        continue
                    short = name.split(".")[0]
                    path = os.path.join(out, "%s-%s-%s-%s" % (which, short, tname,
                                                              "tcp" if tcp else "udp"))
                    with open(path, "wb") as f:
                        f.write(data)


if __name__ == "__main__":
    main()
