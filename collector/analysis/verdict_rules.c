/* The verdict rules of docs/analysis.md, one function each, over the
 * window's index (collector/analysis/verdict_internal.h). Each returns the
 * evidence of its rule, with a one-line explanation a researcher can act
 * on, or NULL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/verdict_internal.h"
#include "common/x509_judge.h"
#include "common/json_util.h"
#include "common/timeutil.h"

/* ---- explanations ----------------------------------------------------------- */

/* "3 other groups (DE/AS3320, FR/AS3215, US/AS7922)", at most four names. */
static void px__groups_text(json_t *groups, char *out, size_t n) {
  size_t count = json_array_size(groups), used = 0;
  int w = snprintf(out, n, "%zu other group%s (", count, count == 1 ? "" : "s");
  used = w > 0 ? (size_t)w : 0;
  for (size_t i = 0; i < count && i < 4 && used < n; i++) {
    w = snprintf(out + used, n - used, "%s%s", i ? ", " : "", json_string_value(json_array_get(groups, i)));
    used += w > 0 ? (size_t)w : 0;
  }
  if (used < n)
    snprintf(out + used, n - used, "%s)", count > 4 ? ", …" : "");
}

/* "203.0.113.31, 203.0.113.32" (at most three). */
static void px__list_text(json_t *arr, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < json_array_size(arr) && i < 3 && used < n; i++) {
    int w = snprintf(out + used, n - used, "%s%s", i ? ", " : "",
                     json_string_value(json_array_get(arr, i)));
    used += w > 0 ? (size_t)w : 0;
  }
  if (json_array_size(arr) > 3 && used < n)
    snprintf(out + used, n - used, ", …");
}

static void px__when(const px__m_t *m, char *out) {
  px_time_format_ooni(m->v->measurement_start_time, out);
}

static void px__explain(json_t *e, const char *text) {
  json_object_set_new(e, "explanation", px_json_string_lossy(text, strlen(text)));
}

/* ---- the rules -------------------------------------------------------------- */

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
 * not verify (at the collector: an agent's state-installed root counts for
 * nothing), a quorum of other groups completed a VERIFIED handshake with a
 * different leaf. A leaf a quorum vouches for elsewhere is never
 * evidence: that is a server missing its intermediate. */
static json_t *px__interception(px__index_t *x, const px__m_t *m, unsigned quorum) {
  for (size_t i = 0; i < m->nflows; i++) {
    const px__flow_t *f = &m->flows[i];
    if (!f->completed || f->verified || f->leaf == NULL ||
        px__vd_vouched(x, f->leaf, m->group, quorum))
      continue;
    px_strmap_t *by_group = px_strmap_get(&x->verified_at, f->key);
    if (by_group == NULL)
      continue;
    px_strmap_t groups, leaves;
    px_strmap_init(&groups);
    px_strmap_init(&leaves);
    size_t it = 0;
    const char *g;
    void *val;
    while (px_strmap_next(by_group, &it, &g, &val)) {
      px_strmap_t *their = val;
      if (strcmp(g, m->group) == 0 || their->n == 0 ||
          (their->n == 1 && px_strmap_has(their, f->leaf)))
        continue;
      px_strset_add(&groups, g);
      size_t lt = 0;
      const char *leaf;
      while (px_strmap_next(their, &lt, &leaf, NULL))
        if (strcmp(leaf, f->leaf) != 0)
          px_strset_add(&leaves, leaf);
    }
    json_t *e = NULL;
    if (groups.n >= quorum) {
      char address[PX_ADDRSTRLEN + 8], who[256], when[PX_TIME_OONI_LEN], text[768];
      px__vd_address_text(f, address, sizeof(address));
      e = json_object();
      json_object_set_new(e, "rule", json_string("tls_interception"));
      json_object_set_new(e, "address", json_string(address));
      json_object_set_new(e, "leaf_sha256", json_string(f->leaf));
      json_object_set_new(e, "subject", px_json_copy_or_null(json_object_get(f->entry, "subject")));
      json_object_set_new(e, "issuer", px_json_copy_or_null(json_object_get(f->entry, "issuer")));
      json_object_set_new(e, "self_signed", json_boolean(f->self_signed));
      json_object_set_new(e, "agent_verified", json_boolean(f->agent_verified));
      json_t *errors = json_object_get(f->entry, "errors");
      json_object_set_new(e, "collector_errors", json_is_array(errors) ? json_deep_copy(errors)
                                                                       : json_array());
      /* The same errors by OpenSSL's names, beside the numbers. */
      json_t *names = json_array();
      size_t ei;
      json_t *ev;
      json_array_foreach(errors, ei, ev) {
        if (!json_is_integer(ev))
          continue;
        char buf[32];
        json_array_append_new(
            names, json_string(px_x509_error_name((int)json_integer_value(ev), buf, sizeof(buf))));
      }
      json_object_set_new(e, "collector_error_names", names);
      json_t *others = px__vd_sorted(&leaves, NULL, PX__SHOWN_MAX);
      json_object_set_new(e, "others_leaf_sha256", others);
      json_object_set_new(e, "others_groups", px__vd_sorted(&groups, NULL, SIZE_MAX));
      px__groups_text(json_object_get(e, "others_groups"), who, sizeof(who));
      px__when(m, when);
      const char *subject = px__s(f->entry, "subject");
      snprintf(text, sizeof(text),
               "at %s this vantage was shown %s (%s, leaf %.16s), which the collector does not "
               "trust%s; %s got a verified chain with leaf %.16s there (seen %s)",
               address, subject ? subject : "a certificate without subject",
               f->self_signed ? "self-signed" : "not self-signed", f->leaf,
               f->agent_verified ? " although the agent's own trust store accepts it" : "", who,
               json_string_value(json_array_get(others, 0)), when);
      px__explain(e, text);
    }
    px_strmap_free(&groups);
    px_strmap_free(&leaves);
    if (e != NULL)
      return e;
  }
  return NULL;
}

