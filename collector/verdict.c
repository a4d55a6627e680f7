#include "collector/verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"
#include "common/netaddr.h"

static const char *const px__ranked[] = {"insufficient_data", "consistent", "tls_blocked",
                                         "dns_inconsistent", "tls_interception"};

int px_verdict_rank(const char *verdict) {
  for (int i = 0; i < 5; i++)
    if (strcmp(px__ranked[i], verdict) == 0)
      return i;
  return -1;
}

static bool px__same_group(const px_vantage_t *a, const px_vantage_t *b) {
  return strcmp(a->probe_cc, b->probe_cc) == 0 && strcmp(a->probe_asn, b->probe_asn) == 0;
}

static void px__group_name(const px_vantage_t *v, char *out, size_t n) {
  snprintf(out, n, "%s/%s", v->probe_cc, v->probe_asn);
}

static json_t *px__tls(const px_vantage_t *v) {
  return json_object_get(v->summary, "tls");
}

static bool px__b(json_t *o, const char *k) {
  return json_is_true(json_object_get(o, k));
}

static const char *px__s(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static bool px__has_evidence(const px_vantage_t *v) {
  return px__b(json_object_get(v->summary, "dns"), "answered") ||
         json_array_size(px__tls(v)) > 0;
}

/* Adds name to the set (a JSON array of strings) unless present. */
static void px__set_add(json_t *set, const char *name) {
  size_t i;
  json_t *x;
  json_array_foreach(set, i, x)
    if (strcmp(json_string_value(x), name) == 0)
      return;
  json_array_append_new(set, json_string(name));
}

/* Groups other than v's that have any evidence. */
static size_t px__other_groups(const px_vantage_t *all, size_t n, const px_vantage_t *v) {
  json_t *set = json_array();
  char g[64];
  for (size_t i = 0; i < n; i++) {
    if (px__same_group(&all[i], v) || !px__has_evidence(&all[i]))
      continue;
    px__group_name(&all[i], g, sizeof(g));
    px__set_add(set, g);
  }
  size_t count = json_array_size(set);
  json_decref(set);
  return count;
}

/* Failures that a censor's middlebox produces, as opposed to a
 * volunteer's broken IPv6 or a missing route. */
static bool px__blocking_failure(const char *f) {
  static const char *const kinds[] = {"connection_reset", "generic_timeout_error", "eof_error",
                                      "ssl_failed_handshake", "connection_refused"};
  for (size_t i = 0; f != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
    if (strcmp(f, kinds[i]) == 0)
      return true;
  return false;
}

/* Rule 2: at an address:port where this vantage's completed handshake did
 * not verify, a quorum of other groups completed a VERIFIED handshake with
 * a different leaf. */
static json_t *px__interception(const px_vantage_t *all, size_t n, const px_vantage_t *v,
                                unsigned quorum) {
  size_t i;
  json_t *t;
  json_array_foreach(px__tls(v), i, t) {
    if (!px__b(t, "completed") || px__b(t, "verified") || px__s(t, "leaf_sha256") == NULL)
      continue;
    const char *ip = px__s(t, "ip"), *leaf = px__s(t, "leaf_sha256");
    json_int_t port = json_integer_value(json_object_get(t, "port"));
    json_t *groups = json_array(), *leaves = json_array();
    char g[64];
    for (size_t k = 0; k < n; k++) {
      if (px__same_group(&all[k], v))
        continue;
      size_t j;
      json_t *o;
      json_array_foreach(px__tls(&all[k]), j, o) {
        if (strcmp(px__s(o, "ip"), ip) != 0 || json_integer_value(json_object_get(o, "port")) != port ||
            !px__b(o, "completed") || !px__b(o, "verified") || px__s(o, "leaf_sha256") == NULL ||
            strcmp(px__s(o, "leaf_sha256"), leaf) == 0)
          continue;
        px__group_name(&all[k], g, sizeof(g));
        px__set_add(groups, g);
        px__set_add(leaves, px__s(o, "leaf_sha256"));
      }
    }
    if (json_array_size(groups) >= quorum) {
      char address[PX_ADDRSTRLEN];
      snprintf(address, sizeof(address), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, (int)port);
      json_t *e = json_object();
      json_object_set_new(e, "rule", json_string("tls_interception"));
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "leaf_sha256", json_string(leaf));
      json_object_set_new(e, "subject", px_json_copy_or_null(json_object_get(t, "subject")));
      json_object_set_new(e, "issuer", px_json_copy_or_null(json_object_get(t, "issuer")));
      json_object_set_new(e, "self_signed", json_boolean(px__b(t, "self_signed")));
      json_object_set_new(e, "collector_errors", px_json_copy_or_null(json_object_get(t, "errors")));
      json_object_set_new(e, "others_leaf_sha256", leaves);
      json_object_set_new(e, "others_groups", groups);
      return e;
    }
    json_decref(groups);
    json_decref(leaves);
  }
  return NULL;
}

/* Rule 3: this vantage's answers share no address with a quorum of other
 * groups' answers, and none of its answered addresses verified. */
static json_t *px__dns_inconsistent(const px_vantage_t *all, size_t n, const px_vantage_t *v,
                                    unsigned quorum) {
  json_t *dns = json_object_get(v->summary, "dns");
  json_t *mine = json_object_get(dns, "addresses");
  if (!px__b(dns, "answered") || json_array_size(mine) == 0)
    return NULL;
  size_t i;
  json_t *t;
  json_array_foreach(px__tls(v), i, t)
    if (px__b(t, "resolved") && px__b(t, "verified"))
      return NULL; /* an answered address verified: not redirection */
  json_t *groups = json_array(), *theirs = json_array();
  char g[64];
  for (size_t k = 0; k < n; k++) {
    if (px__same_group(&all[k], v))
      continue;
    json_t *odns = json_object_get(all[k].summary, "dns");
    if (!px__b(odns, "answered"))
      continue;
    size_t j;
    json_t *a;
    json_array_foreach(json_object_get(odns, "addresses"), j, a) {
      size_t m;
      json_t *x;
      json_array_foreach(mine, m, x) {
        if (strcmp(json_string_value(x), json_string_value(a)) == 0) {
          json_decref(groups);
          json_decref(theirs);
          return NULL; /* a shared address: geo-DNS, CDNs */
        }
      }
      px__set_add(theirs, json_string_value(a));
    }
    px__group_name(&all[k], g, sizeof(g));
    px__set_add(groups, g);
  }
  if (json_array_size(groups) < quorum) {
    json_decref(groups);
    json_decref(theirs);
    return NULL;
  }
  json_t *e = json_object();
  json_object_set_new(e, "rule", json_string("dns_inconsistent"));
  json_object_set_new(e, "answers", json_deep_copy(mine));
  json_object_set_new(e, "others_answers", theirs);
  json_object_set_new(e, "others_groups", groups);
  json_object_set_new(e, "verified_answers", json_array());
  return e;
}

/* Rule 4: every handshake this vantage tried for the domain failed in a
 * way a middlebox causes, at an address where a quorum of other groups
 * completed a verified handshake. */
static json_t *px__blocked(const px_vantage_t *all, size_t n, const px_vantage_t *v,
                           unsigned quorum) {
  size_t i;
  json_t *t, *blocked = NULL;
  if (json_array_size(px__tls(v)) == 0)
    return NULL;
  json_array_foreach(px__tls(v), i, t)
    if (px__b(t, "completed"))
      return NULL;
  json_array_foreach(px__tls(v), i, t) {
    const char *f = px__s(t, "failure") ? px__s(t, "failure") : px__s(t, "connect_failure");
    if (!px__blocking_failure(f))
      continue;
    const char *ip = px__s(t, "ip");
    json_int_t port = json_integer_value(json_object_get(t, "port"));
    json_t *groups = json_array();
    char g[64];
    for (size_t k = 0; k < n; k++) {
      if (px__same_group(&all[k], v))
        continue;
      size_t j;
      json_t *o;
      json_array_foreach(px__tls(&all[k]), j, o)
        if (strcmp(px__s(o, "ip"), ip) == 0 && json_integer_value(json_object_get(o, "port")) == port &&
            px__b(o, "completed") && px__b(o, "verified")) {
          px__group_name(&all[k], g, sizeof(g));
          px__set_add(groups, g);
        }
    }
    if (json_array_size(groups) >= quorum) {
      char address[PX_ADDRSTRLEN];
      snprintf(address, sizeof(address), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, (int)port);
      blocked = json_object();
      json_object_set_new(blocked, "rule", json_string("tls_blocked"));
      json_object_set_new(blocked, "address", json_string(address));
      json_object_set_new(blocked, "failure", json_string(f));
      json_object_set_new(blocked, "others_groups", groups);
      return blocked;
    }
    json_decref(groups);
  }
  return NULL;
}

/* The verdict of one vantage, with the evidence (NULL for consistent and
 * insufficient_data). */
static const char *px__judge(const px_vantage_t *all, size_t n, const px_vantage_t *v,
                             unsigned quorum, json_t **evidence) {
  *evidence = NULL;
  if (!px__has_evidence(v) || px__other_groups(all, n, v) < quorum)
    return "insufficient_data";
  if ((*evidence = px__interception(all, n, v, quorum)) != NULL)
    return "tls_interception";
  if ((*evidence = px__dns_inconsistent(all, n, v, quorum)) != NULL)
    return "dns_inconsistent";
  if ((*evidence = px__blocked(all, n, v, quorum)) != NULL)
    return "tls_blocked";
  return "consistent";
}

/* The group's view of each address: leaf, verdict of the chain, and how
 * many vantages (all groups) saw the same leaf there. */
static json_t *px__addresses(const px_vantage_t *all, size_t n, const px_vantage_t *const *members,
                             size_t nmembers) {
  json_t *out = json_array();
  for (size_t m = 0; m < nmembers; m++) {
    size_t i;
    json_t *t;
    json_array_foreach(px__tls(members[m]), i, t) {
      const char *ip = px__s(t, "ip"), *leaf = px__s(t, "leaf_sha256");
      json_int_t port = json_integer_value(json_object_get(t, "port"));
      char address[PX_ADDRSTRLEN];
      snprintf(address, sizeof(address), strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, (int)port);
      bool dup = false;
      size_t j;
      json_t *a;
      json_array_foreach(out, j, a)
        if (strcmp(px__s(a, "address"), address) == 0 &&
            ((leaf == NULL && px__s(a, "leaf_sha256") == NULL) ||
             (leaf != NULL && px__s(a, "leaf_sha256") != NULL && strcmp(leaf, px__s(a, "leaf_sha256")) == 0)))
          dup = true;
      if (dup)
        continue;
      int seen = 0;
      for (size_t k = 0; leaf != NULL && k < n; k++) {
        json_t *o;
        json_array_foreach(px__tls(&all[k]), j, o)
          if (strcmp(px__s(o, "ip"), ip) == 0 && json_integer_value(json_object_get(o, "port")) == port &&
              px__s(o, "leaf_sha256") != NULL && strcmp(px__s(o, "leaf_sha256"), leaf) == 0) {
            seen++;
            break;
          }
      }
      json_t *e = json_object();
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "resolved", json_boolean(px__b(t, "resolved")));
      json_object_set_new(e, "control", json_boolean(px__b(t, "control")));
      json_object_set_new(e, "completed", json_boolean(px__b(t, "completed")));
      const char *f = px__s(t, "failure") ? px__s(t, "failure") : px__s(t, "connect_failure");
      if (f == NULL && px__b(t, "completed") && !px__b(t, "verified"))
        f = px__s(t, "judged_failure");
      json_object_set_new(e, "failure", f ? json_string(f) : json_null());
      json_object_set_new(e, "leaf_sha256", leaf ? json_string(leaf) : json_null());
      json_object_set_new(e, "subject", px_json_copy_or_null(json_object_get(t, "subject")));
      json_object_set_new(e, "issuer", px_json_copy_or_null(json_object_get(t, "issuer")));
      json_object_set_new(e, "self_signed", json_boolean(px__b(t, "self_signed")));
      json_object_set_new(e, "verified", json_boolean(px__b(t, "verified")));
      json_object_set_new(e, "agent_verified", json_boolean(px__b(t, "agent_verified")));
      json_object_set_new(e, "seen_by", json_integer(seen));
      json_array_append_new(out, e);
    }
  }
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

json_t *px_compare(const char *domain, const px_vantage_t *v, size_t n, unsigned quorum) {
  json_t *doc = json_object(), *groups = json_array();
  bool *done = calloc(n ? n : 1, sizeof(bool));
  const px_vantage_t **members = calloc(n ? n : 1, sizeof(px_vantage_t *));
  const char **verdicts = calloc(n ? n : 1, sizeof(char *));
  json_t **evidence = calloc(n ? n : 1, sizeof(json_t *));

  for (size_t i = 0; i < n; i++)
    verdicts[i] = px__judge(v, n, &v[i], quorum, &evidence[i]);
  for (size_t i = 0; i < n; i++) {
    if (done[i])
      continue;
    size_t nm = 0;
    for (size_t k = i; k < n; k++)
      if (!done[k] && px__same_group(&v[i], &v[k])) {
        done[k] = true;
        members[nm++] = &v[k];
      }
    /* The group's verdict is the most severe of its vantages'; confidence
     * is the share of its vantages that earn it. */
    const char *worst = "insufficient_data";
    for (size_t m = 0; m < nm; m++) {
      const char *vv = verdicts[members[m] - v];
      if (px_verdict_rank(vv) > px_verdict_rank(worst))
        worst = vv;
    }
    size_t agree = 0;
    json_t *ev = json_array(), *uids = json_array();
    for (size_t m = 0; m < nm; m++) {
      size_t idx = (size_t)(members[m] - v);
      json_array_append_new(uids, json_string(members[m]->uid));
      if (strcmp(verdicts[idx], worst) != 0)
        continue;
      agree++;
      if (evidence[idx] != NULL) {
        json_object_set_new(evidence[idx], "key_id", json_string(members[m]->key_id));
        json_object_set_new(evidence[idx], "measurement_uid", json_string(members[m]->uid));
        json_array_append(ev, evidence[idx]);
      }
    }
    json_t *g = json_object();
    json_object_set_new(g, "probe_cc", json_string(v[i].probe_cc));
    json_object_set_new(g, "probe_asn", json_string(v[i].probe_asn));
    json_object_set_new(g, "verdict", json_string(worst));
    json_object_set_new(g, "confidence", json_real((double)agree / (double)nm));
    json_object_set_new(g, "vantage_count", json_integer((json_int_t)nm));
    json_object_set_new(g, "addresses", px__addresses(v, n, members, nm));
    json_object_set_new(g, "evidence", ev);
    json_object_set_new(g, "measurements", uids);
    json_array_append_new(groups, g);
  }
  size_t ng = json_array_size(groups);
  json_t **sorted = calloc(ng ? ng : 1, sizeof(json_t *));
  for (size_t i = 0; i < ng; i++)
    sorted[i] = json_incref(json_array_get(groups, i));
  qsort(sorted, ng, sizeof(json_t *), px__group_cmp);
  json_array_clear(groups);
  for (size_t i = 0; i < ng; i++)
    json_array_append_new(groups, sorted[i]);
  json_object_set_new(doc, "domain", json_string(domain));
  json_object_set_new(doc, "quorum", json_integer(quorum));
  json_object_set_new(doc, "vantages", groups);
  for (size_t i = 0; i < n; i++)
    json_decref(evidence[i]);
  free(sorted);
  free(evidence);
  free(verdicts);
  free(members);
  free(done);
  return doc;
}

json_t *px_control_addresses(const px_vantage_t *v, size_t n, unsigned min_groups,
                             bool allow_nonpublic) {
  json_t *ips = json_array(), *groups_per_ip = json_object();
  char g[64];
  for (size_t i = 0; i < n; i++) {
    size_t j;
    json_t *t;
    json_array_foreach(px__tls(&v[i]), j, t) {
      if (!px__b(t, "completed") || !px__b(t, "verified"))
        continue;
      const char *ip = px__s(t, "ip");
      struct sockaddr_storage ss;
      if (px_addr_parse_ip(ip, &ss) != 0 ||
          (!allow_nonpublic && !px_addr_is_public((struct sockaddr *)&ss, NULL)))
        continue;
      json_t *set = json_object_get(groups_per_ip, ip);
      if (set == NULL) {
        set = json_array();
        json_object_set_new(groups_per_ip, ip, set);
      }
      px__group_name(&v[i], g, sizeof(g));
      px__set_add(set, g);
    }
  }
  const char *ip;
  json_t *set;
  json_object_foreach(groups_per_ip, ip, set)
    if (json_array_size(set) >= min_groups)
      json_array_append_new(ips, json_string(ip));
  json_decref(groups_per_ip);
  return ips;
}
