/* GET /api/v1/log/...: the measurement log's head, its proofs and its
 * leaves (docs/transparency.md, docs/api.md). Every hash is lower-case
 * hex; proofs are RFC 9162's, computed from the store's subtree rows
 * (common/merkle.h), so each answer reads O(log n) rows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/encoding.h"
#include "common/merkle.h"
#include "common/timeutil.h"

/* How many leaves one /log/leaves answer holds at most. */
#define PX__LEAVES_MAX 1000

static json_t *px__hex(const uint8_t *h) {
  char hex[2 * PX_MERKLE_HASH_LEN + 1];
  px_hex_encode(h, PX_MERKLE_HASH_LEN, hex);
  return json_string(hex);
}

static int px__get_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32]) {
  return px_store_log_node(ctx, level, index, out);
}

/* An unsigned decimal parameter: absent (dflt), or 0 and *v; -1 with the
 * 400 answered. */
static int px__uint(px_request_t *r, const px_query_t *q, const char *name, uint64_t dflt,
                    uint64_t *v, enum MHD_Result *ret) {
  const char *s = px_query_get(q, name);
  *v = dflt;
  if (s == NULL)
    return 0;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (*s < '0' || *s > '9' || *end != '\0' || errno != 0) {
    char detail[96];
    snprintf(detail, sizeof(detail), "%s: a number of leaves (0, 1, 2, …)", name);
    *ret = px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
    return -1;
  }
  *v = x;
  return 0;
}

/* Refuses parameters the endpoint does not know, as the other endpoints do. */
static bool px__only(px_request_t *r, const px_query_t *q, const char *const *names,
                     enum MHD_Result *ret) {
  for (size_t i = 0; i < q->n; i++) {
    bool known = false;
    for (size_t k = 0; names[k] != NULL; k++)
      known = known || strcmp(q->v[i].name, names[k]) == 0;
    if (!known) {
      char detail[160];
      snprintf(detail, sizeof(detail), "unknown parameter '%.64s'", q->v[i].name);
      *ret = px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
      return false;
    }
  }
  return true;
}

/* The store's head, or an answer when there is none to give. */
static bool px__head(px_request_t *r, uint64_t *size, uint8_t root[32], enum MHD_Result *ret) {
  int rc = px_store_log_head(r->c->store, size, root);
  if (rc == 0)
    return true;
  *ret = rc == -ENOTSUP
             ? px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found",
                                "this collector's store keeps no measurement log")
             : px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                                "the log could not be read; try again later");
  return false;
}

static enum MHD_Result px__storage(px_request_t *r, int rc) {
  if (rc == -ENOENT) /* a row the head promises is missing: the log was edited */
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                            "the log is missing rows its head covers");
  return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                          "the log could not be read; try again later");
}

/* MTH of the first n leaves of the current tree. */
static int px__root_at(px_request_t *r, uint64_t n, uint8_t out[32]) {
  if (n == 0) {
    px_merkle_frontier_t empty;
    px_merkle_frontier_init(&empty);
    px_merkle_root(&empty, out);
    return 0;
  }
  return px_merkle_subtree_hash(px__get_node, r->c->store, 0, n, out);
}

static json_t *px__path_json(const px_merkle_proof_t *p) {
  json_t *a = json_array();
  for (size_t i = 0; i < p->n; i++)
    json_array_append_new(a, px__hex(p->hashes[i]));
  return a;
}

/* A signed head as the API shows it: the signed fields, then who signed
 * and the signature (over px_sth_text of the three). A head kept in the
 * store's history is shown as it was served when signed. */
static json_t *px__head_json(const px_log_head_t *h) {
  char when[PX_TIME_ISO_LEN];
  json_t *o = json_object();
  px_time_format_iso(h->timestamp, when);
  json_object_set_new(o, "tree_size", json_integer((json_int_t)h->tree_size));
  json_object_set_new(o, "root_hash", px__hex(h->root));
  json_object_set_new(o, "timestamp", json_string(when));
  json_object_set_new(o, "key_id", json_string(h->key_id));
  if (h->public_key != NULL)
    json_object_set_new(o, "public_key", json_string(h->public_key));
  json_object_set_new(o, "signature", json_string(h->signature));
  return o;
}