/* Whether an answered address of this measurement verified, or presents
 * a leaf a quorum of others saw verified (a node missing its
 * intermediate is a misconfiguration, never redirection). */
static bool px__answer_holds(px__index_t *x, const px__m_t *m, unsigned quorum) {
  for (size_t i = 0; i < m->nflows; i++)
    if (m->flows[i].resolved &&
        (m->flows[i].verified || px__vd_vouched(x, m->flows[i].leaf, m->group, quorum)))
      return true;
  return false;
}

/* Rule 3b: the first answer does not hold (no answered address verifies)
 * and a later reply to the same query carries addresses a quorum of other
 * groups saw verify: an on-path injector raced the genuine answer. */
static json_t *px__dns_injection(px__index_t *x, const px__m_t *m, unsigned quorum) {
  if (m->nlate == 0 || px__answer_holds(x, m, quorum))
    return NULL;
  for (size_t i = 0; i < m->nlate; i++) {
    json_t *late = json_object_get(m->late[i], "late"), *good = json_array();
    px_strmap_t groups;
    px_strmap_init(&groups);
    size_t k;
    json_t *a;
    json_array_foreach(late, k, a) {
      const char *ip = json_string_value(a);
      px_strmap_t *by = ip != NULL ? px_strmap_get(&x->ip_verified, ip) : NULL;
      if (by == NULL || px__vd_count_except(by, m->group) < quorum)
        continue;
      json_array_append_new(good, json_string(ip));
      size_t it = 0;
      const char *g;
      while (px_strmap_next(by, &it, &g, NULL))
        if (strcmp(g, m->group) != 0)
          px_strset_add(&groups, g);
    }
    if (json_array_size(good) == 0) {
      json_decref(good);
      px_strmap_free(&groups);
      continue;
    }
    double delay = json_number_value(json_object_get(m->late[i], "delay"));
    json_t *e = json_object();
    json_object_set_new(e, "rule", json_string("dns_injection"));
    json_object_set_new(e, "query_type", px_json_copy_or_null(json_object_get(m->late[i], "query_type")));
    json_object_set_new(e, "resolver_address",
                        px_json_copy_or_null(json_object_get(m->late[i], "resolver_address")));
    json_object_set_new(e, "answers", json_deep_copy(json_object_get(m->late[i], "first")));
    json_object_set_new(e, "late_answers", json_deep_copy(late));
    json_object_set_new(e, "verified_answers", good);
    json_object_set_new(e, "delay_ms", json_integer((json_int_t)(delay * 1000 + 0.5)));
    json_object_set_new(e, "others_groups", px__vd_sorted(&groups, NULL, SIZE_MAX));
    px_strmap_free(&groups);
    char first[160], later[160], who[256], when[PX_TIME_OONI_LEN], text[768];
    px__list_text(json_object_get(e, "answers"), first, sizeof(first));
    px__list_text(good, later, sizeof(later));
    px__groups_text(json_object_get(e, "others_groups"), who, sizeof(who));
    px__when(m, when);
    snprintf(text, sizeof(text),
             "the first DNS answer (%s) does not verify; %lld ms later another reply to the same "
             "query said %s, which %s saw verify: an on-path injector answers first (seen %s)",
             first[0] ? first : "no address", (long long)json_integer_value(json_object_get(e, "delay_ms")),
             later, who, when);
    px__explain(e, text);
    return e;
  }
  return NULL;
}

