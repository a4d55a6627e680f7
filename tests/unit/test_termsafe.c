#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/termsafe.h"
#include "tests/runner.h"

/* The rendering of s[0..n) into a buffer that always has room. */
static const char *px__esc(const char *s, size_t n) {
  static char out[PX_TERM_ESCAPED_MAX(4096)];
  assert_true(n <= 4096);
  assert_int_equal(px_term_escape(s, n, out, sizeof(out)), 0);
  return out;
}

#define PX__ESC(lit) px__esc(lit, sizeof(lit) - 1)

/* Safe for a terminal, judged without the code under test: jansson's own
 * UTF-8 validation, then no C0, DEL, C1, bidi control or separator. */
static void px__assert_terminal_clean(const char *s) {
  size_t n = strlen(s);
  json_t *j = json_stringn(s, n);
  assert_non_null(j); /* NULL: not valid UTF-8 */
  json_decref(j);
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n; i++) {
    assert_true(u[i] >= 0x20 && u[i] != 0x7f);
    if (u[i] == 0xc2)
      assert_false(u[i + 1] >= 0x80 && u[i + 1] <= 0x9f); /* U+0080..U+009F */
    if (u[i] == 0xd8)
      assert_false(u[i + 1] == 0x9c); /* U+061C */
    if (u[i] == 0xe2 && u[i + 1] == 0x80)
      assert_false(u[i + 2] == 0x8e || u[i + 2] == 0x8f || (u[i + 2] >= 0xa8 && u[i + 2] <= 0xae));
    if (u[i] == 0xe2 && u[i + 1] == 0x81)
      assert_false(u[i + 2] >= 0xa6 && u[i + 2] <= 0xa9); /* U+2066..U+2069 */
  }
}

