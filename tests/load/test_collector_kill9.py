"""kill -9 of the collector in a loop while px-loadgen keeps submitting from
many concurrent connections (retrying what fails, as agents do).

After each kill, on a copy of the files exactly as the crash left them
(database and hot WAL: what the next start recovers from), PRAGMA
integrity_check must say ok and every measurement acknowledged so far must
be there with its bytes. Then the collector restarts on the original files,
and the same holds on the live database. At the end every measurement was
acknowledged, each is stored exactly once, and a measurement committed
whose 200 was lost to the kill came back as a duplicate with the same uid.
The measurement log holds exactly the stored measurements, at every kill
(loadlib.check_log): never a measurement without its leaf, nor a leaf
without its measurement, and every kept subtree is its leaves' hash.

tests/cli/test_collector_crash.py does the same with real agents
(`parallax upload`, receipts in spool/sent/); this one is the volume
version. Check size: 3 cycles, 32 connections; `make soak`: 20 cycles,
128 connections."""
import os
import shutil
import signal
import sqlite3
import tempfile
import time

import loadlib
from loadlib import cl, pxtest

CYCLES = loadlib.size(3, 20)
CONNECTIONS = loadlib.size(32, 128)
PER_CYCLE = loadlib.size(300, 1500)     # acknowledged by one instance before its kill
COUNT = CYCLES * PER_CYCLE * 3 // 2 + loadlib.size(600, 6000)


class Kill9(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        loadlib.raise_nofile()
        cls.tmp = tempfile.mkdtemp(prefix="px-kill9-")
        cls.tmpl = loadlib.template(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def crash_copy(self, db):
        """The database files as the kill left them, copied aside."""
        d = tempfile.mkdtemp(dir=self.tmp)
        for ext in ("", "-wal", "-shm"):
            if os.path.exists(db + ext):
                shutil.copyfile(db + ext, os.path.join(d, "crash.sqlite" + ext))
        return os.path.join(d, "crash.sqlite")

    def test_kill9_loop_during_ingest(self):
        work = tempfile.mkdtemp(dir=self.tmp)
        c = cl.Collector(work, extra=["--max-connections", str(CONNECTIONS + 64)])
        self.addCleanup(c.stop)
        c.start()
        g = loadlib.Loadgen(work, c.url, self.tmpl, COUNT, CONNECTIONS,
                            sources="127.85.0.1/4", retry=True, give_up=120, timeout_ms=30000)
        self.addCleanup(g.kill)
        g.start()
        kills, cycles = 0, []
        for cycle in range(CYCLES):
            base = g.ack_count()
            deadline = time.monotonic() + 120 * cl.SLOW
            while g.ack_count() - base < PER_CYCLE and g.running():
                self.assertLess(time.monotonic(), deadline, "ingest makes no progress")
                time.sleep(0.005)
            if not g.running():
                break
            c.kill9()
            kills += 1
            # The checks below take seconds on a big database: the clients
            # wait meanwhile (SIGSTOP), so each instance, not the checks,
            # takes its PER_CYCLE.
            g.proc.send_signal(signal.SIGSTOP)
            acked = g.acks()  # every 200 in here was sent before the kill
            crash = self.crash_copy(c.db)
            wal = os.path.getsize(c.db + "-wal") if os.path.exists(c.db + "-wal") else 0
            self.assertEqual(loadlib.integrity(crash), (0, "ok"), f"kill {kills}: crash state")
            rows = loadlib.check_acks_stored(self, crash, acked, f"kill {kills}: crash state")
            loadlib.check_log(self, crash, f"kill {kills}: crash state")
            shutil.rmtree(os.path.dirname(crash))
            t0 = time.monotonic()
            c.start()
            restart_s = time.monotonic() - t0
            self.assertEqual(loadlib.integrity(c.db), (0, "ok"), f"after restart {kills}")
            loadlib.check_acks_stored(self, c.db, acked, f"after restart {kills}")
            loadlib.check_log(self, c.db, f"after restart {kills}")
            g.proc.send_signal(signal.SIGCONT)
            cycles.append({"kill": kills, "acknowledged": len(acked), "stored": len(rows),
                           "hot_wal_bytes": wal, "restart_s": round(restart_s, 2)})
            print(f"kill {kills}: {len(acked)} acknowledged, {len(rows)} stored at the crash, "
                  f"WAL {wal} bytes, healthy again in {restart_s:.2f} s", flush=True)
        self.assertEqual(kills, CYCLES, "the load ended before every kill was made")

        s = g.wait()
        self.assertEqual(s["failed"], 0, s)
        self.assertFalse(s["gave_up"], s)
        acks = g.acks()
        self.assertEqual(sorted(a[0] for a in acks), list(range(COUNT)),
                         "a measurement was never acknowledged, or twice")
        rows = loadlib.check_acks_stored(self, c.db, acks, "at the end")
        self.assertEqual(len(rows), COUNT, "stored more than was sent: a measurement twice")
        self.assertEqual(set(rows), {a[1] for a in acks})
        self.assertEqual(len(set(rows.values())), COUNT)
        con = sqlite3.connect(f"file:{c.db}?mode=ro", uri=True)
        keys = con.execute("SELECT count(*) FROM keys").fetchone()[0]
        con.close()
        self.assertEqual(keys, 1)
        self.assertEqual(c.stop(), 0, c.log())
        self.assertEqual(loadlib.integrity(c.db), (0, "ok"), "after a clean stop")
        self.assertEqual(loadlib.check_log(self, c.db, "after a clean stop"), COUNT)
        dups = sum(1 for a in acks if a[3])
        loadlib.report("collector_kill9", cycles=CYCLES, kills=kills, connections=CONNECTIONS,
                       measurements=COUNT, stored=len(rows), exactly_once=True,
                       integrity_ok_after_every_kill=True,
                       committed_but_unanswered_resent_as_duplicate=dups,
                       transport_errors=s["errors"], retries=s["retries"],
                       elapsed_s=round(s["elapsed_s"], 1), per_kill=cycles)


if __name__ == "__main__":
    pxtest.main()
