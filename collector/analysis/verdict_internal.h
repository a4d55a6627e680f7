#ifndef PX_VERDICT_INTERNAL_H
#define PX_VERDICT_INTERNAL_H

/* The comparison's inside, shared by verdict_index.c (reading summaries
 * and indexing the window), verdict_rules.c (the rules) and verdict.c (the
 * document). Every summary is read once into the structs below (strings
 * borrowed from the summaries' JSON, which the caller keeps alive), then
 * indexed by address, leaf, issuer and answer in hash maps, so that
 * judging every vantage costs what reading them cost: linear in the
 * entries of the window, plus the sorting of what is shown. The summaries
 * come from the collector's own analysis but are read as if they came
 * from anywhere: a field of the wrong type is a field missing. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/strmap.h"
#include "collector/analysis/verdict.h"
#include "common/netaddr.h"

/* What is shown of other groups' addresses, leaves or issuers. */
#define PX__SHOWN_MAX 64

typedef struct {
  const char *ip;
  int port;
  char key[PX_ADDRSTRLEN + 8]; /* "ip port": the index's key */
  bool resolved, control, completed, verified, self_signed, agent_verified, completed_from_pool;
  const char *leaf, *issuer_spki, *failure, *connect_failure, *judged_failure;
  json_t *entry; /* the summary's own entry: subject, issuer, errors */
} px__flow_t;

/* A query whose late replies brought other addresses than its first. */
typedef struct {
  json_t *entry; /* the summary's dns.late item: query_type, first, late, delay */
} px__late_t;

typedef struct {
  const px_vantage_t *v;
  const char *group; /* "CC/ASN", owned by the groups table */
  bool answered, evidence;
  const char **addrs;
  size_t naddrs;
  px__flow_t *flows;
  size_t nflows;
  json_t **late; /* dns.late entries */
  size_t nlate;
} px__m_t;

/* An issuer seen verified at one address: by which groups, and when. */
typedef struct {
  px_strmap_t groups;
  time_t first, last;
  const char *name; /* the leaf's issuer name as the DER says it */
  const char *spki;
} px__issuer_t;

/* Sets are maps whose values do not matter; nested maps are allocated and
 * listed in owned[] for freeing, like the issuer records and the keys the
 * index made itself. */
typedef struct {
  px__m_t *m;
  size_t n;
  char **group_names;
  px_strmap_t groups; /* "CC/ASN" -> itself */
  /* "ip port" -> (group -> set of leaves it saw verified there) */
  px_strmap_t verified_at;
  /* "ip port" -> (issuer spki -> px__issuer_t) for verified chains */
  px_strmap_t issuers_at;
  /* "ip port leaf" -> set of key ids that saw that leaf there */
  px_strmap_t seen_at;
  /* leaf -> groups that saw it verified, at any address (the same-leaf
   * rule: a leaf a quorum vouches for is never evidence) */
  px_strmap_t leaf_verified;
  /* ip -> groups that completed a verified handshake there (any port) */
  px_strmap_t ip_verified;
  px_strmap_t answered_by; /* ip -> set of groups whose DNS answered it */
  px_strmap_t answering;   /* groups with an answer */
  px_strmap_t with_evidence;
  char **own_keys;
  size_t nown;
  px_strmap_t **owned;
  size_t nowned, capowned;
  px__issuer_t **issuers;
  size_t nissuers;
  bool oom;
} px__index_t;

static inline bool px__b(json_t *o, const char *k) {
  return json_is_true(json_object_get(o, k));
}

static inline const char *px__s(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* verdict_index.c */
int px__vd_index(px__index_t *x, const px_vantage_t *v, size_t n);
void px__vd_index_free(px__index_t *x);
/* Members of set, but not `except`, as a sorted JSON array of at most max. */
json_t *px__vd_sorted(const px_strmap_t *set, const char *except, size_t max);
size_t px__vd_count_except(const px_strmap_t *set, const char *except);
void px__vd_address_text(const px__flow_t *f, char *out, size_t n);
/* The leaf is verified by at least quorum groups other than group. */
bool px__vd_vouched(const px__index_t *x, const char *leaf, const char *group, unsigned quorum);

/* verdict_rules.c: the verdict of one measurement, with its evidence
 * (NULL for consistent and insufficient_data). */
const char *px__vd_judge(px__index_t *x, const px__m_t *m, unsigned quorum, json_t **evidence);

#endif
