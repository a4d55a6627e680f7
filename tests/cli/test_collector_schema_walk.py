"""Every field the schema names, every wrong JSON type, every size beyond
its bound: a validly signed measurement that breaks the schema anywhere is
a 422 that names where, the collector stays up, and nothing is stored.

The base measurement is a real one from the test world, completed so that
every key of schemas/measurement.schema.json occurs in it (checked). The
walk then replaces each value in turn with a value of each other JSON type
and, for strings and arrays, with one far beyond any bound; whatever
Python's jsonschema says breaks the schema must be refused by the
collector's own C validation with the path of that value (or of the
object around it, for a oneOf/anyOf whose branches all fail)."""
import copy
import json
import re
import tempfile

import collectorlib as cl
import jsonschema
import pxtest

SCHEMA = pxtest.MEASUREMENT
with open(f"{pxtest.SOURCE}/schemas/measurement.schema.json") as f:
    RAW_SCHEMA = json.load(f)

# One value of each JSON type (the walk puts each where another type is).
SAMPLES = {"null": None, "boolean": True, "integer": 7, "number": 1.5, "string": "x",
           "array": [], "object": {}}


def json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def paths(doc, prefix=()):
    """Every (path, value) of doc, depth first; a path is a tuple of keys
    and indexes."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


def dotted(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def replaced(doc, path, value):
    d = copy.deepcopy(doc)
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return d


def schema_keys(node, seen=None):
    """Every property name the schema defines anywhere."""
    seen = set() if seen is None else seen
    if isinstance(node, dict):
        for k, v in node.get("properties", {}).items():
            seen.add(k)
        for v in node.values():
            schema_keys(v, seen)
    elif isinstance(node, list):
        for v in node:
            schema_keys(v, seen)
    return seen


def complete_base():
    """A real measurement holding every kind of entry: answers of each
    type, a verified chain and one with X509 errors, control and skipped
    addresses."""
    got = pxtest.by_input(json.loads(x) for x in
                          cl.measure_lines("alias.example.test", "unknownroot.example.test"))
    m, other = got["alias.example.test"], got["unknownroot.example.test"]
    tk = m["test_keys"]
    tk["tls_handshakes"].append(other["test_keys"]["tls_handshakes"][0])
    tk["tcp_connect"].append(other["test_keys"]["tcp_connect"][0])
    tk["control_addresses"] = ["127.80.1.1"]
    tk["skipped_addresses"] = [{"ip": "10.1.2.3", "reason": "private", "transaction_id": 1}]
    late = copy.deepcopy(next(q for q in tk["queries"] if q["engine"] == "udp"))
    late["t"] += 0.05
    tk["dns_late_replies"] = [late]
    # One query of each kind is enough to reach every field.
    by_type = {}
    for q in tk["queries"]:
        if q["answers"]:
            by_type.setdefault(q["query_type"], q)
    tk["queries"] = list(by_type.values())
    for q in tk["queries"]:
        kinds = {}
        for a in q["answers"]:
            kinds.setdefault(a["answer_type"], a)
        q["answers"] = list(kinds.values())
    for h in tk["tls_handshakes"]:
        h["peer_certificates"] = h["peer_certificates"][:2]
    cl.check(SCHEMA, m, "base measurement")
    return m


class SchemaWalk(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="px-walk-")
        cls.base = complete_base()
        cls.key = cl.SSHKey(cls.tmp)
        # Bodies of many megabytes: the size cases must meet the schema's
        # bounds, not the request limit.
        cls.c = cl.Collector(cls.tmp, extra=["--max-body", str(64 << 20)]).start()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()

    def test_base_covers_every_key_of_the_schema(self):
        present = {p[-1] for p, _ in paths(self.base) if p and isinstance(p[-1], str)}
        missing = schema_keys(RAW_SCHEMA) - present
        self.assertEqual(missing, set(), "keys the walk would never reach")
        # The base itself is accepted (then it is gone: a store of its own).
        c = cl.Collector(tempfile.mkdtemp(dir=self.tmp)).start()
        try:
            (content, sig), = self.key.sign([cl.compact(self.base)])
            st, doc = c.submit(cl.submit_body(content, sig))
            self.assertEqual(st, 200, doc)
        finally:
            c.stop()

    def cases(self):
        """(what, mutated document) for every breaking mutation."""
        out = []
        for path, value in paths(self.base):
            if not path:
                continue
            t = json_type(value)
            candidates = [(f"{name}", sample) for name, sample in SAMPLES.items()
                          if name != t and not (t == "number" and name == "integer")]
            if isinstance(value, str):
                candidates.append(("long string", "A" * 140000))
            if isinstance(value, list) and value:
                candidates.append(("long array", value[:1] * 2100))
            for what, new in candidates:
                doc = replaced(self.base, path, new)
                if not SCHEMA.is_valid(doc):
                    out.append((path, what, doc))
        return out

    def test_every_breaking_value_is_refused_with_its_path(self):
        cases = self.cases()
        self.assertGreater(len(cases), 500)
        contents = [cl.compact(doc) for _, _, doc in cases]
        signed = self.key.sign(contents)
        wrong = []
        for (path, what, _), (content, sig) in zip(cases, signed):
            st, doc = self.c.submit(cl.submit_body(content, sig))
            where = dotted(path)
            got = doc.get("path")
            if st != 422 or doc.get("error") != "invalid_measurement" or got is None:
                wrong.append(f"{where} <- {what}: {st} {doc}")
            elif not (got == where or where.startswith(got + ".") or where.startswith(got + "[")
                      or got == ""):
                wrong.append(f"{where} <- {what}: refused at {got!r}: {doc['detail']}")
            elif not doc["detail"].startswith(got or "(the measurement)"):
                wrong.append(f"{where} <- {what}: detail does not start with the path: {doc}")
        self.assertEqual(wrong[:20], [], f"{len(wrong)} of {len(cases)} cases wrong")
        self.assertEqual(self.c.healthz()[0], 200)
        self.assertEqual(self.c.db_count(), 0, "a refused measurement was stored")
        rejected = self.c.metrics()[("parallax_collector_measurements_rejected_total",
                                     (("reason", "invalid_measurement"),))]
        self.assertGreaterEqual(rejected, len(cases))

    def test_time_bounds(self):
        """2012-01-01 up to a day after receipt; four-digit years only."""
        bad = ["0000-01-01 00:00:00", "2011-12-31 23:59:59", "9999-12-31 23:59:59",
               "2014-02-30 12:00:00", "2014-13-01 00:00:00"]
        docs = []
        for t in bad:
            for field in ("measurement_start_time", "test_start_time"):
                docs.append((field, t, replaced(self.base, (field,), t)))
        signed = self.key.sign([cl.compact(d) for _, _, d in docs])
        for (field, t, _), (content, sig) in zip(docs, signed):
            st, doc = self.c.submit(cl.submit_body(content, sig))
            self.assertEqual((st, doc.get("path")), (422, field), f"{field}={t}: {doc}")
        self.assertEqual(self.c.db_count(), 0)


if __name__ == "__main__":
    pxtest.main()
