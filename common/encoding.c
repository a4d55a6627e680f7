#include "common/encoding.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdbool.h>

static const char px__b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t px_base64_encoded_len(size_t n) {
  return ((n + 2) / 3) * 4;
}

void px_base64_encode(const uint8_t *in, size_t n, char *out) {
  size_t i = 0;
  char *o = out;

  for (; i + 3 <= n; i += 3) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
    *o++ = px__b64_alphabet[(v >> 18) & 63];
    *o++ = px__b64_alphabet[(v >> 12) & 63];
    *o++ = px__b64_alphabet[(v >> 6) & 63];
    *o++ = px__b64_alphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    *o++ = px__b64_alphabet[(v >> 18) & 63];
    *o++ = px__b64_alphabet[(v >> 12) & 63];
    *o++ = '=';
    *o++ = '=';
  } else if (n - i == 2) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
    *o++ = px__b64_alphabet[(v >> 18) & 63];
    *o++ = px__b64_alphabet[(v >> 12) & 63];
    *o++ = px__b64_alphabet[(v >> 6) & 63];
    *o++ = '=';
  }
  *o = '\0';
}

char *px_base64_encode_alloc(const uint8_t *in, size_t n) {
  char *out = malloc(px_base64_encoded_len(n) + 1);
  if (out != NULL)
    px_base64_encode(in, n, out);
  return out;
}

/* Decoding table: 0-63 for the alphabet, 64 for '=', 255 for the rest. */
static const uint8_t px__b64_rev[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,
    ['H'] = 7,  ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13,
    ['O'] = 14, ['P'] = 15, ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20,
    ['V'] = 21, ['W'] = 22, ['X'] = 23, ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27,
    ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31, ['g'] = 32, ['h'] = 33, ['i'] = 34,
    ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39, ['o'] = 40, ['p'] = 41,
    ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47, ['w'] = 48,
    ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['+'] = 62,
    ['/'] = 63,
};

/* The table's zero default would make every unlisted byte decode as 'A';
 * this tells 'A' (0) from "not in the alphabet". */
static int px__b64_value(char c) {
  unsigned char u = (unsigned char)c;
  int v = px__b64_rev[u];
  if (v == 0 && u != 'A')
    return -1;
  return v;
}

int px_base64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap,
                     size_t *out_len) {
  size_t len = 0;

  if (n % 4 != 0)
    return -EINVAL;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = in[i + k];
      if (c == '=') {
        /* Padding only in the last quantum, only in its last two places,
         * and never followed by data. */
        if (i + 4 != n || k < 2)
          return -EINVAL;
        pad++;
        v[k] = 0;
        continue;
      }
      if (pad > 0)
        return -EINVAL;
      v[k] = px__b64_value(c);
      if (v[k] < 0)
        return -EINVAL;
    }
    uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
                 ((uint32_t)v[2] << 6) | (uint32_t)v[3];
    int produce = 3 - pad;
    /* Canonical encodings only: the bits under the padding must be zero, so
     * one byte string has exactly one accepted text form. */
    if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
      return -EINVAL;
    if (len + (size_t)produce > out_cap)
      return -ENOBUFS;
    out[len++] = (uint8_t)(w >> 16);
    if (produce > 1) out[len++] = (uint8_t)(w >> 8);
    if (produce > 2) out[len++] = (uint8_t)w;
  }
  *out_len = len;
  return 0;
}

void px_hex_encode(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

static int px__nibble(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int px_hex_decode(const char *s, uint8_t *out, size_t n) {
  if (s == NULL || strlen(s) != 2 * n)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    int hi = px__nibble(s[2 * i]), lo = px__nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

int px_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out) {
  char *end;
  if (s[0] < '0' || s[0] > '9')
    return -EINVAL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return -EINVAL;
  *out = v;
  return 0;
}

/* digits, then at most one suffix character from units (multipliers in
 * mults); nothing after it. */
static int px__parse_scaled(const char *s, const char *units, const uint64_t *mults,
                            uint64_t *out) {
  if (s[0] < '0' || s[0] > '9')
    return -EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0)
    return -EINVAL;
  uint64_t mult = 1;
  if (*end != '\0') {
    const char *u = strchr(units, *end);
    if (u == NULL || end[1] != '\0')
      return -EINVAL;
    mult = mults[u - units];
  }
  if (v > UINT64_MAX / mult)
    return -EINVAL;
  *out = (uint64_t)v * mult;
  return 0;
}

int px_parse_duration(const char *s, uint64_t *seconds) {
  static const uint64_t mults[] = {1, 60, 3600, 86400};
  return px__parse_scaled(s, "smhd", mults, seconds);
}

int px_parse_size(const char *s, uint64_t *bytes) {
  static const uint64_t mults[] = {1, 1024, 1024, 1024ULL * 1024, 1024ULL * 1024,
                                   1024ULL * 1024 * 1024, 1024ULL * 1024 * 1024};
  return px__parse_scaled(s, "bkKmMgG", mults, bytes);
}

void px_percent_encode(const char *s, char *out, size_t outlen) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (; *s != '\0' && o + 4 <= outlen; s++) {
    unsigned char c = (unsigned char)*s;
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~';
    if (plain) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
}