/* The latest head, signed by this collector's key. */
static json_t *px__signed_json(px_request_t *r, const px_sth_t *h) {
  px_log_head_t v;
  px_sth_as_head(&r->c->sth, h, &v);
  json_t *o = px__head_json(&v);
  free(v.public_key);
  return o;
}

enum MHD_Result px_api_log_sth(px_request_t *r, const px_query_t *q) {
  static const char *const names[] = {"tree_size", NULL};
  enum MHD_Result ret;
  uint64_t size, n;
  uint8_t root[32];
  if (!px__only(r, q, names, &ret) || !px__head(r, &size, root, &ret))
    return ret;
  /* The latest signed head (signed now when the log grew and the last is
   * older than --sth-interval); it may be a little behind the log. */
  px_sth_t h;
  char err[256];
  int rc = px_sth_latest(&r->c->sth, r->c->store, &h, err, sizeof(err));
  if (rc != 0)
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error", err);
  if (px__uint(r, q, "tree_size", h.tree_size, &n, &ret) != 0) {
    px_sth_free(&h);
    return ret;
  }
  if (n == h.tree_size) {
    json_t *o = px__signed_json(r, &h);
    px_sth_free(&h);
    return px_respond_json(r, MHD_HTTP_OK, o);
  }
  px_sth_free(&h);
  if (n > size)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "tree_size: larger than the log");
  /* A size that was signed once: that head, from the history. */
  px_log_head_t kept;
  rc = px_store_log_head_get(r->c->store, (int64_t)n, &kept);
  if (rc == 0) {
    json_t *o = px__head_json(&kept);
    px_log_head_free(&kept);
    return px_respond_json(r, MHD_HTTP_OK, o);
  }
  if (rc != -ENOENT && rc != -ENOTSUP)
    return px__storage(r, rc);
  /* Any other size: its root, unsigned, which a consistency proof ties to
   * a signed head. */
  rc = n == size ? 0 : px__root_at(r, n, root);
  if (rc != 0)
    return px__storage(r, rc);
  json_t *o = json_object();
  json_object_set_new(o, "tree_size", json_integer((json_int_t)n));
  json_object_set_new(o, "root_hash", px__hex(root));
  return px_respond_json(r, MHD_HTTP_OK, o);
}

static json_t *px__leaf_json(const px_log_leaf_t *l) {
  char leaf[PX_MERKLE_LEAF_MAX], when[PX_TIME_ISO_LEN];
  uint8_t hash[32];
  json_t *o = json_object();
  int len = px_merkle_log_leaf(l->content_sha256, l->uid, l->received_at, leaf, sizeof(leaf));
  px_time_format_iso(l->received_at, when);
  json_object_set_new(o, "leaf_index", json_integer(l->index));
  json_object_set_new(o, "measurement_uid", json_string(l->uid));
  json_object_set_new(o, "content_sha256", px__hex(l->content_sha256));
  json_object_set_new(o, "received_at", json_string(when));
  if (len >= 0 && px_merkle_leaf_hash(leaf, (size_t)len, hash) == 0) {
    json_object_set_new(o, "leaf", json_string(leaf));
    json_object_set_new(o, "leaf_hash", px__hex(hash));
  }
  return o;
}

