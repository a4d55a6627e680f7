/* A DNS response as a hostile resolver (or a censor's injector) sends it,
 * through what the agent does with it: px_dns_entry_fields (the df-002
 * entry agent/job.c records), the addresses it would then probe, and the
 * measurement that would be signed and uploaded, which the collector must
 * accept and be able to analyse. Input: the raw wire response; it is also
 * replayed as a duplicate late reply, and split in two as a first reply
 * followed by a late one (test_keys.dns_late_replies, which the analysis
 * pairs with the first answer). */
#include <ares.h>
#include <string.h>

#include "common/netaddr.h"
#include "probes/dns_wire.h"
#include "tests/fuzz/fuzz_common.h"

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_fuzz_trust();
  return 0;
}

/* What agent/job.c does with the answers: every A/AAAA text must be an
 * address that parses back to itself (else a probed address would be
 * silently lost), and is then either probed or listed as skipped. */
static json_t *px__skipped(json_t *answers, int qtype) {
  json_t *skipped = json_array();
  const char *key = qtype == PX_DNS_TYPE_A ? "ipv4" : "ipv6";
  size_t i;
  json_t *a;
  json_array_foreach(answers, i, a) {
    const char *ip = json_string_value(json_object_get(a, key));
    if (ip == NULL)
      continue;
    struct sockaddr_storage ss;
    char back[PX_ADDRSTRLEN];
    if (px_addr_parse_ip(ip, &ss) != 0)
      px_fuzz_fail("answer address '%s' does not parse", ip);
    px_addr_format_ip((struct sockaddr *)&ss, back, sizeof(back));
    if (strcmp(back, ip) != 0)
      px_fuzz_fail("answer address '%s' formats back as '%s'", ip, back);
    const char *why = NULL;
    if (!px_addr_is_public((struct sockaddr *)&ss, &why)) {
      json_t *s = json_object();
      json_object_set_new(s, "ip", json_string(ip));
      json_object_set_new(s, "reason", json_string(why));
      json_object_set_new(s, "transaction_id", json_integer(1));
      json_array_append_new(skipped, s);
    }
  }
  return skipped;
}

/* A df-002 entry of one wire reply. n gets how many addresses it holds. */
static json_t *px__entry(const uint8_t *data, size_t size, int qtype, bool final,
                         const char *engine, int *n) {
  char type_buf[16];
  json_t *e = json_object();
  json_object_set_new(e, "engine", json_string(engine));
  json_object_set_new(e, "resolver_address", json_string("127.80.0.54:5353"));
  json_object_set_new(e, "hostname", json_string("www.example.test"));
  json_object_set_new(e, "query_type", json_string(px_dns_type_name(qtype, type_buf, sizeof(type_buf))));
  *n = px_dns_entry_fields(e, ARES_EBADRESP, 0, data, size, qtype, final);
  json_object_set_new(e, "t0", json_real(0.001));
  json_object_set_new(e, "t", json_real(0.002));
  json_object_set_new(e, "transaction_id", json_integer(1));
  json_t *answers = json_object_get(e, "answers");
  if (!json_is_array(answers) || *n < 0 || (size_t)*n > json_array_size(answers))
    px_fuzz_fail("answers/naddresses inconsistent (%d)", *n);
  return e;
}

static void px__one(const uint8_t *data, size_t size, int qtype, bool final, const char *engine,
                    const uint8_t *late, size_t late_size) {
  int n;
  json_t *e = px__entry(data, size, qtype, final, engine, &n);
  json_t *answers = json_object_get(e, "answers");

  json_t *keys = json_object(), *queries = json_array();
  json_object_set_new(keys, "skipped_addresses", px__skipped(answers, qtype));
  json_array_append_new(queries, e);
  json_object_set_new(keys, "queries", queries);
  json_object_set_new(keys, "tcp_connect", json_array());
  json_object_set_new(keys, "tls_handshakes", json_array());
  if (late != NULL) {
    json_t *l = px__entry(late, late_size, qtype, true, "udp", &n);
    json_object_set_new(l, "t", json_real(0.06));
    json_object_set_new(keys, "dns_late_replies", json_pack("[o]", l));
  }
  json_t *m = px_fuzz_measurement(keys);
  px_fuzz_check_publishable(m, "dns answer");
  json_decref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The probe asks A and AAAA of every resolver; a UDP answer may be
   * followed by a TCP one (final false), and no answer at all is an
   * entry too. */
  px__one(data, size, PX_DNS_TYPE_A, true, "udp", NULL, 0);
  px__one(data, size, PX_DNS_TYPE_AAAA, false, "tcp", NULL, 0);
  /* The same packet twice (a duplicate), and a first and a late one. */
  px__one(data, size, PX_DNS_TYPE_A, true, "udp", data, size);
  px__one(data, size / 2, PX_DNS_TYPE_A, true, "udp", data + size / 2, size - size / 2);
  return 0;
}
