"""The collector under load from a second process: px-loadgen holds many
concurrent keep-alive connections from several loopback source addresses,
each submitting distinct signed measurements. Every acknowledged
measurement must be stored exactly once, with its bytes, and nothing else
may be stored; the same submissions again are answered as duplicates with
the same uids. Check size: 200 concurrent clients; `make soak`: 1,000."""
import shutil
import tempfile

import loadlib
from loadlib import cl, pxtest

CONNECTIONS = loadlib.size(200, 1000)
SOURCES = loadlib.size(8, 32)          # 25 or ~31 clients per address: under --per-ip-limit 64
COUNT = loadlib.size(2000, 80000)


class Load(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        loadlib.raise_nofile()
        cls.tmp = tempfile.mkdtemp(prefix="px-load-")
        cls.tmpl = loadlib.template(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def collector(self, *extra):
        c = cl.Collector(tempfile.mkdtemp(dir=self.tmp), extra=list(extra))
        self.addCleanup(lambda: self.assertEqual(c.stop(), 0, c.log()))
        return c.start()

    def test_concurrent_clients_stored_exactly_once(self):
        c = self.collector("--max-connections", str(CONNECTIONS + 100))
        # The default per-address allowance (64) is kept: the clients come
        # from SOURCES addresses, as many agents would.
        g = loadlib.Loadgen(self.tmp, c.url, self.tmpl, COUNT, CONNECTIONS,
                            sources=f"127.82.0.1/{SOURCES}", name="load")
        s = g.run()
        self.assertEqual(s["errors"], {}, s)
        self.assertEqual((s["ok"], s["failed"], s["duplicates"]), (COUNT, 0, 0), s)
        self.assertEqual(s["peak_inflight"], CONNECTIONS, s)
        # One connection per client, kept alive for all of its requests.
        self.assertEqual(s["connects"], CONNECTIONS, s)
        acks = g.acks()
        self.assertEqual(sorted(a[0] for a in acks), list(range(COUNT)))
        uids = {a[1] for a in acks}
        self.assertEqual(len(uids), COUNT, "two measurements answered with one uid")
        rows = loadlib.check_acks_stored(self, c.db, acks, "after the load")
        self.assertEqual(set(rows), uids, "stored but never acknowledged, or the reverse")
        self.assertEqual(len(set(rows.values())), COUNT, "the same content stored twice")
        self.assertEqual(c.accepted(), COUNT)
        self.assertEqual(loadlib.integrity(c.db), (0, "ok"))

        # The same again, fewer clients: every one is a duplicate, same uid.
        again = min(COUNT, 500)
        g2 = loadlib.Loadgen(self.tmp, c.url, self.tmpl, again, 50, name="again")
        s2 = g2.run()
        self.assertEqual((s2["ok"], s2["duplicates"], s2["failed"]), (again, again, 0), s2)
        first = {a[0]: a[1] for a in acks}
        for i, uid, _, dup in g2.acks():
            self.assertTrue(dup)
            self.assertEqual(uid, first[i])
        self.assertEqual(c.db_count(), COUNT)
        m = c.metrics()
        self.assertEqual(m[("parallax_collector_measurements_duplicate_total", ())], again)
        loadlib.report("collector_load", connections=CONNECTIONS, sources=SOURCES,
                       measurements=COUNT, accepted_per_s=round(s["ok_per_s"]),
                       latency_ms={k: round(v, 1) for k, v in s["latency_ms"].items()},
                       errors=s["errors"], failed=s["failed"], elapsed_s=round(s["elapsed_s"], 2),
                       stored=len(rows), acknowledged=len(acks), exactly_once=True,
                       duplicates_resent=again, duplicates_answered=s2["duplicates"])


if __name__ == "__main__":
    pxtest.main()
