#include "tests/fuzz/fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "agent/scrub.h"
#include "collector/store/store.h"
#include "common/sshsig.h"
#include "collector/analysis/analysis.h"
#include "collector/ingest/validate.h"
#include "common/json_util.h"
#include "common/measurement.h"

typedef struct {
  char *data;
  size_t len, cap;
} px_fuzz_buf_t;

static void px__put(px_fuzz_buf_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->data = realloc(b->data, b->cap);
    if (b->data == NULL)
      abort();
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void px_fuzz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("px-fuzz: invariant broken: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

char *px_fuzz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    abort();
  if (size > 0)
    memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

X509_STORE *px_fuzz_trust(void) {
  static X509_STORE *store;
  if (store == NULL) {
    store = X509_STORE_new();
    if (store == NULL || X509_STORE_load_file(store, PX_FUZZ_DATA "/root.pem") != 1)
      px_fuzz_fail("cannot load %s", PX_FUZZ_DATA "/root.pem");
  }
  return store;
}

static const px_run_info_t *px__run(void) {
  static px_run_info_t run;
  static int ready;
  if (!ready) {
    if (px_run_info_init(&run, "ZZ", "AS0", PX_FUZZ_NOW) != 0)
      px_fuzz_fail("px_run_info_init");
    /* The annotations every agent writes (the schema requires them). */
    static const char *const ann[][2] = {
        {"engine_name", "parallax-fuzz"}, {"engine_version", "0.1.0"},
        {"libuv_version", "1.44.2"},      {"openssl_version", "OpenSSL 3.0.15"},
        {"c_ares_version", "1.18.1"},     {"jansson_version", "2.14"},
        {"trust_store", "file:root.pem"}};
    for (size_t i = 0; i < sizeof(ann) / sizeof(ann[0]); i++)
      px_run_annotate(&run, ann[i][0], ann[i][1]);
    ready = 1;
  }
  return &run;
}

json_t *px_fuzz_measurement(json_t *test_keys) {
  json_t *m = px_measurement_new(px__run(), "www.example.test", PX_FUZZ_NOW, 0.25, test_keys);
  if (m == NULL)
    px_fuzz_fail("px_measurement_new");
  return m;
}

static void px__validates(json_t *m, const char *what, const char *stage) {
  char why[256];
  px_measurement_meta_t meta;
  char *text = px_json_dump(m);
  if (text == NULL)
    px_fuzz_fail("%s: %s: the measurement cannot be serialised", what, stage);
  size_t n = strlen(text);
  if (px_validate_measurement(text, n, PX_FUZZ_NOW, &meta, why, sizeof(why), NULL, 0) != 0)
    px_fuzz_fail("%s: %s: the collector refuses what the agent made: %s\n%s", what, stage, why,
                 text);
  json_t *sum = px_summarize(text, n, meta.measurement_start_time, px_fuzz_trust(), NULL);
  if (sum == NULL)
    px_fuzz_fail("%s: %s: validated, but the analysis cannot read it", what, stage);
  json_decref(sum);
  free(text);
}

void px_fuzz_check_publishable(json_t *m, const char *what) {
  px__validates(m, what, "as measured");
  px_scrub_t scrub;
  memset(&scrub, 0, sizeof(scrub));
  if (px_scrub_add(&scrub, "198.51.100.23") != 0)
    px_fuzz_fail("px_scrub_add");
  json_t *copy = json_deep_copy(m);
  size_t nscrubbed = 0;
  char why[256];
  int rc = px_scrub_measurement(&scrub, copy, &nscrubbed, why, sizeof(why));
  if (rc < 0)
    px_fuzz_fail("%s: scrubbing failed: %d", what, rc);
  if (rc == 0)
    px__validates(copy, what, "scrubbed");
  json_decref(copy);
}

EVP_PKEY *px_fuzz_key(uint8_t n) {
  uint8_t seed[32];
  memset(seed, n, sizeof(seed));
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
  if (k == NULL)
    px_fuzz_fail("cannot make the Ed25519 key");
  return k;
}

void px_fuzz_sqlite_init(void) {
  if (sqlite3_config(SQLITE_CONFIG_URI, 1) != SQLITE_OK)
    px_fuzz_fail("sqlite3_config(SQLITE_CONFIG_URI) (SQLite already in use?)");
}

struct px_store *px_fuzz_store_open(const char *name) {
  char url[256], err[256];
  px_store_t *s;
  snprintf(url, sizeof(url), "sqlite:file:%s?mode=memory&cache=shared", name);
  if (px_store_open(url, &s, err, sizeof(err)) != 0)
    px_fuzz_fail("px_store_open: %s", err);
  return s;
}

/* JSON string body of bytes: escapes what JSON requires, nothing else. */
static void px__json_bytes(px_fuzz_buf_t *b, const uint8_t *p, size_t n) {
  px__put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    char esc[8];
    if (p[i] == '"' || p[i] == '\\') {
      esc[0] = '\\';
      esc[1] = (char)p[i];
      px__put(b, esc, 2);
    } else if (p[i] < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
      px__put(b, esc, 6);
    } else {
      px__put(b, &p[i], 1);
    }
  }
  px__put(b, "\"", 1);
}

char *px_fuzz_envelope(const uint8_t *content, size_t n, EVP_PKEY *key, const char *signature,
                       size_t *len) {
  char *armored = NULL;
  if (key != NULL) {
    if (px_sshsig_sign(key, PX_SSHSIG_NAMESPACE, content, n, &armored) != 0)
      px_fuzz_fail("px_sshsig_sign");
    signature = armored;
  }
  px_fuzz_buf_t b = {NULL, 0, 0};
  px__put(&b, "{\"format\":\"json\",\"content\":", 27);
  px__json_bytes(&b, content, n);
  px__put(&b, ",\"signature\":", 13);
  px__json_bytes(&b, (const uint8_t *)signature, strlen(signature));
  px__put(&b, "}", 2); /* with the NUL */
  free(armored);
  *len = b.len - 1;
  return b.data;
}
