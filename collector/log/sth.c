#include "collector/log/sth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/encoding.h"
#include "common/merkle.h"
#include "common/timeutil.h"

int px_sth_text(uint64_t size, const uint8_t root[32], time_t timestamp, char *out, size_t n) {
  return px_merkle_sth_text(size, root, timestamp, out, n);
}

/* In the signer process: the message must be a tree head exactly as
 * px_sth_text writes it, so the key vouches for nothing else, whatever
 * the parent (which parses requests) was made to send. */
static int px__check(const char *msg, size_t n, char *why, size_t whylen) {
  static const char size_key[] = "{\"tree_size\":", root_key[] = ",\"root_hash\":\"",
                    time_key[] = "\",\"timestamp\":\"";
  char copy[PX_STH_TEXT_MAX + 1], again[PX_STH_TEXT_MAX + 1], hex[65], *p, *end;
  uint8_t root[32];
  time_t ts;
  if (n > PX_STH_TEXT_MAX)
    goto refuse;
  memcpy(copy, msg, n);
  copy[n] = '\0';
  if (strlen(copy) != n || strncmp(copy, size_key, sizeof(size_key) - 1) != 0)
    goto refuse;
  p = copy + sizeof(size_key) - 1;
  if (*p < '0' || *p > '9')
    goto refuse;
  errno = 0;
  unsigned long long size = strtoull(p, &end, 10);
  if (errno != 0 || strncmp(end, root_key, sizeof(root_key) - 1) != 0)
    goto refuse;
  p = end + sizeof(root_key) - 1;
  if (strlen(p) < 64)
    goto refuse;
  memcpy(hex, p, 64);
  hex[64] = '\0';
  p += 64;
  if (px_hex_decode(hex, root, sizeof(root)) != 0 ||
      strncmp(p, time_key, sizeof(time_key) - 1) != 0)
    goto refuse;
  p += sizeof(time_key) - 1;
  end = strchr(p, '"');
  if (end == NULL || strcmp(end, "\"}") != 0)
    goto refuse;
  *end = '\0';
  if (px_time_parse_utc(p, &ts) != 0)
    goto refuse;
  /* Rendered again, byte for byte: no other spelling of the same head. */
  if (px_sth_text(size, root, ts, again, sizeof(again)) != (int)n || memcmp(again, msg, n) != 0)
    goto refuse;
  return 0;
refuse:
  snprintf(why, whylen, "not a tree head of this collector's log");
  return -EINVAL;
}

const px_signer_policy_t px_sth_signer_policy = {
    .namespace = PX_STH_NAMESPACE,
    .max_message = PX_STH_TEXT_MAX,
    .check = px__check,
};

void px_sth_free(px_sth_t *h) {
  free(h->signature);
  h->signature = NULL;
}

int px_sth_signer_start(px_sth_signer_t *t, const char *key_path, unsigned interval_s, char *err,
                        size_t errlen) {
  memset(t, 0, sizeof(*t));
  t->interval_s = interval_s;
  int rc = px_keysigner_start(&t->signer, key_path, true, &px_sth_signer_policy, err, errlen);
  if (rc != 0)
    return rc;
  pthread_mutex_init(&t->mu, NULL);
  t->running = true;
  return 0;
}

void px_sth_signer_stop(px_sth_signer_t *t) {
  if (!t->running)
    return;
  px_signer_stop(&t->signer);
  px_sth_free(&t->latest);
  pthread_mutex_destroy(&t->mu);
  t->running = false;
}

static uint64_t px__mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec;
}

/* The new latest head into the store's history; a store that cannot keep
 * it costs the history, not the head. */
void px_sth_as_head(const px_sth_signer_t *t, const px_sth_t *sth, px_log_head_t *h) {
  *h = (px_log_head_t){.tree_size = sth->tree_size, .timestamp = sth->timestamp,
                       .public_key = px_ssh_pubkey_line(&t->signer.pub),
                       .signature = sth->signature};
  memcpy(h->root, sth->root, sizeof(h->root));
  snprintf(h->key_id, sizeof(h->key_id), "%s", t->signer.pub.key_id);
}

static void px__keep(px_sth_signer_t *t, px_store_t *store) {
  px_log_head_t h;
  px_sth_as_head(t, &t->latest, &h);
  int rc = h.public_key != NULL ? px_store_log_head_put(store, &h) : -ENOMEM;
  if (rc != 0 && rc != -ENOTSUP) {
    char why[128];
    fprintf(stderr, "parallax-collector: the tree head of size %llu is served but not kept: "
            "%s\n", (unsigned long long)h.tree_size, strerror_r(-rc, why, sizeof(why)));
  }
  free(h.public_key);
}

int px_sth_latest(px_sth_signer_t *t, px_store_t *store, px_sth_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (!t->running) {
    snprintf(err, errlen, "tree heads are not signed by this collector");
    return -ENOTSUP;
  }
  uint64_t size;
  uint8_t root[32];
  int rc = px_store_log_head(store, &size, root);
  if (rc != 0) {
    snprintf(err, errlen, rc == -ENOTSUP ? "this collector's store keeps no measurement log"
                                         : "the log could not be read");
    return rc;
  }
  pthread_mutex_lock(&t->mu);
  uint64_t now = px__mono_s();
  if (!t->looked) {
    /* After a restart: the head kept last, if it is still the log's and
     * this key's, rather than a new signature of the same tree. */
    t->looked = true;
    px_log_head_t kept;
    if (px_store_log_head_get(store, -1, &kept) == 0) {
      if (kept.tree_size == size && memcmp(kept.root, root, sizeof(root)) == 0 &&
          strcmp(kept.key_id, t->signer.pub.key_id) == 0 &&
          (t->latest.signature = strdup(kept.signature)) != NULL) {
        t->latest.tree_size = size;
        t->latest.timestamp = kept.timestamp;
        memcpy(t->latest.root, root, sizeof(root));
        t->have = true;
        t->signed_at = now;
      }
      px_log_head_free(&kept);
    }
  }
  bool grown = !t->have || size != t->latest.tree_size ||
               memcmp(root, t->latest.root, sizeof(root)) != 0;
  if (grown && (!t->have || now - t->signed_at >= t->interval_s)) {
    char text[PX_STH_TEXT_MAX + 1], *sig = NULL;
    time_t ts = time(NULL);
    int len = px_sth_text(size, root, ts, text, sizeof(text));
    rc = len < 0 ? len : px_signer_sign(&t->signer, text, (size_t)len, &sig, err, errlen);
    if (rc == 0) {
      px_sth_free(&t->latest);
      t->latest = (px_sth_t){.tree_size = size, .timestamp = ts, .signature = sig};
      memcpy(t->latest.root, root, sizeof(root));
      t->have = true;
      t->signed_at = now;
      px__keep(t, store);
    }
  }
  if (rc == 0 && t->have && t->latest.signature != NULL) {
    *out = t->latest;
    out->signature = strdup(t->latest.signature);
    if (out->signature == NULL)
      rc = -ENOMEM;
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}
