#include <errno.h>
#include <string.h>

#include "probes/dns_wire.h"
#include "tests/runner.h"

/* A tiny DNS message builder for hand-made (and hand-broken) answers. */
typedef struct {
  uint8_t b[1024];
  size_t n;
} px__pkt_t;

static void px__put(px__pkt_t *p, const void *data, size_t n) {
  memcpy(p->b + p->n, data, n);
  p->n += n;
}
static void px__u16(px__pkt_t *p, unsigned v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  px__put(p, b, 2);
}
static void px__u32(px__pkt_t *p, uint32_t v) {
  px__u16(p, v >> 16);
  px__u16(p, v & 0xffff);
}
static void px__name(px__pkt_t *p, const char *dotted) {
  while (*dotted) {
    const char *dot = strchr(dotted, '.');
    size_t len = dot ? (size_t)(dot - dotted) : strlen(dotted);
    uint8_t l = (uint8_t)len;
    px__put(p, &l, 1);
    px__put(p, dotted, len);
    dotted += len + (dot ? 1 : 0);
  }
  uint8_t zero = 0;
  px__put(p, &zero, 1);
}
static void px__header(px__pkt_t *p, unsigned flags, unsigned an) {
  p->n = 0;
  px__u16(p, 0x1234);
  px__u16(p, flags);
  px__u16(p, 1);
  px__u16(p, an);
  px__u16(p, 0);
  px__u16(p, 0);
}
static void px__question(px__pkt_t *p, const char *name, unsigned type) {
  px__name(p, name);
  px__u16(p, type);
  px__u16(p, 1);
}
static void px__rr(px__pkt_t *p, unsigned type, uint32_t ttl, const void *rdata,
                   unsigned rdlen) {
  px__u16(p, 0xc00c); /* pointer to the question name */
  px__u16(p, type);
  px__u16(p, 1);
  px__u32(p, ttl);
  px__u16(p, rdlen);
  px__put(p, rdata, rdlen);
}

PX_TEST(dns_wire_answers) {
  px__pkt_t p;
  px_dns_answer_info_t info;
  const uint8_t a1[4] = {23, 59, 94, 46}, a2[4] = {203, 0, 113, 7};
  (void)state;

  px__header(&p, 0x8180, 2);
  px__question(&p, "www.icloud.com", PX_DNS_TYPE_A);
  px__rr(&p, PX_DNS_TYPE_A, 300, a1, 4);
  px__rr(&p, PX_DNS_TYPE_A, 0x80000000u, a2, 4); /* top bit: read as 0 */
  assert_int_equal(px_dns_wire_parse(p.b, p.n, PX_DNS_TYPE_A, &info), 0);
  assert_int_equal(info.rcode, 0);
  assert_false(info.truncated);
  assert_int_equal(info.naddresses, 2);
  char *s = json_dumps(info.answers, JSON_COMPACT);
  assert_string_equal(s, "[{\"answer_type\":\"A\",\"ipv4\":\"23.59.94.46\",\"ttl\":300},"
                         "{\"answer_type\":\"A\",\"ipv4\":\"203.0.113.7\",\"ttl\":0}]");
  free(s);
  json_decref(info.answers);

  const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
  px__header(&p, 0x8380, 1); /* TC set */
  px__question(&p, "www.icloud.com", PX_DNS_TYPE_AAAA);
  px__rr(&p, PX_DNS_TYPE_AAAA, 60, v6, 16);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, PX_DNS_TYPE_AAAA, &info), 0);
  assert_true(info.truncated);
  assert_int_equal(info.naddresses, 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(info.answers, 0), "ipv6")),
                      "2001:db8::10");
  json_decref(info.answers);

  /* NXDOMAIN, no answers; A records in an AAAA answer do not count. */
  px__header(&p, 0x8183, 0);
  px__question(&p, "nx.example", PX_DNS_TYPE_A);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, PX_DNS_TYPE_A, &info), 0);
  assert_int_equal(info.rcode, 3);
  assert_int_equal(json_array_size(info.answers), 0);
  json_decref(info.answers);
  px__header(&p, 0x8180, 1);
  px__question(&p, "odd.example", PX_DNS_TYPE_AAAA);
  px__rr(&p, PX_DNS_TYPE_A, 5, a1, 4);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, PX_DNS_TYPE_AAAA, &info), 0);
  assert_int_equal(info.naddresses, 0);
  assert_int_equal(json_array_size(info.answers), 1);
  json_decref(info.answers);
}

