#include "probes/dns_wire.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/failure.h"
#include "common/json_util.h"

#define PX__DNS_HEADER 12

static uint16_t px__u16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t px__u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

/* Decodes the (possibly compressed) name at p and stores its wire length in
 * *enclen. The name itself is returned in *name when name is not NULL. */
static int px__name(const uint8_t *p, const uint8_t *buf, size_t len,
                    char **name, long *enclen) {
  char *s = NULL;
  if (ares_expand_name(p, buf, (int)len, &s, enclen) != ARES_SUCCESS)
    return -EBADMSG;
  if (name != NULL)
    *name = s;
  else
    ares_free_string(s);
  return 0;
}

const char *px_dns_type_name(int type, char *buf, size_t buflen) {
  switch (type) {
  case PX_DNS_TYPE_A: return "A";
  case PX_DNS_TYPE_AAAA: return "AAAA";
  case PX_DNS_TYPE_CNAME: return "CNAME";
  default:
    snprintf(buf, buflen, "TYPE%d", type);
    return buf;
  }
}

static json_t *px__answer(int type, const uint8_t *rdata, uint16_t rdlen,
                          const uint8_t *buf, size_t len, uint32_t ttl) {
  char text[INET6_ADDRSTRLEN];
  json_t *a = json_object();

  json_object_set_new(a, "answer_type", json_string(px_dns_type_name(type, text, sizeof(text))));
  if (type == PX_DNS_TYPE_A) {
    if (rdlen != 4)
      goto bad;
    inet_ntop(AF_INET, rdata, text, sizeof(text));
    json_object_set_new(a, "ipv4", json_string(text));
  } else if (type == PX_DNS_TYPE_AAAA) {
    if (rdlen != 16)
      goto bad;
    inet_ntop(AF_INET6, rdata, text, sizeof(text));
    json_object_set_new(a, "ipv6", json_string(text));
  } else {
    char *target = NULL;
    long enclen;
    if (px__name(rdata, buf, len, &target, &enclen) != 0 || enclen != rdlen) {
      ares_free_string(target);
      goto bad;
    }
    json_object_set_new(a, "hostname", json_string(target));
    ares_free_string(target);
  }
  /* RFC 2181: a TTL with the top bit set is treated as zero. */
  json_object_set_new(a, "ttl", json_integer(ttl > 0x7fffffffu ? 0 : ttl));
  return a;
bad:
  json_decref(a);
  return NULL;
}

int px_dns_wire_parse(const uint8_t *buf, size_t len, int qtype,
                      px_dns_answer_info_t *info) {
  memset(info, 0, sizeof(*info));
  if (buf == NULL || len < PX__DNS_HEADER || len > 65535)
    return -EBADMSG;

  info->rcode = buf[3] & 0x0f;
  info->truncated = (buf[2] & 0x02) != 0;
  unsigned qdcount = px__u16(buf + 4), ancount = px__u16(buf + 6);
  size_t off = PX__DNS_HEADER;

  for (unsigned i = 0; i < qdcount; i++) {
    long enclen;
    if (off >= len || px__name(buf + off, buf, len, NULL, &enclen) != 0 ||
        off + (size_t)enclen + 4 > len)
      return -EBADMSG;
    off += (size_t)enclen + 4;
  }

  info->answers = json_array();
  for (unsigned i = 0; i < ancount; i++) {
    long enclen;
    if (off >= len || px__name(buf + off, buf, len, NULL, &enclen) != 0 ||
        off + (size_t)enclen + 10 > len)
      goto bad;
    const uint8_t *rr = buf + off + enclen;
    int type = px__u16(rr);
    uint32_t ttl = px__u32(rr + 4);
    uint16_t rdlen = px__u16(rr + 8);
    const uint8_t *rdata = rr + 10;
    if ((size_t)(rdata - buf) + rdlen > len)
      goto bad;
    off = (size_t)(rdata - buf) + rdlen;
    if (px__u16(rr + 2) != 1) /* class IN only */
      continue;
    if (type != PX_DNS_TYPE_A && type != PX_DNS_TYPE_AAAA &&
        type != PX_DNS_TYPE_CNAME)
      continue; /* DNSSEC signatures and the like say nothing we judge */
    if (json_array_size(info->answers) >= PX_DNS_ANSWERS_MAX)
      continue; /* still walked: the packet must parse to the end */
    json_t *a = px__answer(type, rdata, rdlen, buf, len, ttl);
    if (a == NULL)
      goto bad;
    json_array_append_new(info->answers, a);
    if (type == qtype)
      info->naddresses++;
  }
  return 0;
bad:
  json_decref(info->answers);
  info->answers = NULL;
  info->naddresses = 0;
  return -EBADMSG;
}