enum MHD_Result px_api_log_inclusion(px_request_t *r, const px_query_t *q) {
  static const char *const names[] = {"measurement_uid", "tree_size", NULL};
  enum MHD_Result ret;
  uint64_t size, n;
  uint8_t root[32];
  if (!px__only(r, q, names, &ret) || !px__head(r, &size, root, &ret))
    return ret;
  const char *uid = px_query_get(q, "measurement_uid");
  if (uid == NULL || uid[0] == '\0')
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "measurement_uid is required");
  if (px__uint(r, q, "tree_size", size, &n, &ret) != 0)
    return ret;
  if (n > size)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "tree_size: larger than the log");
  px_log_leaf_t leaf;
  int rc = px_store_log_leaf(r->c->store, -1, uid, &leaf);
  if (rc == -ENOENT)
    return px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such measurement in the log");
  if (rc != 0)
    return px__storage(r, rc);
  if ((uint64_t)leaf.index >= n)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "tree_size: the measurement was logged after that size");
  px_merkle_proof_t *p = malloc(sizeof(*p));
  if (p == NULL)
    return MHD_NO;
  rc = px_merkle_inclusion_proof(px__get_node, r->c->store, (uint64_t)leaf.index, n, p);
  if (rc == 0 && n != size)
    rc = px__root_at(r, n, root);
  if (rc != 0) {
    free(p);
    return px__storage(r, rc);
  }
  json_t *o = px__leaf_json(&leaf);
  json_object_set_new(o, "tree_size", json_integer((json_int_t)n));
  json_object_set_new(o, "root_hash", px__hex(root));
  json_object_set_new(o, "audit_path", px__path_json(p));
  free(p);
  return px_respond_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result px_api_log_consistency(px_request_t *r, const px_query_t *q) {
  static const char *const names[] = {"first", "second", NULL};
  enum MHD_Result ret;
  uint64_t size, first, second;
  uint8_t root[32], first_root[32];
  if (!px__only(r, q, names, &ret) || !px__head(r, &size, root, &ret))
    return ret;
  if (px_query_get(q, "first") == NULL)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", "first is required");
  if (px__uint(r, q, "first", 0, &first, &ret) != 0 ||
      px__uint(r, q, "second", size, &second, &ret) != 0)
    return ret;
  if (first == 0 || first > second || second > size)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query",
                            "need 0 < first <= second <= the log's size");
  px_merkle_proof_t *p = malloc(sizeof(*p));
  if (p == NULL)
    return MHD_NO;
  int rc = px_merkle_consistency_proof(px__get_node, r->c->store, first, second, p);
  if (rc == 0)
    rc = px__root_at(r, first, first_root);
  if (rc == 0 && second != size)
    rc = px__root_at(r, second, root);
  if (rc != 0) {
    free(p);
    return px__storage(r, rc);
  }
  json_t *o = json_object();
  json_object_set_new(o, "first", json_integer((json_int_t)first));
  json_object_set_new(o, "second", json_integer((json_int_t)second));
  json_object_set_new(o, "first_root_hash", px__hex(first_root));
  json_object_set_new(o, "second_root_hash", px__hex(root));
  json_object_set_new(o, "consistency_path", px__path_json(p));
  free(p);
  return px_respond_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result px_api_log_leaves(px_request_t *r, const px_query_t *q) {
  static const char *const names[] = {"start", "end", NULL};
  enum MHD_Result ret;
  uint64_t size, start, end;
  uint8_t root[32];
  if (!px__only(r, q, names, &ret) || !px__head(r, &size, root, &ret))
    return ret;
  if (px__uint(r, q, "start", 0, &start, &ret) != 0)
    return ret;
  if (px__uint(r, q, "end", start + PX__LEAVES_MAX < size ? start + PX__LEAVES_MAX : size, &end,
               &ret) != 0)
    return ret;
  if (start > end || end > size || end - start > PX__LEAVES_MAX) {
    char detail[128];
    snprintf(detail, sizeof(detail), "need start <= end <= the log's size (%llu), at most %d "
                                     "leaves an answer", (unsigned long long)size, PX__LEAVES_MAX);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_query", detail);
  }
  json_t *leaves = json_array();
  for (uint64_t i = start; i < end; i++) {
    px_log_leaf_t leaf;
    int rc = px_store_log_leaf(r->c->store, (int64_t)i, NULL, &leaf);
    if (rc != 0) {
      json_decref(leaves);
      return px__storage(r, rc);
    }
    json_array_append_new(leaves, px__leaf_json(&leaf));
  }
  json_t *o = json_object();
  json_object_set_new(o, "tree_size", json_integer((json_int_t)size));
  json_object_set_new(o, "leaves", leaves);
  return px_respond_json(r, MHD_HTTP_OK, o);
}
