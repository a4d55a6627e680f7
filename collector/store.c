/* The store interface: px_store_open picks the implementation from the
 * URL's scheme; every other px_store_* function forwards to it. */
#include "collector/store.h"

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
  snprintf(err, errlen, "unsupported database '%s' (expected sqlite:PATH)", url);
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

int px_store_export(px_store_t *s, const px_filter_t *f, int64_t *after_id, unsigned max,
                    int (*cb)(void *data, const char *uid, const char *key_id,
                              const char *content, size_t content_len, const char *signature,
                              time_t received_at),
                    void *data) {
  return s->ops->export_rows(s, f, after_id, max, cb, data);
}

int px_store_unanalyzed(px_store_t *s, unsigned max,
                        int (*cb)(void *data, const px_stored_t *m), void *data) {
  return s->ops->unanalyzed(s, max, cb, data);
}

int px_store_put_summaries(px_store_t *s, const px_summary_row_t *rows, size_t n,
                           int64_t analyzed_up_to) {
  return s->ops->put_summaries(s, rows, n, analyzed_up_to);
}

int px_store_analysis_progress(px_store_t *s, int64_t *analyzed, int64_t *newest) {
  return s->ops->analysis_progress(s, analyzed, newest);
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
