"""Measurements of the local test world through the real binary: exact
fields, fingerprints recomputed with the openssl command, every line
validated against schemas/measurement.schema.json."""
import os
import re
import tempfile

import pxtest
from pxtest import PEER, by_input, measure, world_args


def handshakes(m):
    return {h["address"].rsplit(":", 1)[0].strip("[]"): h for h in m["test_keys"]["tls_handshakes"]}


class World(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ms = by_input(measure(world_args(
            "--probe-cc", "de", "--probe-asn", "3320",
            "www.example.test", "alias2.example.test", "expired.example.test",
            "wronghost.example.test", "unknownroot.example.test", "tls10.example.test",
            "noreneg.example.test", "nx.example.test", "reset.example.test",
            "closed.example.test", "garbage.example.test", "refused.example.test",
            "stall.example.test", "www.icloud.com:8443", timeout_ms=1500)))

    def test_envelope(self):
        m = self.ms["www.example.test"]
        self.assertEqual(m["data_format_version"], "0.2.0")
        self.assertEqual(m["probe_cc"], "DE")
        self.assertEqual(m["probe_asn"], "AS3320")
        self.assertEqual(m["probe_ip"], "127.0.0.1")
        self.assertEqual(m["resolver_ip"], PEER["PX_DNS_GOOD"])
        self.assertEqual(m["test_name"], "tls_cert_consistency")
        self.assertRegex(m["report_id"], r"^\d{8}T\d{6}Z_tlscertconsistency_DE_3320_[A-Za-z0-9]+$")
        # One run, one report id and one test_start_time across targets.
        self.assertEqual({x["report_id"] for x in self.ms.values()}, {m["report_id"]})
        self.assertEqual({x["test_start_time"] for x in self.ms.values()}, {m["test_start_time"]})
        a = m["annotations"]
        for key in ("libuv_version", "openssl_version", "c_ares_version", "jansson_version"):
            self.assertRegex(a[key], r"^\d+\.\d+")
        self.assertEqual(a["trust_store"], "file:" + pxtest.CA)
        self.assertRegex(a["trust_store_sha256"], r"^[0-9a-f]{64}$")
        self.assertEqual(self.ms["www.icloud.com:8443"]["input"], "www.icloud.com:8443")

    def test_valid_chain_with_independent_fingerprints(self):
        m = self.ms["www.example.test"]
        q = {x["query_type"]: x for x in m["test_keys"]["queries"]}
        self.assertEqual(set(q), {"A", "AAAA"})
        self.assertEqual(q["A"]["engine"], "udp")
        self.assertEqual(q["A"]["resolver_address"], pxtest.DNS)
        self.assertEqual(q["A"]["rcode"], 0)
        self.assertEqual(q["A"]["answers"], [{"answer_type": "A", "ipv4": PEER["PX_TLS_GOOD"], "ttl": 300}])
        self.assertEqual(q["AAAA"]["answers"], [{"answer_type": "AAAA", "ipv6": "::1", "ttl": 300}])
        self.assertIsNone(q["A"]["failure"])
        self.assertTrue(q["A"]["raw_response"])
        hs = handshakes(m)
        self.assertEqual(set(hs), {PEER["PX_TLS_GOOD"], "::1"})
        leaf_sha, leaf_spki = pxtest.fingerprints(os.path.join(pxtest.PEERS_DIR, "pki", "good.pem"))
        inter_sha, _ = pxtest.fingerprints(os.path.join(pxtest.PEERS_DIR, "pki", "inter.pem"))
        for ip, h in hs.items():
            self.assertIsNone(h["failure"], ip)
            self.assertEqual(h["tls_version"], "TLSv1.3")
            self.assertEqual(h["server_name"], "www.example.test")
            self.assertFalse(h["no_tls_verify"])
            certs = h["peer_certificates"]
            self.assertEqual(len(certs), 2)
            self.assertEqual([c["sha256"] for c in certs], [leaf_sha, inter_sha])
            self.assertEqual(certs[0]["spki_sha256"], leaf_spki)
            self.assertEqual(pxtest.der_of(certs[0])[:1], b"\x30")
            self.assertIn("www.example.test", certs[0]["san"])
            self.assertFalse(certs[0]["self_signed"])
            self.assertEqual(h["verification"], {"ok": True, "errors": [], "hostname_match": True})
        # Transaction ids tie each address's connect and handshake to the
        # DNS answer that produced it.
        tcp = {c["ip"]: c for c in m["test_keys"]["tcp_connect"]}
        self.assertEqual(tcp[PEER["PX_TLS_GOOD"]]["transaction_id"], q["A"]["transaction_id"])
        self.assertEqual(tcp["::1"]["transaction_id"], q["AAAA"]["transaction_id"])
        self.assertEqual(hs["::1"]["transaction_id"], q["AAAA"]["transaction_id"])
        self.assertEqual(tcp["::1"]["status"], {"failure": None, "success": True})
        self.assertEqual(hs["::1"]["address"], f"[::1]:{pxtest.TLS_PORT}")
        for entry in m["test_keys"]["tcp_connect"] + m["test_keys"]["tls_handshakes"]:
            self.assertLessEqual(entry["t0"], entry["t"])
            self.assertLessEqual(entry["t"], m["test_runtime"])

    def test_cname_chain(self):
        q = [x for x in self.ms["alias2.example.test"]["test_keys"]["queries"] if x["query_type"] == "A"][0]
        self.assertEqual([a["answer_type"] for a in q["answers"]], ["CNAME", "CNAME", "A"])
        self.assertEqual(q["answers"][0]["hostname"], "alias.example.test")
        self.assertEqual(q["answers"][1]["hostname"], "www.example.test")
        h = handshakes(self.ms["alias2.example.test"])[PEER["PX_TLS_GOOD"]]
        self.assertIsNone(h["failure"])

    def test_expired(self):
        h = handshakes(self.ms["expired.example.test"])[PEER["PX_TLS_EXPIRED"]]
        self.assertEqual(h["failure"], "ssl_invalid_certificate")
        self.assertIn({"code": 10, "name": "X509_V_ERR_CERT_HAS_EXPIRED",
                       "message": "certificate has expired", "depth": 0}, h["verification"]["errors"])
        self.assertEqual(h["peer_certificates"][0]["not_after"], "2021-01-01T00:00:00Z")
        sha, _ = pxtest.fingerprints(os.path.join(pxtest.PEERS_DIR, "pki", "expired.pem"))
        self.assertEqual(h["peer_certificates"][0]["sha256"], sha)
        q = [x for x in self.ms["expired.example.test"]["test_keys"]["queries"] if x["query_type"] == "AAAA"][0]
        self.assertEqual(q["failure"], "dns_no_answer")
        self.assertEqual(q["rcode"], 0)

    def test_wrong_host(self):
        h = handshakes(self.ms["wronghost.example.test"])[PEER["PX_TLS_WRONGHOST"]]
        self.assertEqual(h["failure"], "ssl_invalid_hostname")
        self.assertEqual(h["verification"], {"ok": False, "errors": [], "hostname_match": False})

    def test_unknown_root(self):
        h = handshakes(self.ms["unknownroot.example.test"])[PEER["PX_TLS_UNKNOWNROOT"]]
        self.assertEqual(h["failure"], "ssl_unknown_authority")
        codes = {e["code"] for e in h["verification"]["errors"]}
        self.assertIn(19, codes)  # self-signed certificate in the chain
        self.assertEqual(len(h["peer_certificates"]), 2)
        self.assertTrue(h["peer_certificates"][1]["self_signed"])

    def test_legacy_servers_complete(self):
        h = handshakes(self.ms["tls10.example.test"])[PEER["PX_TLS_TLS10"]]
        self.assertEqual(h["tls_version"], "TLSv1")
        self.assertIsNone(h["failure"])
        if pxtest.STATE.get("NORENEG_SKIPPED") != "1":
            h = handshakes(self.ms["noreneg.example.test"])[PEER["PX_TLS_NORENEG"]]
            self.assertEqual(h["tls_version"], "TLSv1.2")
            self.assertIsNone(h["failure"])
            self.assertGreaterEqual(len(h["peer_certificates"]), 1)

    def test_misbehaving_peers(self):
        expect = {"reset.example.test": ("PX_TCP_RESET", "connection_reset"),
                  "closed.example.test": ("PX_TCP_CLOSE", "eof_error"),
                  "garbage.example.test": ("PX_TCP_GARBAGE", "ssl_failed_handshake"),
                  "stall.example.test": ("PX_TCP_STALL", "generic_timeout_error")}
        for target, (key, failure) in expect.items():
            m = self.ms[target]
            tcp = m["test_keys"]["tcp_connect"][0]
            self.assertEqual(tcp["status"], {"failure": None, "success": True}, target)
            h = handshakes(m)[PEER[key]]
            self.assertEqual(h["failure"], failure, target)
            self.assertEqual(h["peer_certificates"], [], target)
            self.assertIsNone(h["verification"], target)
        self.assertRegex(handshakes(self.ms["garbage.example.test"])[PEER["PX_TCP_GARBAGE"]]["failure_detail"],
                         r"wrong version number|packet length too long|record")
        m = self.ms["refused.example.test"]
        self.assertEqual(m["test_keys"]["tcp_connect"][0]["status"],
                         {"failure": "connection_refused", "success": False})
        self.assertEqual(m["test_keys"]["tls_handshakes"], [])

    def test_nxdomain(self):
        m = self.ms["nx.example.test"]
        self.assertEqual({q["failure"] for q in m["test_keys"]["queries"]}, {"dns_nxdomain_error"})
        self.assertEqual({q["rcode"] for q in m["test_keys"]["queries"]}, {3})
        self.assertEqual(m["test_keys"]["tcp_connect"], [])


class Interception(pxtest.TestCase):
    def test_2014_icloud_pattern(self):
        """Correct DNS, but one address serves the self-signed MITM
        certificate: both chains recorded, the MITM judged."""
        [m] = measure(world_args("--address", PEER["PX_TLS_MITM"], "www.icloud.com"))
        hs = handshakes(m)
        good, mitm = hs[PEER["PX_TLS_ICLOUD"]], hs[PEER["PX_TLS_MITM"]]
        self.assertIsNone(good["failure"])
        self.assertEqual(mitm["failure"], "ssl_unknown_authority")
        self.assertEqual(mitm["tls_version"], "TLSv1.2")
        self.assertEqual(mitm["cipher_suite"], "TLS_RSA_WITH_AES_256_CBC_SHA")
        [leaf] = mitm["peer_certificates"]
        self.assertEqual(leaf["subject"], "CN=www.icloud.com,O=www.icloud.com,C=cn")
        self.assertEqual(leaf["issuer"], leaf["subject"])
        self.assertTrue(leaf["self_signed"])
        self.assertEqual(leaf["san"], [])
        sha, spki = pxtest.fingerprints(os.path.join(pxtest.PEERS_DIR, "pki", "mitm.pem"))
        self.assertEqual((leaf["sha256"], leaf["spki_sha256"]), (sha, spki))
        self.assertEqual([e["code"] for e in mitm["verification"]["errors"]], [18])
        self.assertTrue(mitm["verification"]["hostname_match"])
        # --address gets its own transaction id, after the DNS ones.
        dns_ids = {q["transaction_id"] for q in m["test_keys"]["queries"]}
        self.assertNotIn(mitm["transaction_id"], dns_ids)


class BrokenDNS(pxtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ms = by_input(measure(["--resolver", pxtest.BAD_DNS, "--no-system-resolver",
                                   "--allow-nonpublic-addresses", "--port", pxtest.TLS_PORT,
                                   "--ca-file", pxtest.CA, "--timeout", "900",
                                   "servfail.bad.test", "refused.bad.test", "silent.bad.test",
                                   "truncated.bad.test", "malformed.bad.test", "loop.bad.test",
                                   "wrongid.bad.test", "garbage.bad.test", "ok.bad.test",
                                   "injected.bad.test"]))

    def query(self, target, qtype="A"):
        return [q for q in self.ms[target]["test_keys"]["queries"] if q["query_type"] == qtype]

    def test_late_reply_of_an_injector_is_kept(self):
        """The forged answer comes first (c-ares takes it); the genuine one
        60 ms later is in dns_late_replies, paired by transaction id."""
        m = self.ms["injected.bad.test"]
        first, = [q for q in self.query("injected.bad.test") if q["engine"] == "udp"]
        self.assertEqual([a.get("ipv4") for a in first["answers"]], ["127.80.9.99"])
        late = m["test_keys"]["dns_late_replies"]
        self.assertEqual(len(late), 1, late)
        self.assertEqual(late[0]["transaction_id"], first["transaction_id"])
        self.assertEqual((late[0]["engine"], late[0]["query_type"], late[0]["resolver_address"]),
                         ("udp", "A", first["resolver_address"]))
        self.assertEqual([a.get("ipv4") for a in late[0]["answers"]], ["127.80.1.1"])
        self.assertGreater(late[0]["t"], late[0]["t0"])
        self.assertIsNone(late[0]["failure"])
        # A resolver that answers once leaves nothing late.
        self.assertNotIn("dns_late_replies", self.ms["ok.bad.test"]["test_keys"])
        self.assertEqual(m["annotations"]["dns_late_window_ms"], "1000")

    def test_late_window_off(self):
        m, = measure(["--resolver", pxtest.BAD_DNS, "--no-system-resolver", "--timeout", "900",
                      "--allow-nonpublic-addresses", "--dns-late-window", "0", "injected.bad.test"])
        self.assertNotIn("dns_late_replies", m["test_keys"])
        p = pxtest.run(["measure", "--dns-late-window", "x", "injected.bad.test"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--dns-late-window", p.stderr)

    def test_error_rcodes(self):
        self.assertEqual(self.query("servfail.bad.test")[0]["failure"], "dns_servfail_error")
        self.assertEqual(self.query("servfail.bad.test")[0]["rcode"], 2)
        self.assertEqual(self.query("refused.bad.test")[0]["failure"], "dns_refused_error")
        self.assertEqual(self.query("refused.bad.test")[0]["rcode"], 5)

    def test_silence_and_dropped_answers_time_out(self):
        for target in ("silent.bad.test", "wrongid.bad.test", "garbage.bad.test"):
            [q] = self.query(target)
            self.assertEqual(q["failure"], "generic_timeout_error", target)
            self.assertIsNone(q["rcode"])
            self.assertIsNone(q["raw_response"])

    def test_malformed_answers_are_recorded(self):
        for target in ("malformed.bad.test", "loop.bad.test"):
            [q] = self.query(target)
            self.assertEqual(q["failure"], "dns_server_misbehaving", target)
            self.assertEqual(q["answers"], [])
            self.assertTrue(q["raw_response"])  # the bytes, for the researcher

    def test_truncated_answer_is_retried_over_tcp(self):
        udp, tcp = self.query("truncated.bad.test")
        self.assertEqual((udp["engine"], tcp["engine"]), ("udp", "tcp"))
        self.assertTrue(udp["truncated"])
        self.assertIsNone(udp["failure"])
        self.assertEqual(udp["answers"], [])
        self.assertFalse(tcp["truncated"])
        self.assertIsNone(tcp["failure"])
        self.assertEqual(len(tcp["answers"]), 12)
        self.assertEqual(udp["transaction_id"], tcp["transaction_id"])
        self.assertLessEqual(udp["t"], tcp["t0"])
        # Addresses from the TCP answer are probed.
        ips = {c["ip"] for c in self.ms["truncated.bad.test"]["test_keys"]["tcp_connect"]}
        self.assertIn(PEER["PX_TLS_GOOD"], ips)

    def test_no_answer(self):
        [q] = self.query("ok.bad.test", "AAAA")
        self.assertEqual(q["failure"], "dns_no_answer")


class Addresses(pxtest.TestCase):
    def test_nonpublic_answers_are_recorded_not_contacted(self):
        # Deliberately WITHOUT --allow-nonpublic-addresses.
        [m] = measure(["--resolver", pxtest.DNS, "--no-system-resolver", "--port", pxtest.TLS_PORT,
                       "--timeout", "2000", "nonpublic.example.test", ])
        self.assertEqual(m["test_keys"]["tcp_connect"], [])
        skipped = {s["ip"]: s["reason"] for s in m["test_keys"]["skipped_addresses"]}
        self.assertEqual(skipped, {"10.1.2.3": "private", "192.168.7.7": "private", "fe80::1": "link-local"})
        [m] = measure(["--resolver", pxtest.DNS, "--no-system-resolver", "--port", pxtest.TLS_PORT,
                       "--ca-file", pxtest.CA, "www.example.test"])
        self.assertEqual({s["reason"] for s in m["test_keys"]["skipped_addresses"]}, {"loopback"})
        self.assertEqual(m["test_keys"]["tls_handshakes"], [])

    def test_user_named_addresses_are_always_probed(self):
        [m] = measure(["--no-system-resolver", "--address", PEER["PX_TLS_GOOD"], "--address", "::1",
                       "--port", pxtest.TLS_PORT, "--ca-file", pxtest.CA, "www.example.test"])
        self.assertEqual(m["test_keys"]["queries"], [])
        self.assertIsNone(m["resolver_ip"])
        self.assertEqual({h["failure"] for h in m["test_keys"]["tls_handshakes"]}, {None})
        self.assertEqual(sorted(h["transaction_id"] for h in m["test_keys"]["tls_handshakes"]), [1, 2])

    def test_unreachable_resolver_is_data_not_an_error(self):
        [m] = measure(["--resolver", f'{PEER["PX_DNS_DEAD"]}:{PEER["PX_DNS_PORT"]}',
                       "--resolver", "[::1]:9", "--timeout", "600", "www.example.test"])
        failures = {(q["resolver_address"], q["failure"]) for q in m["test_keys"]["queries"]}
        self.assertEqual(len(m["test_keys"]["queries"]), 4)
        for addr, failure in failures:
            self.assertIn(failure, ("generic_timeout_error", "connection_refused"), addr)
        self.assertIn("[::1]:9", {a for a, _ in failures})


class Resolvers(pxtest.TestCase):
    def test_system_resolver_from_resolv_conf(self):
        """The system's nameservers come from resolv.conf (as c-ares reads
        it, port 53); here one that does not answer, so the queries record
        the failure."""
        dead = PEER["PX_DNS_DEAD"]
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(f"# test\nnameserver {dead}\noptions timeout:1\n")
        try:
            env = {"PARALLAX_RESOLV_CONF": f.name}
            p = pxtest.run(["measure", "--timeout", "600", "www.example.test"], env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            m = pxtest.json.loads(p.stdout)
            self.assertEqual({q["resolver_address"] for q in m["test_keys"]["queries"]}, {f"{dead}:53"})
            self.assertEqual(m["resolver_ip"], dead)
            self.assertEqual(m["annotations"]["system_resolver"], "true")
            # --system-resolver adds it to the explicit ones; duplicates merge.
            p = pxtest.run(["measure", "--system-resolver", "--resolver", pxtest.DNS,
                            "--resolver", pxtest.DNS, "--resolver", dead, "--timeout", "600",
                            "--port", pxtest.TLS_PORT, "--ca-file", pxtest.CA,
                            "--allow-nonpublic-addresses", "www.example.test"], env=env)
            m = pxtest.json.loads(p.stdout)
            self.assertEqual({q["resolver_address"] for q in m["test_keys"]["queries"]},
                             {pxtest.DNS, f"{dead}:53"})
            self.assertEqual(len(m["test_keys"]["queries"]), 4)
            # Without --system-resolver, explicit resolvers replace it.
            p = pxtest.run(["measure", "--resolver", pxtest.DNS, "--port", pxtest.TLS_PORT,
                            "--ca-file", pxtest.CA, "www.example.test"], env=env)
            m = pxtest.json.loads(p.stdout)
            self.assertEqual({q["resolver_address"] for q in m["test_keys"]["queries"]}, {pxtest.DNS})
            self.assertEqual(m["annotations"]["system_resolver"], "false")
        finally:
            os.unlink(f.name)


class Interrupt(pxtest.TestCase):
    def test_sigint_finishes_in_flight_and_starts_nothing_new(self):
        import signal
        import subprocess
        import time
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.jsonl")
            p = subprocess.Popen([pxtest.BIN, "measure"] + world_args(
                "--parallel", "1", "--output", out, "www.example.test", "stall.example.test",
                "nx.example.test", "expired.example.test", timeout_ms=1500),
                stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            # Wait until the first target is written, i.e. the stalling one
            # is in flight.
            while time.monotonic() < deadline:
                if os.path.exists(out) and open(out).read().count("\n") >= 1:
                    break
                time.sleep(0.02)
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 130, err)
            self.assertIn("interrupted", err)
            inputs = [pxtest.json.loads(l)["input"] for l in open(out)]
            self.assertEqual(inputs, ["www.example.test", "stall.example.test"])


class Output(pxtest.TestCase):
    def test_no_tls_measures_dns_only(self):
        # The same lookups as with TLS (every resolver, A and AAAA, CNAME
        # chains, NXDOMAIN), no TCP or TLS phase, marked in annotations;
        # a config's "tls = off" is the same, and --tls undoes it.
        targets = ["www.example.test", "alias2.example.test", "nx.example.test"]
        dns_only = by_input(measure(world_args("--no-tls", "--address", PEER["PX_TLS_GOOD"],
                                               *targets)))
        self.assertEqual(set(dns_only), set(targets))
        with_tls = by_input(measure(world_args("--address", PEER["PX_TLS_GOOD"], *targets)))

        def lookups(m):
            return sorted((q["resolver_address"], q["query_type"], q["failure"],
                           tuple((a["answer_type"], a.get("ipv4") or a.get("ipv6") or
                                  a.get("hostname")) for a in q["answers"] or []))
                          for q in m["test_keys"]["queries"])
        for t in targets:
            m = dns_only[t]
            self.assertEqual(m["annotations"]["tls"], "off")
            self.assertEqual(m["annotations"]["trust_store"], "none")  # nothing judged
            self.assertEqual(m["test_keys"]["tcp_connect"], [])
            self.assertEqual(m["test_keys"]["tls_handshakes"], [])
            self.assertEqual(m["test_keys"]["skipped_addresses"], [])
            self.assertEqual(lookups(m), lookups(with_tls[t]), t)
            self.assertNotIn("tls", with_tls[t]["annotations"])
            self.assertNotEqual(with_tls[t]["test_keys"]["tls_handshakes"], [])
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "px.conf")
            with open(conf, "w") as f:
                f.write("[parallax]\ntls = off   # DNS only\n")
            p = pxtest.run(["config", "check", conf])
            self.assertEqual(p.returncode, 0, p.stderr)
            p = pxtest.run(["measure", "--tls"] + world_args("www.example.test"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotEqual(pxtest.json.loads(p.stdout)["test_keys"]["tls_handshakes"], [])

    def test_output_file_and_targets_file(self):
        with tempfile.TemporaryDirectory() as d:
            tf = os.path.join(d, "targets.txt")
            with open(tf, "w") as f:
                f.write("# the test world\nwww.example.test\n\nexpired.example.test  # old\n")
            out = os.path.join(d, "out.jsonl")
            p = pxtest.run(["measure"] + world_args("--targets-file", tf, "--output", out,
                                                    "nx.example.test"))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, "")
            with open(out) as f:
                data = f.read()
            self.assertTrue(data.endswith("\n"))
            lines = data.splitlines()
            self.assertEqual(sorted(pxtest.json.loads(l)["input"] for l in lines),
                             ["expired.example.test", "nx.example.test", "www.example.test"])

    def test_many_targets_bounded_parallelism(self):
        targets = [f"t{i}.example.test" for i in range(60)] + ["www.example.test"] * 20
        ms = measure(world_args("--parallel", "3", *targets))
        self.assertEqual(len(ms), 80)
        self.assertEqual(sum(1 for m in ms if m["input"] == "www.example.test"), 20)
        for m in ms:
            if m["input"] == "www.example.test":
                self.assertEqual(len(m["test_keys"]["tls_handshakes"]), 2)

    def test_summary_on_stderr(self):
        p = pxtest.run(["measure"] + world_args("--summary", "www.example.test", "nx.example.test"))
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"www\.example\.test\s+2\s+2\s+-")
        self.assertRegex(p.stderr, r"nx\.example\.test\s+0\s+0\s+dns_nxdomain_error")
        self.assertEqual(len(p.stdout.splitlines()), 2)


if __name__ == "__main__":
    pxtest.main()