static int px__hex(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads a rendering back into bytes, strictly by the documented
 * convention; the length, or -1 when r is not a rendering. */
static long px__unescape(const char *r, unsigned char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; r[i] != '\0';) {
    if (o + 4 > cap)
      return -1;
    if (r[i] != '\\') {
      out[o++] = (unsigned char)r[i++];
      continue;
    }
    if (r[i + 1] == '\\') {
      out[o++] = '\\';
      i += 2;
    } else if (r[i + 1] == 'x' && px__hex(r[i + 2]) >= 0 && px__hex(r[i + 3]) >= 0) {
      out[o++] = (unsigned char)(px__hex(r[i + 2]) * 16 + px__hex(r[i + 3]));
      i += 4;
    } else if (r[i + 1] == 'u') {
      unsigned cp = 0;
      for (int k = 2; k < 6; k++) {
        if (px__hex(r[i + k]) < 0)
          return -1;
        cp = cp * 16 + (unsigned)px__hex(r[i + k]);
      }
      if (cp < 0x800) {
        out[o++] = (unsigned char)(0xc0 | (cp >> 6));
      } else {
        out[o++] = (unsigned char)(0xe0 | (cp >> 12));
        out[o++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
      }
      out[o++] = (unsigned char)(0x80 | (cp & 0x3f));
      i += 6;
    } else {
      return -1;
    }
  }
  return (long)o;
}

PX_TEST(term_escape_rules) {
  (void)state;
  /* Printable ASCII and printable UTF-8 (Latin, CJK, an emoji, NBSP, the
   * joiners that scripts need) are left alone. */
  const char plain[] = "CN=www.example.test, O=\"Ltd\" caf\xc3\xa9 \xe4\xb8\xad\xe5\x9b\xbd "
                       "\xf0\x9f\x98\x80 \xc2\xa0 \xe2\x80\x8d \xf4\x8f\xbf\xbf ~";
  assert_string_equal(PX__ESC(plain), plain);
  assert_string_equal(PX__ESC(""), "");

  /* Every control, exactly as documented. */
  const char hostile[] = "a\\b \x1b[2J\x1b]0;owned\x07\r\b\t\n\x7f\x01 "
                         "\xc2\x80\xc2\x9b\xc2\x9f \xd8\x9c \xe2\x80\x8e\xe2\x80\x8f "
                         "\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad\xe2\x80\xae "
                         "\xe2\x81\xa6\xe2\x81\xa7\xe2\x81\xa8\xe2\x81\xa9 \xe2\x80\xa8\xe2\x80\xa9 z";
  assert_string_equal(PX__ESC(hostile),
                      "a\\\\b \\x1b[2J\\x1b]0;owned\\x07\\x0d\\x08\\x09\\x0a\\x7f\\x01 "
                      "\\u0080\\u009b\\u009f \\u061c \\u200e\\u200f "
                      "\\u202a\\u202b\\u202c\\u202d\\u202e "
                      "\\u2066\\u2067\\u2068\\u2069 \\u2028\\u2029 z");
  px__assert_terminal_clean(PX__ESC(hostile));

  /* The neighbours of each range are ordinary characters. */
  const char edges[] = "\xc2\xa0\xd8\x9b\xd8\x9d\xe2\x80\x8d\xe2\x80\x90\xe2\x80\xa7"
                       "\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa";
  assert_string_equal(PX__ESC(edges), edges);

  /* An explicit length reaches past a NUL, and stops where it says. */
  assert_string_equal(px__esc("a\0b", 3), "a\\x00b");
  assert_string_equal(px__esc("abc\x1b", 3), "abc");

  char out[64];
  assert_string_equal(px_term_str(NULL, out, sizeof(out)), "");
  assert_string_equal(px_term_str("tab\there", out, sizeof(out)), "tab\\x09here");
}

PX_TEST(term_escape_invalid_utf8) {
  (void)state;
  /* Each byte that is not part of well-formed UTF-8 is shown on its own;
   * whatever well-formed text follows is kept. */
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"\x80", "\\x80"},                                 /* stray continuation */
      {"\xbf\xbf", "\\xbf\\xbf"},
      {"\xc0\xaf", "\\xc0\\xaf"},                         /* overlong '/' */
      {"\xc1\xbf", "\\xc1\\xbf"},                         /* overlong U+007F */
      {"\xc0\x9b", "\\xc0\\x9b"},                         /* overlong ESC */
      {"\xe0\x80\xaf", "\\xe0\\x80\\xaf"},                /* overlong, 3 bytes */
      {"\xe0\x9f\xbf", "\\xe0\\x9f\\xbf"},                /* overlong U+07FF */
      {"\xf0\x80\x80\xaf", "\\xf0\\x80\\x80\\xaf"},       /* overlong, 4 bytes */
      {"\xf0\x8f\xbf\xbf", "\\xf0\\x8f\\xbf\\xbf"},       /* overlong U+FFFF */
      {"\xe0\x81\x9b", "\\xe0\\x81\\x9b"},                /* overlong ESC, 3 bytes */
      {"\xed\xa0\x80", "\\xed\\xa0\\x80"},                /* surrogate U+D800 */
      {"\xed\xbf\xbf", "\\xed\\xbf\\xbf"},                /* surrogate U+DFFF */
      {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},       /* U+110000 */
      {"\xf5\x80\x80\x80", "\\xf5\\x80\\x80\\x80"},
      {"\xfe\xff", "\\xfe\\xff"},
      {"\xe2\x80", "\\xe2\\x80"},                         /* cut off at the end */
      {"\xe2\x80" "A", "\\xe2\\x80A"},                    /* cut off by ASCII */
      {"\xf0\x9f\x98", "\\xf0\\x9f\\x98"},
      /* NOLINTNEXTLINE(misc-misleading-bidirectional): the input under test */
      {"\xe2\x80\xe2\x80\xae", "\\xe2\\x80\\u202e"},      /* cut off by a bidi control */
      {"\xc2\xc3\xa9", "\\xc2\xc3\xa9"},                  /* cut off by a good character */
      {"\xed\x9f\xbf", "\xed\x9f\xbf"},                   /* U+D7FF is fine */
      {"\xee\x80\x80", "\xee\x80\x80"},                   /* so is U+E000 */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *got = px__esc(cases[i].in, strlen(cases[i].in));
    if (strcmp(got, cases[i].out) != 0)
      fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, cases[i].out);
    px__assert_terminal_clean(got);
  }
}