/* Rule 3: this vantage's answers share no address with the other groups'
 * answers (a quorum of them answering), and none of its answered
 * addresses holds (verified, or a leaf a quorum vouches for). */
static json_t *px__dns_inconsistent(px__index_t *x, const px__m_t *m, unsigned quorum) {
  if (!m->answered || m->naddrs == 0 || px__answer_holds(x, m, quorum))
    return NULL;
  for (size_t a = 0; a < m->naddrs; a++) {
    px_strmap_t *groups = px_strmap_get(&x->answered_by, m->addrs[a]);
    if (groups != NULL && px__vd_count_except(groups, m->group) > 0)
      return NULL; /* a shared address: geo-DNS, CDNs */
  }
  if (px__vd_count_except(&x->answering, m->group) < quorum)
    return NULL;
  /* What the others answered (bounded: a list to read, not a dump). */
  px_strmap_t theirs;
  px_strmap_init(&theirs);
  for (size_t k = 0; k < x->n && theirs.n < PX__SHOWN_MAX; k++) {
    const px__m_t *o = &x->m[k];
    if (!o->answered || strcmp(o->group, m->group) == 0)
      continue;
    for (size_t a = 0; a < o->naddrs && theirs.n < PX__SHOWN_MAX; a++)
      px_strset_add(&theirs, o->addrs[a]);
  }
  json_t *e = json_object(), *mine = json_array();
  for (size_t a = 0; a < m->naddrs && a < PX__SHOWN_MAX; a++)
    json_array_append_new(mine, json_string(m->addrs[a]));
  json_object_set_new(e, "rule", json_string("dns_inconsistent"));
  json_object_set_new(e, "answers", mine);
  json_object_set_new(e, "others_answers", px__vd_sorted(&theirs, NULL, PX__SHOWN_MAX));
  json_object_set_new(e, "others_groups", px__vd_sorted(&x->answering, m->group, SIZE_MAX));
  json_object_set_new(e, "verified_answers", json_array());
  px_strmap_free(&theirs);
  char mine_text[160], theirs_text[160], who[256], when[PX_TIME_OONI_LEN], text[768];
  px__list_text(mine, mine_text, sizeof(mine_text));
  px__list_text(json_object_get(e, "others_answers"), theirs_text, sizeof(theirs_text));
  px__groups_text(json_object_get(e, "others_groups"), who, sizeof(who));
  px__when(m, when);
  snprintf(text, sizeof(text),
           "this vantage's DNS answered %s, which no other group got and which does not verify; "
           "%s got %s (seen %s)",
           mine_text, who, theirs_text, when);
  px__explain(e, text);
  return e;
}

/* Rule 4: every handshake this vantage tried for the domain failed in a
 * way a middlebox causes, at an address where a quorum of other groups
 * completed a verified handshake. */
static json_t *px__blocked(px__index_t *x, const px__m_t *m, unsigned quorum) {
  if (m->nflows == 0)
    return NULL;
  for (size_t i = 0; i < m->nflows; i++)
    if (m->flows[i].completed)
      return NULL;
  for (size_t i = 0; i < m->nflows; i++) {
    const px__flow_t *f = &m->flows[i];
    const char *why = f->failure != NULL ? f->failure : f->connect_failure;
    px_strmap_t *by_group = px_strmap_get(&x->verified_at, f->key);
    if (!px__blocking_failure(why) || by_group == NULL ||
        px__vd_count_except(by_group, m->group) < quorum)
      continue;
    char address[PX_ADDRSTRLEN + 8], who[256], when[PX_TIME_OONI_LEN], text[512];
    px__vd_address_text(f, address, sizeof(address));
    json_t *e = json_object();
    json_object_set_new(e, "rule", json_string("tls_blocked"));
    json_object_set_new(e, "address", json_string(address));
    json_object_set_new(e, "failure", json_string(why));
    json_object_set_new(e, "others_groups", px__vd_sorted(by_group, m->group, SIZE_MAX));
    px__groups_text(json_object_get(e, "others_groups"), who, sizeof(who));
    px__when(m, when);
    snprintf(text, sizeof(text),
             "every handshake this vantage tried failed (%s at %s) where %s completed a verified "
             "one (seen %s)",
             why, address, who, when);
    px__explain(e, text);
    return e;
  }
  return NULL;
}

/* Rule 5: this vantage's chain validates, but the CA that issued its leaf
 * (the SPKI of the leaf's signer in the chain built) is seen at that
 * address by no other group, while a quorum of other groups agrees on one
 * other issuer there. A rotated leaf keeps its issuer; a CDN's other
 * certificates live at other addresses: neither is compared here. */
