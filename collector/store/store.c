/* The store interface: px_store_open picks the implementation from the
 * URL's scheme; every other px_store_* function forwards to it. */
#include "collector/store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_store_open(const char *url, px_store_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (strncmp(url, "sqlite:", 7) == 0) {
    if (url[7] == '\0') {
      snprintf(err, errlen, "--db sqlite:PATH: the path is missing");
      return -EINVAL;
    }
    return px_store_sqlite_open(url + 7, out, err, errlen);
  }
  if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
    return px_store_pg_open(url, out, err, errlen);
  char shown[512];
  px_store_url_redact(url, shown, sizeof(shown));
  snprintf(err, errlen,
           "unsupported database '%s' (expected sqlite:PATH or postgresql://USER@HOST/DB)", shown);
  return -EPROTONOSUPPORT;
}

void px_store_close(px_store_t *s) {
  if (s != NULL)
    s->ops->close(s);
}

int px_store_put(px_store_t *s, px_submission_t *sub, bool *duplicate) {
  return s->ops->put(s, sub, duplicate);
}

int px_store_get(px_store_t *s, const char *uid, char **content, size_t *content_len,
                 char **signature, char **key_id) {
  return s->ops->get(s, uid, content, content_len, signature, key_id);
}

int px_store_list(px_store_t *s, const px_filter_t *f, json_t **results, char *next_cursor,
                  size_t cursor_len) {
  return s->ops->list(s, f, results, next_cursor, cursor_len);
}

int px_store_keys(px_store_t *s,
                  int (*cb)(void *data, const char *key_id, const char *pubkey,
                            time_t first_seen, time_t last_seen, time_t valid_before),
                  void *data) {
  return s->ops->keys(s, cb, data);
}

int px_store_rotate_key(px_store_t *s, const px_ssh_pubkey_t *old_key,
                        const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                        time_t *stored) {
  return s->ops->rotate_key(s, old_key, new_key, valid_before, now, stored);
}

int px_store_export_open(px_store_t *s, const px_filter_t *f, px_store_export_t **out) {
  *out = NULL;
  return s->ops->export_open(s, f, out);
}

int px_store_export_next(px_store_export_t *e, unsigned max,
                         int (*cb)(void *data, const px_stored_row_t *row), void *data) {
  return e->store->ops->export_next(e, max, cb, data);
}

void px_store_export_close(px_store_export_t *e) {
  if (e != NULL)
    e->store->ops->export_close(e);
}

int px_store_analyze(px_store_t *s, unsigned max,
                     int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                     void *data) {
  return s->ops->analyze(s, max, summarize, data);
}

int px_store_analysis_version(px_store_t *s, int version, bool *requeued) {
  return s->ops->analysis_version(s, version, requeued);
}

int px_store_quarantined(px_store_t *s, unsigned limit,
                         int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                         void *data, int64_t *total) {
  return s->ops->quarantined(s, limit, cb, data, total);
}

int px_store_analysis_mark(px_store_t *s, int64_t *mark) {
  return s->ops->analysis_mark(s, mark);
}

int px_store_analysis_reached(px_store_t *s, int64_t mark, bool *reached) {
  return s->ops->analysis_reached(s, mark, reached);
}

int px_store_summaries(px_store_t *s, const char *domain, time_t since, time_t until,
                       bool latest_per_key,
                       int (*cb)(void *data, const px_summary_row_t *row), void *data) {
  return s->ops->summaries(s, domain, since, until, latest_per_key, cb, data);
}

void px_store_set_commit_hook(px_store_t *s, void (*fn)(void *data), void *data) {
  s->ops->set_commit_hook(s, fn, data);
}

int px_store_ping(px_store_t *s) {
  return s->ops->ping(s);
}

int px_store_log_head(px_store_t *s, uint64_t *size, uint8_t root[32]) {
  return s->ops->log_head != NULL ? s->ops->log_head(s, size, root) : -ENOTSUP;
}

int px_store_log_node(px_store_t *s, unsigned level, uint64_t index, uint8_t out[32]) {
  return s->ops->log_node != NULL ? s->ops->log_node(s, level, index, out) : -ENOTSUP;
}

