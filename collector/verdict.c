#include "collector/verdict.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/verdict_internal.h"
#include "common/json_util.h"

/* The comparison document (the index and the rules: verdict_index.c,
 * verdict_rules.c). */

static const char *const px__ranked[] = {"insufficient_data", "consistent", "tls_divergent",
                                         "tls_blocked", "dns_inconsistent", "tls_interception"};

int px_verdict_rank(const char *verdict) {
  for (int i = 0; verdict != NULL && i < (int)(sizeof(px__ranked) / sizeof(px__ranked[0])); i++)
    if (strcmp(px__ranked[i], verdict) == 0)
      return i;
  return -1;
}

/* ---- the document ---------------------------------------------------------- */

/* Addresses shown per group: a group whose vantages probed more (an
 * upload can list up to the schema's bounds) says how many were left out. */
#define PX__GROUP_ADDRESSES_MAX 64

/* The group's view of each address: leaf, verdict of the chain, and how
 * many vantages (all groups) saw the same leaf there; one row per
 * (address, leaf) in the order first met. */
static json_t *px__addresses(px__index_t *x, const px__m_t *const *members, size_t nmembers,
                             size_t *left_out) {
  json_t *out = json_array();
  px_strmap_t shown;
  px_strmap_init(&shown);
  char **keys = NULL;
  size_t nkeys = 0;
  *left_out = 0;
  for (size_t mi = 0; mi < nmembers; mi++) {
    for (size_t i = 0; i < members[mi]->nflows; i++) {
      const px__flow_t *f = &members[mi]->flows[i];
      char k[PX_ADDRSTRLEN + 8 + 72];
      snprintf(k, sizeof(k), "%s %s", f->key, f->leaf ? f->leaf : "-");
      if (px_strmap_has(&shown, k))
        continue;
      if (json_array_size(out) >= PX__GROUP_ADDRESSES_MAX) {
        (*left_out)++;
        continue;
      }
      char **more = realloc(keys, (nkeys + 1) * sizeof(char *));
      char *copy = more != NULL ? strdup(k) : NULL;
      if (more != NULL)
        keys = more;
      if (copy == NULL)
        break;
      keys[nkeys++] = copy;
      px_strset_add(&shown, copy);
      size_t seen = 0;
      if (f->leaf != NULL) {
        snprintf(k, sizeof(k), "%s %s", f->key, f->leaf);
        px_strmap_t *by = px_strmap_get(&x->seen_at, k);
        seen = by != NULL ? by->n : 0;
      }
      char address[PX_ADDRSTRLEN + 8];
      px__vd_address_text(f, address, sizeof(address));
      const char *fail = f->failure ? f->failure : f->connect_failure;
      if (fail == NULL && f->completed && !f->verified)
        fail = f->judged_failure;
      json_t *e = json_object();
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "resolved", json_boolean(f->resolved));
      json_object_set_new(e, "control", json_boolean(f->control));
      json_object_set_new(e, "completed", json_boolean(f->completed));
      json_object_set_new(e, "failure", px_json_string_or_null(fail));
      json_object_set_new(e, "leaf_sha256", px_json_string_or_null(f->leaf));
      json_t *subject = json_object_get(f->entry, "subject"), *issuer = json_object_get(f->entry, "issuer");
      json_object_set_new(e, "subject", json_is_string(subject) ? json_copy(subject) : json_null());
      json_object_set_new(e, "issuer", json_is_string(issuer) ? json_copy(issuer) : json_null());
      json_object_set_new(e, "self_signed", json_boolean(f->self_signed));
      json_object_set_new(e, "verified", json_boolean(f->verified));
      json_object_set_new(e, "completed_from_pool", json_boolean(f->completed_from_pool));
      json_object_set_new(e, "issuer_spki_sha256", px_json_string_or_null(f->issuer_spki));
      json_object_set_new(e, "agent_verified", json_boolean(f->agent_verified));
      json_object_set_new(e, "seen_by", json_integer((json_int_t)seen));
      json_array_append_new(out, e);
    }
  }
  for (size_t i = 0; i < nkeys; i++)
    free(keys[i]);
  free(keys);
  px_strmap_free(&shown);
  return out;
}