static json_t *px__divergent(px__index_t *x, const px__m_t *m, unsigned quorum) {
  for (size_t i = 0; i < m->nflows; i++) {
    const px__flow_t *f = &m->flows[i];
    if (!f->verified || f->issuer_spki == NULL || px__vd_vouched(x, f->leaf, m->group, quorum))
      continue;
    px_strmap_t *at = px_strmap_get(&x->issuers_at, f->key);
    px__issuer_t *mine = at != NULL ? px_strmap_get(at, f->issuer_spki) : NULL;
    if (mine == NULL || px__vd_count_except(&mine->groups, m->group) > 0)
      continue; /* another group sees this issuer here too */
    /* The other issuers at this address, the most attested first. */
    size_t it = 0, best = 0;
    const char *spki;
    void *val;
    json_t *others = json_array();
    while (px_strmap_next(at, &it, &spki, &val)) {
      px__issuer_t *is = val;
      size_t n = px__vd_count_except(&is->groups, m->group);
      if (is == mine || n == 0 || json_array_size(others) >= PX__SHOWN_MAX)
        continue;
      char first[PX_TIME_OONI_LEN], last[PX_TIME_OONI_LEN];
      px_time_format_ooni(is->first, first);
      px_time_format_ooni(is->last, last);
      json_t *o = json_object();
      json_object_set_new(o, "issuer_spki_sha256", json_string(is->spki));
      json_object_set_new(o, "issuer", px_json_string_or_null(is->name));
      json_object_set_new(o, "groups", px__vd_sorted(&is->groups, m->group, SIZE_MAX));
      json_object_set_new(o, "first_seen", json_string(first));
      json_object_set_new(o, "last_seen", json_string(last));
      json_array_append_new(others, o);
      if (n > best)
        best = n;
    }
    if (best < quorum) {
      json_decref(others);
      continue;
    }
    char address[PX_ADDRSTRLEN + 8], first[PX_TIME_OONI_LEN], last[PX_TIME_OONI_LEN];
    px__vd_address_text(f, address, sizeof(address));
    px_time_format_ooni(mine->first, first);
    px_time_format_ooni(mine->last, last);
    json_t *e = json_object();
    json_object_set_new(e, "rule", json_string("tls_divergent"));
    json_object_set_new(e, "address", json_string(address));
    json_object_set_new(e, "leaf_sha256", px_json_string_or_null(f->leaf));
    json_object_set_new(e, "leaf_spki_sha256", px_json_copy_or_null(json_object_get(f->entry, "leaf_spki_sha256")));
    json_object_set_new(e, "subject", px_json_copy_or_null(json_object_get(f->entry, "subject")));
    json_object_set_new(e, "issuer", px_json_copy_or_null(json_object_get(f->entry, "issuer")));
    json_object_set_new(e, "issuer_spki_sha256", json_string(f->issuer_spki));
    json_object_set_new(e, "first_seen", json_string(first));
    json_object_set_new(e, "last_seen", json_string(last));
    json_object_set_new(e, "others_issuers", others);
    json_t *top = json_array_get(others, 0);
    char who[256], text[768];
    px__groups_text(json_object_get(top, "groups"), who, sizeof(who));
    const char *issuer = px__s(f->entry, "issuer"), *theirs = px__s(top, "issuer");
    snprintf(text, sizeof(text),
             "at %s this vantage got a chain that validates, but issued by %s (SPKI %.16s), which "
             "no other group sees there; %s see %s (SPKI %.16s) instead; a lead to check, not "
             "proof (seen %s to %s)",
             address, issuer ? issuer : "an unnamed CA", f->issuer_spki, who,
             theirs ? theirs : "another CA", px__s(top, "issuer_spki_sha256"), first, last);
    px__explain(e, text);
    return e;
  }
  return NULL;
}

const char *px__vd_judge(px__index_t *x, const px__m_t *m, unsigned quorum, json_t **evidence) {
  *evidence = NULL;
  if (!m->evidence || px__vd_count_except(&x->with_evidence, m->group) < quorum)
    return "insufficient_data";
  if ((*evidence = px__interception(x, m, quorum)) != NULL)
    return "tls_interception";
  if ((*evidence = px__dns_injection(x, m, quorum)) != NULL ||
      (*evidence = px__dns_inconsistent(x, m, quorum)) != NULL)
    return "dns_inconsistent";
  if ((*evidence = px__blocked(x, m, quorum)) != NULL)
    return "tls_blocked";
  if ((*evidence = px__divergent(x, m, quorum)) != NULL)
    return "tls_divergent";
  return "consistent";
}
