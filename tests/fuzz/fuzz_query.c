/* The query string of a researcher API request (the part after '?', as
 * MHD hands it over undecoded): px_query_parse, then the filters the
 * list and export endpoints build from it (px_filter_from_query), run
 * against a small in-memory store, plus the domain/since/until reading
 * of /api/v1/compare. A next_cursor the store hands out must be one the
 * API accepts back. */
#include <stdlib.h>
#include <string.h>

#include "collector/http/query.h"
#include "collector/http/request.h"
#include "collector/ingest/submit.h"
#include "common/json_util.h"
#include "common/target.h"
#include "common/timeutil.h"
#include "tests/fuzz/fuzz_common.h"

static px_store_t *px__store;

/* Six measurements from three countries and two keys, so that filters
 * and pages have something to select from. Read-only afterwards. */
static void px__fill(void) {
  static const char *const ccs[] = {"DE", "US", "CN"};
  px_collector_t c;
  memset(&c, 0, sizeof(c));
  c.store = px__store;
  for (int i = 0; i < 6; i++) {
    EVP_PKEY *key = px_fuzz_key(i % 2 ? 0x11 : 0x22);
    json_t *keys = json_object();
    json_object_set_new(keys, "queries", json_array());
    json_object_set_new(keys, "tcp_connect", json_array());
    json_object_set_new(keys, "tls_handshakes", json_array());
    json_object_set_new(keys, "skipped_addresses", json_array());
    json_t *m = px_fuzz_measurement(keys);
    char when[PX_TIME_OONI_LEN];
    px_time_format_ooni(PX_FUZZ_NOW - (time_t)3600 * i, when);
    json_object_set_new(m, "measurement_start_time", json_string(when));
    json_object_set_new(m, "probe_cc", json_string(ccs[i % 3]));
    char *text = px_json_dump(m);
    size_t len;
    char *body = px_fuzz_envelope((const uint8_t *)text, strlen(text), key, NULL, &len);
    json_t *answer = NULL;
    if (px_submit_process(&c, NULL, body, len, PX_FUZZ_NOW, &answer) != 200)
      px_fuzz_fail("fixture measurement %d refused: %s", i,
                   json_string_value(json_object_get(answer, "detail")));
    json_decref(answer);
    free(body);
    free(text);
    json_decref(m);
    EVP_PKEY_free(key);
  }
}

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_fuzz_sqlite_init();
  px__store = px_fuzz_store_open("px-fuzz-query");
  px__fill();
  return 0;
}

static int px__export_cb(void *data, const px_stored_row_t *row) {
  (void)data;
  if (row->uid == NULL || row->key_id == NULL || row->content == NULL ||
      row->content_len == 0 || row->signature == NULL)
    px_fuzz_fail("an exported row lacks a field");
  return 0;
}

static void px__filters(const px_query_t *q) {
  for (int paged = 0; paged < 2; paged++) {
    px_filter_t f;
    char asn[16], cc[3], domain[256], detail[160];
    if (px_filter_from_query(q, paged, &f, asn, cc, domain, detail, sizeof(detail)) != 0) {
      if (detail[0] == '\0')
        px_fuzz_fail("a bad query without a reason");
      continue;
    }
    if (paged) {
      char cursor[64];
      json_t *results = NULL;
      if (px_store_list(px__store, &f, &results, cursor, sizeof(cursor)) != 0)
        px_fuzz_fail("px_store_list failed on a valid filter");
      if (json_array_size(results) > f.limit)
        px_fuzz_fail("%zu results for limit %u", json_array_size(results), f.limit);
      int64_t t, id;
      if (cursor[0] != '\0' && px_cursor_decode(cursor, &t, &id) != 0)
        px_fuzz_fail("next_cursor '%s' is refused by the API", cursor);
      json_decref(results);
    } else {
      px_store_export_t *e;
      if (px_store_export_open(px__store, &f, &e) != 0 ||
          px_store_export_next(e, 4, px__export_cb, NULL) < 0)
        px_fuzz_fail("px_store_export failed on a valid filter");
      px_store_export_close(e);
    }
  }
}

/* /api/v1/compare reads domain, since and until itself. */
static void px__compare(const px_query_t *q) {
  px_target_t t;
  const char *reason, *v;
  time_t when;
  if ((v = px_query_get(q, "domain")) != NULL)
    px_target_parse(v, 443, &t, &reason);
  if ((v = px_query_get(q, "since")) != NULL)
    px_time_parse_utc(v, &when);
  if ((v = px_query_get(q, "until")) != NULL)
    px_time_parse_utc(v, &when);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = px_fuzz_cstr(data, size);
  px_query_t q;
  if (px_query_parse(s, &q) == 0) {
    for (size_t i = 0; i < q.n; i++)
      if (q.v[i].name[0] == '\0' || px_query_get(&q, q.v[i].name) != q.v[i].value)
        px_fuzz_fail("parameter %zu is empty or shadowed", i);
    px__filters(&q);
    px__compare(&q);
    px_query_free(&q);
  } else if (q.n != 0 || q.v != NULL) {
    px_fuzz_fail("a refused query kept its parameters");
  }
  /* The decoder on its own, in place. */
  px_percent_decode(s);
  free(s);
  return 0;
}