PX_TEST(term_escape_bounded) {
  (void)state;
  char out[16];
  /* Cut between characters: never half an escape, never half of é. */
  memset(out, 'X', sizeof(out));
  assert_int_equal(px_term_escape("ab\x1b" "c", 4, out, 5), -ENOBUFS);
  assert_string_equal(out, "ab");
  assert_int_equal(px_term_escape("ab\x1b" "c", 4, out, 7), -ENOBUFS);
  assert_string_equal(out, "ab\\x1b");
  assert_int_equal(px_term_escape("ab\x1b" "c", 4, out, 8), 0);
  assert_string_equal(out, "ab\\x1bc");
  assert_int_equal(px_term_escape("a\xc3\xa9", 3, out, 3), -ENOBUFS);
  assert_string_equal(out, "a");
  /* NOLINTNEXTLINE(misc-misleading-bidirectional): the input under test */
  assert_int_equal(px_term_escape("\xe2\x80\xae", 3, out, 6), -ENOBUFS);
  assert_string_equal(out, "");
  assert_int_equal(px_term_escape("\\", 1, out, 2), -ENOBUFS);
  assert_string_equal(out, "");
  /* No room at all: nothing written, not even the NUL. */
  memset(out, 'X', sizeof(out));
  assert_int_equal(px_term_escape("a", 1, out, 0), -ENOBUFS);
  assert_int_equal(out[0], 'X');
  assert_string_equal(px_term_str("a", out, 0), "");
  assert_int_equal(out[0], 'X');
  assert_string_equal(px_term_str("abcdefghijklmnopqrstuvwxyz", out, sizeof(out)),
                      "abcdefghijklmno");

  /* PX_TERM_ESCAPED_MAX is enough for the worst input, and not more than
   * needed: n escaped bytes are 4n. */
  enum { N = 1000 };
  char *in = malloc(N), *big = malloc(PX_TERM_ESCAPED_MAX(N));
  assert_non_null(in);
  assert_non_null(big);
  for (int b = 0; b < 3; b++) {
    memset(in, b == 0 ? 0x1b : b == 1 ? 0x80 : 0xff, N);
    assert_int_equal(px_term_escape(in, N, big, PX_TERM_ESCAPED_MAX(N)), 0);
    assert_int_equal(strlen(big), 4 * N);
    assert_int_equal(px_term_escape(in, N, big, PX_TERM_ESCAPED_MAX(N) - 1), -ENOBUFS);
    assert_int_equal(strlen(big), 4 * (N - 1));
  }
  free(in);
  free(big);
}

/* Random bytes, random mixes of the interesting sequences: the rendering is
 * always terminal-clean, fits PX_TERM_ESCAPED_MAX and reads back to exactly
 * the input. */
PX_TEST(term_escape_roundtrip) {
  (void)state;
  /* NOLINTNEXTLINE(misc-misleading-bidirectional): the input under test */
  static const char *const pieces[] = {"a", "\\", "\\x1b", "\x1b", "\xc2\x9b", "\xe2\x80\xae",
                                       "\xc3\xa9", "\xf0\x9f\x98\x80", "\xe2", "\x80", "\xc0",
                                       "\xed\xa0\x80", "\xf4\x90", "u202e", "\n", "\x7f"};
  uint32_t x = 2463534242u; /* xorshift: the same sequence every run */
  unsigned char in[256], back[1024];
  char out[PX_TERM_ESCAPED_MAX(sizeof(in))];
  for (int round = 0; round < 20000; round++) {
    size_t n = 0;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    size_t len = x % sizeof(in);
    while (n < len) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      if (round % 2 == 0) {
        in[n++] = (unsigned char)(x >> 7);
      } else {
        const char *p = pieces[(x >> 3) % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t k = strlen(p);
        if (n + k > len)
          break;
        while (*p != '\0')
          in[n++] = (unsigned char)*p++;
      }
    }
    assert_int_equal(px_term_escape((const char *)in, n, out, sizeof(out)), 0);
    px__assert_terminal_clean(out);
    long m = px__unescape(out, back, sizeof(back));
    assert_int_equal(m, (long)n);
    assert_memory_equal(back, in, n);
  }
}

/* px_log renders its message the same way: a collector's detail quoted in
 * a warning cannot drive the terminal either. */
PX_TEST(log_escapes_messages) {
  (void)state;
  char path[] = "/tmp/px-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  px_log_setup("px-test", PX_LOG_INFO);
  px_log(PX_LOG_WARNING, "upload: %s", "HTTP 400: bad\x1b[2J\r\xe2\x80\xae\\x\n");
  px_log(PX_LOG_WARNING, "plain %d", 7);
  assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
  close(saved);
  char buf[256];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  close(fd);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_string_equal(buf, "px-test: upload: HTTP 400: bad\\x1b[2J\\x0d\\u202e\\\\x\n"
                           "px-test: plain 7\n");
}
