"""A throwaway PostgreSQL 15 cluster for bench/collector-ingest, made by
tests/pg/pg.sh (the one the collector tests use), with the bench's tuning
on top, and the few SQL calls the bench makes (through psql: no Python
driver needed)."""
import csv
import io
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PG_SH = os.path.join(HERE, "..", "..", "tests", "pg", "pg.sh")

# Set with ALTER SYSTEM after pg.sh made the cluster (its own settings are
# for a quick test run: 64 MB shared buffers). Documented in
# docs/benchmarks.md; fsync and synchronous_commit stay on.
TUNING = {"shared_buffers": "2GB", "effective_cache_size": "12GB", "max_wal_size": "8GB",
          "checkpoint_timeout": "15min", "work_mem": "16MB", "maintenance_work_mem": "512MB"}


class Cluster:
    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        subprocess.run([PG_SH, "start", self.dir], check=True, stdout=subprocess.DEVNULL)
        self.env = {}
        with open(os.path.join(self.dir, "pg.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                self.env[k] = v
        self.url = self.env["PX_PG_URL"]
        self.psql_bin = self.env.get("PX_PG_PSQL", "psql")
        admin = f"postgresql://postgres@127.0.0.1:{self.env['PX_PG_PORT']}/postgres"
        for k, v in TUNING.items():
            self.psql(f"ALTER SYSTEM SET {k} = '{v}'", url=admin)
        self._restart()
        self.version = self.psql("SHOW server_version", url=admin).split()[0]
        self.settings = {k: self.psql(f"SHOW {k}", url=admin) for k in TUNING}

    def _restart(self):
        c = self.dir
        if os.path.exists(os.path.join(self.dir, "cluster")):
            c = open(os.path.join(self.dir, "cluster")).read().strip()
        pg_ctl = os.path.join(os.path.dirname(self.psql_bin), "pg_ctl")
        if not os.access(pg_ctl, os.X_OK):
            pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl"
        cmd = [pg_ctl, "-D", os.path.join(c, "data"), "-l", os.path.join(c, "server.log"),
               "-w", "-t", "60", "restart"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def cpu_seconds(self):
        """User + system CPU of the server: the postmaster and its children
        alive now (a backend's CPU is lost when it exits: sample while the
        collectors are connected)."""
        c = self.dir
        if os.path.exists(os.path.join(self.dir, "cluster")):
            c = open(os.path.join(self.dir, "cluster")).read().strip()
        with open(os.path.join(c, "data", "postmaster.pid")) as f:
            master = int(f.readline())
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(pid) == master or int(st[1]) == master:
                total += int(st[11]) + int(st[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        subprocess.run([PG_SH, "stop", self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def schema_url(self, schema):
        """A fresh schema and the collector URL whose tables go there."""
        self.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.psql(f"CREATE SCHEMA {schema}")
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def psql(self, sql, url=None, stdin=None):
        r = subprocess.run([self.psql_bin, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", url or self.url, "-c", sql], input=stdin,
                           capture_output=True, text=stdin is None or isinstance(stdin, str))
        if r.returncode != 0:
            sys.exit(f"collector-ingest: psql: {sql[:80]}: {r.stderr!r}")
        return r.stdout.strip() if isinstance(r.stdout, str) else r.stdout

    def size(self, schema):
        return int(self.psql(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
            "AND c.relkind IN ('r', 'm')"))


def copy_from_sqlite(cluster, url, sqlite_db, batch=20000):
    """Loads a collector SQLite database into the (made, empty) PostgreSQL
    schema at url as the collector would have stored it, without checking
    anything: the fallback when `parallax-collector migrate` is not there.
    Everything goes into the analysis queue."""
    import sqlite3
    con = sqlite3.connect(f"file:{sqlite_db}?mode=ro", uri=True)
    lo, hi = con.execute("SELECT min(measurement_start_time), max(measurement_start_time) "
                         "FROM measurements").fetchone()
    cluster.psql("SELECT px_ensure_month(t) FROM generate_series("
                 f"{lo}::bigint, {hi + 31 * 86400}::bigint, 86400 * 27) t", url=url)
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in con.execute("SELECT key_id, public_key, first_seen, last_seen FROM keys"):
        w.writerow(row)
    cluster.psql("COPY keys (key_id, public_key, first_seen, last_seen) FROM STDIN "
                 "WITH (FORMAT csv)", url=url, stdin=buf.getvalue())
    cols = ("uid, content_sha256, content, signature, key_id, probe_cc, probe_asn, test_name, "
            "input, domain, measurement_start_time, received_at")
    proc = subprocess.Popen([cluster.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                             "-c", f"COPY measurements ({cols}) FROM STDIN WITH (FORMAT csv)"],
                            stdin=subprocess.PIPE, text=True)
    w = csv.writer(proc.stdin)
    for r in con.execute(f"SELECT {cols} FROM measurements ORDER BY id"):
        w.writerow((r[0], "\\x" + r[1].hex(), "\\x" + bytes(r[2]).hex()) + tuple(r[3:]))
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("collector-ingest: COPY into PostgreSQL failed")
    con.close()
    cluster.psql("INSERT INTO measurement_uids SELECT uid, measurement_start_time, id "
                 "FROM measurements", url=url)
    cluster.psql("INSERT INTO analysis_queue (measurement_start_time, measurement_id) "
                 "SELECT measurement_start_time, id FROM measurements ORDER BY id", url=url)
    cluster.psql("ANALYZE", url=url)
