#!/usr/bin/python3
"""tcp_misbehave.py -- TCP servers that break TLS clients in specific ways.

One listening socket per mode/address, all on --port (PX_TLS_PORT):

  --stall IP    accept, read and discard whatever arrives, never write;
                the connection stays open until the peer closes it.
  --reset IP    accept, wait for the ClientHello, then abort with a RST
                (SO_LINGER on, timeout 0, close).
  --close IP    accept, wait for the ClientHello, then close normally: the
                FIN is sent (shutdown(SHUT_WR)) without writing anything;
                the socket is drained until the peer closes (so a late
                segment cannot turn the FIN into a RST).
  --garbage IP  accept, wait for the ClientHello, write
                "HTTP/1.0 400 Bad Request\\r\\n\\r\\n", FIN, drain, close.

"Wait for the ClientHello" means: act once a whole TLS record has arrived
(first byte 0x16, 5-byte header + length), or as soon as any non-TLS data
has arrived, or 1 s after the first byte, whichever comes first. A peer
that connects and closes without sending anything is just closed.
Non-stall connections are dropped after 60 s of inactivity.

Single-threaded (selectors), so thousands of concurrent connections are
fine. SIGTERM/SIGINT: close everything and exit 0.
"""

import argparse
import os
import selectors
import signal
import socket
import struct
import sys
import time

GARBAGE = b"HTTP/1.0 400 Bad Request\r\n\r\n"
HELLO_WAIT = 1.0
IDLE_TIMEOUT = 60.0


class Conn:
    __slots__ = ("sock", "mode", "buf", "first", "acted", "last")

    def __init__(self, sock, mode):
        self.sock = sock
        self.mode = mode
        self.buf = b""
        self.first = None     # time the first byte arrived
        self.acted = False    # FIN already sent (close/garbage)
        self.last = time.monotonic()


def hello_complete(buf):
    if not buf:
        return False
    if buf[0] != 0x16:
        return True          # not TLS: any data counts
    if len(buf) < 5:
        return False
    ln = struct.unpack("!H", buf[3:5])[0]
    return len(buf) >= 5 + ln


class Server:
    def __init__(self, port, specs):
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.listeners = []
        for mode, addrs in specs:
            for addr in addrs:
                fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, port))
                s.listen(512)
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ, ("listen", mode))
                self.listeners.append(s)
        self.running = True

    def drop(self, c, rst=False):
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(c.sock.fileno(), None)
        try:
            if rst:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            c.sock.close()
        except OSError:
            pass

    def act(self, c):
        """The ClientHello is in: do the mode's thing."""
        if c.mode == "reset":
            self.drop(c, rst=True)
            return
        if c.mode == "garbage":
            try:
                c.sock.sendall(GARBAGE)   # tiny, fits the send buffer
            except OSError:
                self.drop(c)
                return
        # close / garbage: FIN now, then drain until the peer closes.
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.drop(c)
            return
        c.acted = True

    def on_accept(self, lsock, mode):
        for _ in range(64):
            try:
                s, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            s.setblocking(False)
            c = Conn(s, mode)
            self.conns[s.fileno()] = c
            self.sel.register(s, selectors.EVENT_READ, ("conn", c))

    def on_read(self, c):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(c)
            return
        if not data:
            self.drop(c)
            return
        c.last = time.monotonic()
        if c.mode == "stall" or c.acted:
            return                      # read and discard, never write
        if c.first is None:
            c.first = c.last
        if len(c.buf) < 65536:
            c.buf += data
        if hello_complete(c.buf):
            self.act(c)

    def tick(self):
        now = time.monotonic()
        for c in list(self.conns.values()):
            if c.mode == "stall":
                continue
            if not c.acted and c.first is not None and now - c.first >= HELLO_WAIT:
                self.act(c)
            elif now - c.last >= IDLE_TIMEOUT:
                self.drop(c)

    def run(self):
        while self.running:
            try:
                events = self.sel.select(timeout=0.25)
            except InterruptedError:
                continue
            for key, _ in events:
                kind, obj = key.data
                if kind == "listen":
                    self.on_accept(key.fileobj, obj)
                else:
                    self.on_read(obj)
            self.tick()
        for c in list(self.conns.values()):
            self.drop(c)
        for s in self.listeners:
            s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    for m in ("stall", "reset", "close", "garbage"):
        ap.add_argument("--" + m, action="append", default=[], metavar="IP")
    ap.add_argument("--pidfile")
    args = ap.parse_args()

    specs = [(m, getattr(args, m)) for m in ("stall", "reset", "close", "garbage")]
    if not any(a for _, a in specs):
        ap.error("give at least one of --stall/--reset/--close/--garbage")
    srv = Server(args.port, specs)

    def on_term(signum, frame):
        srv.running = False

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    srv.run()
    if args.pidfile:
        try:
            os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
