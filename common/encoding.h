#ifndef PX_ENCODING_H
#define PX_ENCODING_H

#include <stddef.h>
#include <stdint.h>

/* Length of the base64 text for n input bytes, without the terminating NUL. */
size_t px_base64_encoded_len(size_t n);

/* Standard base64 (RFC 4648, with padding) of in[0..n) into out, which must
 * hold px_base64_encoded_len(n) + 1 bytes. Always NUL-terminates. */
void px_base64_encode(const uint8_t *in, size_t n, char *out);

/* Heap-allocated base64 text of in[0..n); NULL when out of memory. */
char *px_base64_encode_alloc(const uint8_t *in, size_t n);

/* Decodes standard base64 (padding required, no whitespace). Writes at most
 * out_cap bytes and stores the decoded length in *out_len.
 * Returns 0, -EINVAL for malformed text, -ENOBUFS if out_cap is short. */
int px_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap,
                     size_t *out_len);

/* Lower-case hex of in[0..n) into out (2n + 1 bytes), NUL-terminated. */
void px_hex_encode(const uint8_t *in, size_t n, char *out);

/* Exactly 2n lower-case hex digits into out[0..n): the spelling
 * px_hex_encode writes and nothing else. 0 or -EINVAL. */
int px_hex_decode(const char *s, uint8_t *out, size_t n);

/* A decimal in [min, max], digits only (no sign, no spaces). 0 or
 * -EINVAL. */
int px_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* A number with an optional unit suffix, for budgets in config files:
 * durations "90", "90s", "15m", "2h", "1d" (seconds out) and sizes "4096",
 * "500k", "20M", "1G" (binary multiples, bytes out). 0 or -EINVAL
 * (including overflow). */
int px_parse_duration(const char *s, uint64_t *seconds);
int px_parse_size(const char *s, uint64_t *bytes);

/* Percent-encodes everything but unreserved characters (RFC 3986) into
 * out (3n + 1 bytes). */
void px_percent_encode(const char *s, char *out, size_t outlen);

#endif