int px_store_log_leaf(px_store_t *s, int64_t index, const char *uid, px_log_leaf_t *out) {
  return s->ops->log_leaf != NULL ? s->ops->log_leaf(s, index, uid, out) : -ENOTSUP;
}

void px_log_head_free(px_log_head_t *h) {
  free(h->public_key);
  free(h->signature);
  h->public_key = h->signature = NULL;
}

int px_store_log_head_put(px_store_t *s, const px_log_head_t *h) {
  return s->ops->log_head_put != NULL ? s->ops->log_head_put(s, h) : -ENOTSUP;
}

int px_store_log_heads(px_store_t *s, int (*cb)(void *data, const px_log_head_t *h), void *data) {
  return s->ops->log_heads != NULL ? s->ops->log_heads(s, cb, data) : -ENOTSUP;
}

int px_store_log_head_get(px_store_t *s, int64_t tree_size, px_log_head_t *out) {
  memset(out, 0, sizeof(*out));
  return s->ops->log_head_get != NULL ? s->ops->log_head_get(s, tree_size, out) : -ENOTSUP;
}

int px_filter_dup(px_filter_t *dst, const px_filter_t *src) {
  *dst = *src;
  const char *const from[] = {src->probe_cc, src->probe_asn, src->domain, src->test_name,
                              src->key_id};
  const char **to[] = {&dst->probe_cc, &dst->probe_asn, &dst->domain, &dst->test_name,
                       &dst->key_id};
  int rc = 0;
  for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
    *to[i] = from[i] != NULL ? strdup(from[i]) : NULL;
    if (from[i] != NULL && *to[i] == NULL)
      rc = -ENOMEM;
  }
  if (rc != 0)
    px_filter_free(dst);
  return rc;
}

void px_filter_free(px_filter_t *f) {
  free((char *)f->probe_cc);
  free((char *)f->probe_asn);
  free((char *)f->domain);
  free((char *)f->test_name);
  free((char *)f->key_id);
  f->probe_cc = f->probe_asn = f->domain = f->test_name = f->key_id = NULL;
}

/* "scheme://user:password@host…" -> "scheme://user:***@host…"; anything
 * else is copied as it is (a key=value conninfo is not accepted by
 * px_store_open, so it never gets here). */
void px_store_url_redact(const char *url, char *out, size_t n) {
  const char *scheme = strstr(url, "://");
  const char *auth = scheme ? scheme + 3 : NULL;
  const char *at = auth ? strpbrk(auth, "@/?") : NULL;
  const char *colon = NULL;
  if (at != NULL && *at == '@')
    colon = memchr(auth, ':', (size_t)(at - auth));
  if (colon == NULL) {
    snprintf(out, n, "%s", url);
    return;
  }
  snprintf(out, n, "%.*s:***%s", (int)(colon - url), url, at);
}

void px_cursor_encode(int64_t t, int64_t id, char *out, size_t n) {
  snprintf(out, n, "%" PRId64 "_%" PRId64, t, id);
}

int px_cursor_decode(const char *s, int64_t *t, int64_t *id) {
  char *end;
  errno = 0;
  long long a = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '_')
    return -EINVAL;
  const char *p = end + 1;
  long long b = strtoll(p, &end, 10);
  if (errno != 0 || end == p || *end != '\0' || b < 0)
    return -EINVAL;
  *t = a;
  *id = b;
  return 0;
}

int px_store_pool(px_store_t *s, int (*cb)(void *data, const uint8_t *der, size_t n), void *data) {
  return s->ops->pool(s, cb, data);
}

int px_store_pool_add(px_store_t *s, const px_blob_t *certs, size_t n) {
  return s->ops->pool_add(s, certs, n);
}

int px_blobs_push(px_blobs_t *b, const uint8_t *data, size_t n) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 8;
    px_blob_t *v = realloc(b->v, cap * sizeof(*v));
    if (v == NULL)
      return -ENOMEM;
    b->v = v;
    b->cap = cap;
  }
  uint8_t *copy = malloc(n ? n : 1);
  if (copy == NULL)
    return -ENOMEM;
  memcpy(copy, data, n);
  b->v[b->n].data = copy;
  b->v[b->n].len = n;
  b->n++;
  return 0;
}

void px_blobs_free(px_blobs_t *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->v[i].data);
  free(b->v);
  memset(b, 0, sizeof(*b));
}