/* c-ares' reason for a query without an answer. ARES_ECONNREFUSED is
 * c-ares 1.18's word for any socket error, so the error the probe saw
 * decides: a refusal stays connection_refused, no route becomes
 * network_unreachable or host_unreachable (an offline vantage, not a
 * censor), anything else goes through the errno mapping. */
static const char *px__ares_failure(int status, int sock_error, char *buf, size_t n) {
  switch (status) {
  case ARES_ETIMEOUT:
    return PX_FAILURE_TIMEOUT;
  case ARES_ECONNREFUSED:
    if (sock_error == PX_DNS_SOCK_EOF)
      return PX_FAILURE_EOF;
    if (sock_error == -EBADMSG)
      return PX_FAILURE_DNS_MISBEHAVING; /* an empty datagram */
    if (sock_error < 0)
      return px_failure_from_errno(sock_error, buf, (unsigned)n);
    /* Not a refusal we saw: saying connection_refused would be a guess. */
    snprintf(buf, n, "unknown_failure: %s (no socket error seen)", ares_strerror(status));
    return buf;
  case ARES_EBADRESP:
    return PX_FAILURE_DNS_MISBEHAVING;
  case ARES_EDESTRUCTION:
  case ARES_ECANCELLED:
    return "interrupted";
  default:
    snprintf(buf, n, "unknown_failure: %s", ares_strerror(status));
    return buf;
  }
}

int px_dns_entry_fields(json_t *entry, int status, int sock_error, const uint8_t *response,
                        size_t len, int qtype, bool final) {
  char fbuf[PX_FAILURE_MAX];
  const char *failure = NULL;
  json_t *answers = json_array(), *rcode = json_null(), *raw = json_null();
  bool truncated = false;
  int naddresses = 0;

  if (response != NULL && len > 0) {
    char *b64 = px_base64_encode_alloc(response, len);
    if (b64 != NULL) {
      json_decref(raw);
      raw = json_string(b64);
      free(b64);
    }
    px_dns_answer_info_t info;
    if (px_dns_wire_parse(response, len, qtype, &info) != 0) {
      failure = PX_FAILURE_DNS_MISBEHAVING;
      if (len >= 4) {
        json_decref(rcode);
        rcode = json_integer(response[3] & 0x0f);
      }
    } else {
      json_decref(answers);
      answers = info.answers;
      json_decref(rcode);
      rcode = json_integer(info.rcode);
      truncated = info.truncated;
      naddresses = info.naddresses;
      failure = px_failure_from_rcode(info.rcode, fbuf, sizeof(fbuf));
      /* A truncated UDP answer is not a verdict: the TCP entry after it
       * is. */
      if (failure == NULL && info.naddresses == 0 && final)
        failure = PX_FAILURE_DNS_NO_ANSWER;
    }
  } else {
    failure = px__ares_failure(status, sock_error, fbuf, sizeof(fbuf));
  }
  json_object_set_new(entry, "rcode", rcode);
  json_object_set_new(entry, "truncated", json_boolean(truncated));
  json_object_set_new(entry, "answers", answers);
  json_object_set_new(entry, "raw_response", raw);
  json_object_set_new(entry, "failure", px_json_string_or_null(failure));
  return naddresses;
}
