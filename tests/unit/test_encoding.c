#include <errno.h>
#include <string.h>

#include "common/encoding.h"
#include "common/json_util.h"
#include "tests/runner.h"

/* RFC 4648 section 10 test vectors. */
static const char *const px__plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
static const char *const px__b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

PX_TEST(base64_vectors) {
  (void)state;
  for (size_t i = 0; i < sizeof(px__plain) / sizeof(px__plain[0]); i++) {
    char out[16];
    uint8_t back[16];
    size_t n;
    size_t len = strlen(px__plain[i]);
    assert_int_equal(px_base64_encoded_len(len), strlen(px__b64[i]));
    px_base64_encode((const uint8_t *)px__plain[i], len, out);
    assert_string_equal(out, px__b64[i]);
    assert_int_equal(px_base64_decode(px__b64[i], strlen(px__b64[i]), back, sizeof(back), &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(back, px__plain[i], len);
  }
  /* Every byte value survives a round trip. */
  uint8_t all[256], back[256];
  size_t n;
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t)i;
  char *text = px_base64_encode_alloc(all, sizeof(all));
  assert_non_null(text);
  assert_int_equal(px_base64_decode(text, strlen(text), back, sizeof(back), &n), 0);
  assert_int_equal(n, 256);
  assert_memory_equal(all, back, 256);
  free(text);
}

PX_TEST(base64_rejects_malformed) {
  uint8_t out[16];
  size_t n;
  (void)state;
  const char *bad[] = {"Zg=", "Zg", "Z===", "Zm9v!A==", "Zg==Zg==", "Zh==", "Zm9=", "=Zg=", "Zm=v"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(px_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n), -EINVAL);
  assert_int_equal(px_base64_decode("Zm9vYmFy", 8, out, 5, &n), -ENOBUFS);
}

PX_TEST(hex_encode) {
  char out[9];
  const uint8_t in[] = {0x00, 0xab, 0x7f, 0xff};
  (void)state;
  px_hex_encode(in, sizeof(in), out);
  assert_string_equal(out, "00ab7fff");
  px_hex_encode(in, 0, out);
  assert_string_equal(out, "");
}

PX_TEST(hex_decode_only_what_encode_writes) {
  uint8_t out[4];
  (void)state;
  assert_int_equal(px_hex_decode("00ab7fff", out, 4), 0);
  assert_memory_equal(out, "\x00\xab\x7f\xff", 4);
  assert_int_equal(px_hex_decode("", out, 0), 0);
  /* One spelling only: upper case, signs, spaces and the wrong length are
   * refused, so a hash read back compares byte for byte. */
  const char *bad[] = {"00AB7fff", "00ab7ff", "00ab7fff0", "+0ab7fff", " 0ab7fff", "00ab7fg0", NULL};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(px_hex_decode(bad[i], out, 4), -EINVAL);
}

PX_TEST(json_lossy_utf8) {
  (void)state;
  struct {
    const char *in;
    size_t n;
    const char *out;
  } cases[] = {
      {"plain", 5, "plain"},
      {"\xe4\xb8\xad\xe5\x9b\xbd", 6, "\xe4\xb8\xad\xe5\x9b\xbd"}, /* 中国 */
      {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},                       /* stray byte */
      {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
      {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
      {"x\0y", 3, "x\xef\xbf\xbdy"},                               /* embedded NUL */
      {"\xe4\xb8", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* cut sequence */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *v = px_json_string_lossy(cases[i].in, cases[i].n);
    assert_non_null(v);
    assert_string_equal(json_string_value(v), cases[i].out);
    json_decref(v);
  }
  json_t *v = px_json_string_lossy(NULL, 0);
  assert_string_equal(json_string_value(v), "");
  json_decref(v);
}
