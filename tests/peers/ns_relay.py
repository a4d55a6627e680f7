#!/usr/bin/python3
"""ns_relay.py -- plain TCP relay from a host loopback address into a
network namespace.

  ns_relay.py --listen 127.80.1.7 --port 8443 --netns pxpeers \
              [--target-addr 127.0.0.1] [--target-port 8443] [--pidfile F]

Used for the gnutls-serv "no secure renegotiation" peer: gnutls-serv can only
bind to the wildcard address, so it runs alone inside network namespace
--netns, and this relay (in the host namespace) accepts connections on
--listen:--port and, for each one, opens a socket *inside* the namespace
(setns(2) on the calling thread, socket(), setns back) and connects it to
--target-addr:--target-port there. Bytes are copied unchanged both ways, so
TLS is end to end; half-closes are forwarded (FIN -> shutdown(SHUT_WR)) and a
reset on one side becomes a reset on the other. If the inner connect fails
the client connection is reset.

No traffic ever leaves the loopback interfaces. Needs root (setns).
Stdlib only (ctypes for setns, as Debian 12's Python 3.11 has no os.setns).
"""

import argparse
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import sys
import threading

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Relay:
    def __init__(self, args):
        self.args = args
        self.ns_fd = os.open(os.path.join("/run/netns", args.netns), os.O_RDONLY)
        self.host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        fam = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((args.listen, args.port))
        self.lsock.listen(128)
        self.stop = threading.Event()

    def inner_socket(self):
        # setns(CLONE_NEWNET) only affects the calling thread; the socket
        # keeps the namespace it was created in.
        fam = socket.AF_INET6 if ":" in self.args.target_addr else socket.AF_INET
        setns(self.ns_fd)
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        finally:
            setns(self.host_fd)
        return s

    def serve(self):
        self.lsock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                continue
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, client):
        try:
            inner = self.inner_socket()
            inner.settimeout(5)
            inner.connect((self.args.target_addr, self.args.target_port))
            inner.settimeout(None)
        except OSError:
            reset(client)
            return
        state = {"open": 2, "reset": False}
        lock = threading.Lock()

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        break
                    dst.sendall(data)
            except OSError:
                # ECONNRESET or similar: propagate as a reset.
                with lock:
                    state["reset"] = True
                reset(dst)
                reset(src)
            with lock:
                state["open"] -= 1
                last = state["open"] == 0
            if last:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(client, inner), daemon=True).start()
        pump(inner, client)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--target-addr", default="127.0.0.1")
    ap.add_argument("--target-port", type=int)
    ap.add_argument("--pidfile")
    args = ap.parse_args()
    if args.target_port is None:
        args.target_port = args.port

    relay = Relay(args)

    def on_term(signum, frame):
        relay.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    t = threading.Thread(target=relay.serve, daemon=True)
    t.start()
    while not relay.stop.is_set():
        relay.stop.wait(0.5)
    relay.lsock.close()
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