static int px__group_cmp(const void *a, const void *b) {
  json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  int rx = px_verdict_rank(px__s(x, "verdict")), ry = px_verdict_rank(px__s(y, "verdict"));
  if (rx != ry)
    return ry - rx;
  int c = strcmp(px__s(x, "probe_cc"), px__s(y, "probe_cc"));
  return c != 0 ? c : strcmp(px__s(x, "probe_asn"), px__s(y, "probe_asn"));
}

/* One group's entry: its verdict is the most severe of its vantages';
 * confidence is the share of its vantages that earn it. */
static json_t *px__group_doc(px__index_t *x, const px__m_t *const *members, size_t nm,
                             const char *const *verdicts, json_t *const *evidence) {
  const char *worst = "insufficient_data";
  for (size_t i = 0; i < nm; i++)
    if (px_verdict_rank(verdicts[i]) > px_verdict_rank(worst))
      worst = verdicts[i];
  size_t agree = 0, left_out = 0;
  json_t *ev = json_array(), *uids = json_array();
  for (size_t i = 0; i < nm; i++) {
    const px_vantage_t *v = members[i]->v;
    json_array_append_new(uids, px_json_string_or_null(v->uid));
    if (strcmp(verdicts[i], worst) != 0)
      continue;
    agree++;
    if (evidence[i] != NULL) {
      json_t *e = json_copy(evidence[i]);
      json_object_set_new(e, "key_id", px_json_string_or_null(v->key_id));
      json_object_set_new(e, "measurement_uid", px_json_string_or_null(v->uid));
      json_array_append_new(ev, e);
    }
  }
  const px_vantage_t *first = members[0]->v;
  json_t *g = json_object();
  json_object_set_new(g, "probe_cc", json_string(first->probe_cc ? first->probe_cc : "ZZ"));
  json_object_set_new(g, "probe_asn", json_string(first->probe_asn ? first->probe_asn : "AS0"));
  json_object_set_new(g, "verdict", json_string(worst));
  /* A divergent chain validates: it is a lead, not proof, and its
   * confidence says so (halved; docs/analysis.md). */
  double share = (double)agree / (double)nm;
  json_object_set_new(g, "confidence",
                      json_real(strcmp(worst, "tls_divergent") == 0 ? share / 2 : share));
  json_object_set_new(g, "vantage_count", json_integer((json_int_t)nm));
  json_object_set_new(g, "addresses", px__addresses(x, members, nm, &left_out));
  if (left_out > 0)
    json_object_set_new(g, "addresses_left_out", json_integer((json_int_t)left_out));
  json_object_set_new(g, "evidence", ev);
  json_object_set_new(g, "measurements", uids);
  return g;
}

