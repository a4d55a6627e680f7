#ifndef PX_DNS_WIRE_H
#define PX_DNS_WIRE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PX_DNS_TYPE_A 1
#define PX_DNS_TYPE_CNAME 5
#define PX_DNS_TYPE_AAAA 28

/* Records kept in answers[] per response (the measurement schema's bound;
 * raw_response keeps the whole packet). */
#define PX_DNS_ANSWERS_MAX 128

/* What a raw DNS response says, in df-002 terms. */
typedef struct px_dns_answer_info {
  int rcode;        /* header RCODE (0-15) */
  bool truncated;   /* TC bit */
  json_t *answers;  /* df-002 answers[]: A, AAAA and CNAME records (owned) */
  int naddresses;   /* A/AAAA answers of qtype among answers */
} px_dns_answer_info_t;

/* Parses a response we received (header, question section skipped, answer
 * section read; authority and additional ignored). Untrusted input: every
 * length is checked, compression loops are refused by ares_expand_name.
 * Returns 0 with *info filled (caller json_decref()s info->answers), or
 * -EBADMSG with info->answers NULL when the packet is malformed. */
int px_dns_wire_parse(const uint8_t *buf, size_t len, int qtype,
                      px_dns_answer_info_t *info);

/* px_dns_exchange_t.sock_error when the server closed a TCP stream; the
 * value of libuv's UV_EOF, which no errno takes. */
#define PX_DNS_SOCK_EOF (-4095)

/* The df-002 fields one wire exchange gives its queries[] entry, set on
 * entry in this order: rcode, truncated, answers, raw_response, failure.
 * response is what came back (NULL or empty when nothing did; status is
 * then c-ares' reason, and for ARES_ECONNREFUSED sock_error, as
 * px_dns_exchange_t documents it, names the real cause: network_unreachable,
 * host_unreachable, connection_refused only for a real refusal, and so on);
 * final says no exchange follows it (a truncated UDP
 * answer is followed by a TCP one, which carries the verdict). Returns the
 * number of answers of qtype. The agent's DNS step and the fuzzers share
 * it, so what is fuzzed is what a hostile resolver reaches. */
int px_dns_entry_fields(json_t *entry, int status, int sock_error, const uint8_t *response,
                        size_t len, int qtype, bool final);

/* "A", "AAAA", "CNAME" or "TYPE<n>". */
const char *px_dns_type_name(int type, char *buf, size_t buflen);

#endif