PX_TEST(dns_wire_cname_chain) {
  px__pkt_t p;
  px_dns_answer_info_t info;
  const uint8_t a[4] = {198, 51, 100, 20};
  px__pkt_t target;
  (void)state;

  px__header(&p, 0x8180, 3);
  px__question(&p, "alias.example", PX_DNS_TYPE_A);
  target.n = 0;
  px__name(&target, "edge.cdn.example");
  px__rr(&p, PX_DNS_TYPE_CNAME, 30, target.b, (unsigned)target.n);
  /* An RRSIG between the records: skipped, not an error. */
  const uint8_t sig[8] = {0};
  px__rr(&p, 46, 30, sig, sizeof(sig));
  px__rr(&p, PX_DNS_TYPE_A, 30, a, 4);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, PX_DNS_TYPE_A, &info), 0);
  assert_int_equal(json_array_size(info.answers), 2);
  json_t *c = json_array_get(info.answers, 0);
  assert_string_equal(json_string_value(json_object_get(c, "answer_type")), "CNAME");
  assert_string_equal(json_string_value(json_object_get(c, "hostname")), "edge.cdn.example");
  assert_int_equal(info.naddresses, 1);
  json_decref(info.answers);
}

PX_TEST(dns_wire_malformed) {
  px__pkt_t p;
  px_dns_answer_info_t info;
  const uint8_t a[4] = {192, 0, 2, 1};
  (void)state;

  assert_int_equal(px_dns_wire_parse(NULL, 0, 1, &info), -EBADMSG);
  assert_int_equal(px_dns_wire_parse((const uint8_t *)"short", 5, 1, &info), -EBADMSG);

  /* Answer count larger than the records present. */
  px__header(&p, 0x8180, 2);
  px__question(&p, "x.example", 1);
  px__rr(&p, 1, 1, a, 4);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, 1, &info), -EBADMSG);
  assert_null(info.answers);

  /* RDLENGTH running past the end. */
  px__header(&p, 0x8180, 1);
  px__question(&p, "x.example", 1);
  px__rr(&p, 1, 1, a, 4);
  p.b[p.n - 5] = 0x40;
  assert_int_equal(px_dns_wire_parse(p.b, p.n, 1, &info), -EBADMSG);

  /* An A record of the wrong length. */
  px__header(&p, 0x8180, 1);
  px__question(&p, "x.example", 1);
  px__rr(&p, 1, 1, a, 3);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, 1, &info), -EBADMSG);

  /* A compression pointer that points at itself. */
  px__header(&p, 0x8180, 1);
  px__question(&p, "x.example", 1);
  size_t at = p.n;
  px__u16(&p, 0xc000 | (unsigned)at);
  px__u16(&p, 1);
  px__u16(&p, 1);
  px__u32(&p, 1);
  px__u16(&p, 4);
  px__put(&p, a, 4);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, 1, &info), -EBADMSG);

  /* Question cut short. */
  px__header(&p, 0x8180, 0);
  px__name(&p, "x.example");
  px__u16(&p, 1);
  assert_int_equal(px_dns_wire_parse(p.b, p.n, 1, &info), -EBADMSG);

  /* Every truncation of a valid answer is refused or parsed, never read
   * past its end (ASan watches this one). */
  px__header(&p, 0x8180, 1);
  px__question(&p, "x.example", 1);
  px__rr(&p, 1, 1, a, 4);
  for (size_t n = 0; n < p.n; n++) {
    uint8_t *copy = malloc(n > 0 ? n : 1);
    memcpy(copy, p.b, n);
    if (px_dns_wire_parse(copy, n, 1, &info) == 0)
      json_decref(info.answers);
    free(copy);
  }
}