json_t *px_compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum) {
  json_t *doc = json_object(), *groups = json_array();
  px__index_t x;
  const char **verdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **evidence = calloc(n ? n : 1, sizeof(json_t *));
  const px__m_t **members = calloc(n ? n : 1, sizeof(px__m_t *));
  const char **mverdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **mevidence = calloc(n ? n : 1, sizeof(json_t *));
  px_strmap_t by_group;
  px_strmap_init(&by_group);
  bool ok = px__vd_index(&x, v, n) == 0 && verdicts && evidence && members && mverdicts && mevidence;

  for (size_t i = 0; ok && i < n; i++)
    verdicts[i] = px__vd_judge(&x, &x.m[i], quorum, &evidence[i]);
  /* Members of each group, in input order: the group's first member
   * heads a chain of indexes. */
  size_t *next = ok ? calloc(n ? n : 1, sizeof(size_t)) : NULL;
  size_t *last = ok ? calloc(n ? n : 1, sizeof(size_t)) : NULL;
  for (size_t i = 0; next != NULL && last != NULL && i < n; i++) {
    bool added;
    void **slot = px_strmap_slot(&by_group, x.m[i].group, &added);
    if (slot == NULL)
      break;
    next[i] = SIZE_MAX;
    if (added) {
      *slot = &x.m[i]; /* the group's first member */
      last[i] = i;
    } else {
      size_t head = (size_t)((px__m_t *)*slot - x.m);
      next[last[head]] = i;
      last[head] = i;
    }
  }
  for (size_t i = 0; next != NULL && last != NULL && i < n; i++) {
    if (px_strmap_get(&by_group, x.m[i].group) != &x.m[i])
      continue; /* not the group's first member */
    size_t nm = 0;
    for (size_t k = i; k != SIZE_MAX; k = next[k]) {
      members[nm] = &x.m[k];
      mverdicts[nm] = verdicts[k];
      mevidence[nm] = evidence[k];
      nm++;
    }
    json_array_append_new(groups, px__group_doc(&x, members, nm, mverdicts, mevidence));
  }
  free(next);
  free(last);

  size_t ng = json_array_size(groups);
  json_t **sorted = calloc(ng ? ng : 1, sizeof(json_t *));
  for (size_t i = 0; sorted != NULL && i < ng; i++)
    sorted[i] = json_incref(json_array_get(groups, i));
  if (sorted != NULL) {
    qsort(sorted, ng, sizeof(json_t *), px__group_cmp);
    json_array_clear(groups);
    for (size_t i = 0; i < ng; i++)
      json_array_append_new(groups, sorted[i]);
  }
  json_object_set_new(doc, "domain", json_string(domain));
  json_object_set_new(doc, "quorum", json_integer(quorum));
  json_object_set_new(doc, "vantages", groups);
  for (size_t i = 0; evidence != NULL && i < n; i++)
    json_decref(evidence[i]);
  free(sorted);
  free(evidence);
  free(verdicts);
  free(members);
  free(mverdicts);
  free(mevidence);
  px_strmap_free(&by_group);
  px__vd_index_free(&x);
  return doc;
}

/* The addresses most groups saw verify come first, so a bound keeps the
 * best-attested ones. */
typedef struct {
  const char *ip;
  size_t groups;
} px__control_t;

static int px__control_cmp(const void *a, const void *b) {
  const px__control_t *x = a, *y = b;
  if (x->groups != y->groups)
    return x->groups > y->groups ? -1 : 1;
  return strcmp(x->ip, y->ip);
}

json_t *px_control_addresses(const px_vantage_t *v, size_t n, unsigned min_groups,
                             bool allow_nonpublic) {
  json_t *ips = json_array();
  px__index_t x;
  if (px__vd_index(&x, v, n) != 0) {
    px__vd_index_free(&x);
    return ips;
  }
  /* ip -> groups that completed a verified handshake there (any port):
   * the index has it; only public unicast counts unless allowed. */
  const px_strmap_t *by_ip = &x.ip_verified;
  px__control_t *c = calloc(by_ip->n + 1, sizeof(*c));
  size_t nc = 0, it = 0;
  const char *ip;
  void *val;
  while (c != NULL && px_strmap_next(by_ip, &it, &ip, &val)) {
    struct sockaddr_storage ss;
    if (((px_strmap_t *)val)->n < min_groups || px_addr_parse_ip(ip, &ss) != 0 ||
        (!allow_nonpublic && !px_addr_is_public((struct sockaddr *)&ss, NULL)))
      continue;
    c[nc++] = (px__control_t){ip, ((px_strmap_t *)val)->n};
  }
  if (c != NULL)
    qsort(c, nc, sizeof(*c), px__control_cmp);
  for (size_t i = 0; i < nc && i < PX_CONTROL_ADDRESSES_MAX; i++)
    json_array_append_new(ips, json_string(c[i].ip));
  free(c);
  px__vd_index_free(&x);
  return ips;
}
