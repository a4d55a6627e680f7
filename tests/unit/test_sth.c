/* The collector's tree-head signer (collector/log/sth.c): the key signs a
 * tree head in its one exact form, in the parallax-sth-v1 namespace, and
 * nothing else: not a measurement, not another spelling of a head. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/log/sth.h"
#include "common/sshsig.h"
#include "tests/runner.h"

PX_TEST(sth_signer_signs_only_tree_heads) {
  (void)state;
  char *d = px_test_tmpdir(), key[512], err[512], text[PX_STH_TEXT_MAX + 1];
  snprintf(key, sizeof(key), "%s/sth-key", d);
  px_signer_t s;
  assert_int_equal(px_keysigner_start(&s, key, true, &px_sth_signer_policy, err, sizeof(err)), 0);
  uint8_t root[32];
  for (int i = 0; i < 32; i++)
    root[i] = (uint8_t)(i * 7);
  int n = px_sth_text(12345, root, 1413806400, text, sizeof(text));
  assert_true(n > 0);
  assert_string_equal(text, "{\"tree_size\":12345,\"root_hash\":"
                            "\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\","
                            "\"timestamp\":\"2014-10-20T12:00:00Z\"}");
  char *sig = NULL;
  assert_int_equal(px_signer_sign(&s, text, (size_t)n, &sig, err, sizeof(err)), 0);
  assert_int_equal(px_sshsig_verify(sig, strlen(sig), PX_STH_NAMESPACE, (const uint8_t *)text,
                                    (size_t)n, NULL, NULL), 0);
  /* Not valid as a measurement signature: another namespace. */
  assert_int_not_equal(px_sshsig_verify(sig, strlen(sig), PX_SSHSIG_NAMESPACE,
                                        (const uint8_t *)text, (size_t)n, NULL, NULL), 0);
  free(sig);
  static const char *const refused[] = {
      "",
      "{\"software_name\":\"parallax\",\"test_name\":\"tls_cert_consistency\",\"probe_ip\":\"127.0.0.1\"}",
      "{\"tree_size\": 5,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-10-20T12:00:00Z\"}",
      "{\"tree_size\":05,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-10-20T12:00:00Z\"}",
      "{\"tree_size\":5,\"root_hash\":\"00070E151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-10-20T12:00:00Z\"}",
      "{\"tree_size\":5,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2\",\"timestamp\":\"2014-10-20T12:00:00Z\"}",
      "{\"tree_size\":5,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-10-20T12:00:00Z\"} ",
      "{\"tree_size\":5,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-13-20T12:00:00Z\"}",
      "{\"tree_size\":5,\"root_hash\":\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9\",\"timestamp\":\"2014-10-20T12:00:00Z\",\"x\":1}",
  };
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    sig = NULL;
    int rc = px_signer_sign(&s, refused[i], strlen(refused[i]), &sig, err, sizeof(err));
    if (rc != -EINVAL && rc != -EMSGSIZE)
      fail_msg("message %zu: signed or failed otherwise (%d): %s", i, rc, err);
    assert_null(sig);
  }
  /* Still serving after the refusals. */
  assert_int_equal(px_signer_sign(&s, text, (size_t)n, &sig, err, sizeof(err)), 0);
  free(sig);
  px_signer_stop(&s);
  px_test_rmrf(d);
  free(d);
}
