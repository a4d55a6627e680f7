#include "collector/ingest/geoip.h"

#include <ctype.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct px__geodb {
  MMDB_s mmdb;
  unsigned provides;
} px__geodb_t;

struct px_geoip {
  px__geodb_t **v; /* each MMDB_s stays where MMDB_open filled it */
  size_t n;
  unsigned provides;
};

static const char *const px__path_cc[] = {"country", "iso_code", NULL};
static const char *const px__path_reg_cc[] = {"registered_country", "iso_code", NULL};
static const char *const px__path_asn[] = {"autonomous_system_number", NULL};
static const char *const px__path_org[] = {"autonomous_system_organization", NULL};

/* Two ASCII letters, upper-cased into out; false for anything else (the
 * file is the operator's, but its bytes still end up in our answers). */
static bool px__get_cc(MMDB_entry_s *e, const char *const *path, char out[3]) {
  MMDB_entry_data_s d;
  char cc[3];
  if (MMDB_aget_value(e, &d, path) != MMDB_SUCCESS || !d.has_data ||
      d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size != 2)
    return false;
  for (int i = 0; i < 2; i++) {
    unsigned char c = (unsigned char)d.utf8_string[i];
    if (!isascii(c) || !isalpha(c))
      return false;
    cc[i] = (char)toupper(c);
  }
  cc[2] = '\0';
  memcpy(out, cc, 3);
  return true;
}

/* The writer picks the integer width; GeoLite2 uses uint32. */
static bool px__get_asn(MMDB_entry_s *e, uint32_t *out) {
  MMDB_entry_data_s d;
  uint64_t v;
  if (MMDB_aget_value(e, &d, px__path_asn) != MMDB_SUCCESS || !d.has_data)
    return false;
  switch (d.type) {
  case MMDB_DATA_TYPE_UINT16: v = d.uint16; break;
  case MMDB_DATA_TYPE_UINT32: v = d.uint32; break;
  case MMDB_DATA_TYPE_UINT64: v = d.uint64; break;
  case MMDB_DATA_TYPE_INT32:
    if (d.int32 < 0)
      return false;
    v = (uint64_t)d.int32;
    break;
  default:
    return false;
  }
  if (v == 0 || v > UINT32_MAX)
    return false;
  *out = (uint32_t)v;
  return true;
}

/* The organisation name, cut at a character boundary to fit. */
static void px__get_org(MMDB_entry_s *e, char out[PX_GEOIP_NAME_MAX]) {
  MMDB_entry_data_s d;
  out[0] = '\0';
  if (MMDB_aget_value(e, &d, px__path_org) != MMDB_SUCCESS || !d.has_data ||
      d.type != MMDB_DATA_TYPE_UTF8_STRING)
    return;
  size_t n = d.data_size;
  if (n >= PX_GEOIP_NAME_MAX) {
    n = PX_GEOIP_NAME_MAX - 1;
    while (n > 0 && ((unsigned char)d.utf8_string[n] & 0xc0) == 0x80)
      n--;
  }
  memcpy(out, d.utf8_string, n);
  out[n] = '\0';
  /* An embedded NUL would silently shorten it; a name is text. */
  if (memchr(d.utf8_string, '\0', n) != NULL)
    out[0] = '\0';
}

static unsigned px__entry_provides(MMDB_entry_s *e) {
  char cc[3];
  uint32_t asn;
  unsigned p = 0;
  if (px__get_cc(e, px__path_cc, cc) || px__get_cc(e, px__path_reg_cc, cc))
    p |= PX_GEOIP_COUNTRY;
  if (px__get_asn(e, &asn))
    p |= PX_GEOIP_ASN;
  return p;
}

/* What the records say: a depth-first walk of the search tree that looks
 * at up to 256 data records (and 64Ki nodes, so a huge or hostile file
 * cannot stall start-up). A few records of a country database may lack a
 * country, so one record is not enough. */
static unsigned px__sample(const MMDB_s *db) {
  uint32_t stack[512];
  size_t depth = 0, visited = 0, records = 0;
  unsigned p = 0;
  stack[depth++] = 0;
  while (depth > 0 && visited < 65536 && records < 256 &&
         p != (PX_GEOIP_COUNTRY | PX_GEOIP_ASN)) {
    uint32_t node = stack[--depth];
    MMDB_search_node_s sn;
    visited++;
    if (node >= db->metadata.node_count || MMDB_read_node(db, node, &sn) != MMDB_SUCCESS)
      continue;
    uint64_t rec[2] = {sn.right_record, sn.left_record};
    const uint8_t type[2] = {sn.right_record_type, sn.left_record_type};
    MMDB_entry_s *entry[2] = {&sn.right_record_entry, &sn.left_record_entry};
    for (int i = 0; i < 2; i++) {
      if (type[i] == MMDB_RECORD_TYPE_SEARCH_NODE && depth < sizeof(stack) / sizeof(stack[0]))
        stack[depth++] = (uint32_t)rec[i];
      else if (type[i] == MMDB_RECORD_TYPE_DATA) {
        p |= px__entry_provides(entry[i]);
        records++;
      }
    }
  }
  return p;
}

/* What the metadata claims: MaxMind and DB-IP name their layouts. */
static unsigned px__by_type(const char *type) {
  unsigned p = 0;
  if (type == NULL)
    return 0;
  if (strcasestr(type, "country") != NULL || strcasestr(type, "city") != NULL)
    p |= PX_GEOIP_COUNTRY;
  if (strcasestr(type, "asn") != NULL || strcasestr(type, "isp") != NULL)
    p |= PX_GEOIP_ASN;
  return p;
}

static void px__geodb_free(px__geodb_t *db) {
  MMDB_close(&db->mmdb);
  free(db);
}

int px_geoip_add(px_geoip_t **g, const char *path, unsigned *provides, char *err,
                 size_t errlen) {
  px__geodb_t *db = calloc(1, sizeof(*db));
  if (db == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  errno = 0;
  int mrc = MMDB_open(path, MMDB_MODE_MMAP, &db->mmdb);
  if (mrc != MMDB_SUCCESS) {
    int e = errno;
    free(db);
    if (mrc == MMDB_FILE_OPEN_ERROR || mrc == MMDB_IO_ERROR) {
      char why[128]; /* strerror_r (GNU): the collector has threads */
      snprintf(err, errlen, "cannot open '%s': %s", path,
               strerror_r(e ? e : EIO, why, sizeof(why)));
      return e ? -e : -EIO;
    }
    snprintf(err, errlen, "'%s' is not a MaxMind DB file: %s", path, MMDB_strerror(mrc));
    return -EINVAL;
  }
  db->provides = px__by_type(db->mmdb.metadata.database_type) | px__sample(&db->mmdb);
  if (db->provides == 0) {
    const char *type = db->mmdb.metadata.database_type;
    snprintf(err, errlen,
             "'%s' (database_type \"%.64s\") provides neither country.iso_code nor "
             "autonomous_system_number",
             path, type != NULL ? type : "");
    px__geodb_free(db);
    return -ENODATA;
  }
  px_geoip_t *set = *g;
  if (set == NULL && (set = calloc(1, sizeof(*set))) == NULL) {
    px__geodb_free(db);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  px__geodb_t **v = realloc(set->v, (set->n + 1) * sizeof(px__geodb_t *));
  if (v == NULL) {
    px__geodb_free(db);
    if (*g == NULL)
      free(set);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  v[set->n++] = db;
  set->v = v;
  set->provides |= db->provides;
  *g = set;
  if (provides != NULL)
    *provides = db->provides;
  return 0;
}

unsigned px_geoip_provides(const px_geoip_t *g) {
  return g != NULL ? g->provides : 0;
}

int px_geoip_lookup(const px_geoip_t *g, const struct sockaddr *sa, px_geo_t *out) {
  struct sockaddr_in v4;
  memset(out, 0, sizeof(*out));
  if (g == NULL || sa == NULL)
    return 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; an IPv4
     * database only answers for the IPv4 form. */
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      memset(&v4, 0, sizeof(v4));
      v4.sin_family = AF_INET;
      memcpy(&v4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
      sa = (const struct sockaddr *)&v4;
    }
  } else if (sa->sa_family != AF_INET) {
    return 0;
  }
  for (size_t i = 0; i < g->n; i++) {
    int mrc = MMDB_SUCCESS;
    MMDB_lookup_result_s res = MMDB_lookup_sockaddr(&g->v[i]->mmdb, sa, &mrc);
    /* An IPv6 client and an IPv4-only file: this file does not know it. */
    if (mrc != MMDB_SUCCESS || !res.found_entry)
      continue;
    const px__geodb_t *db = g->v[i];
    if (out->cc[0] == '\0' && (db->provides & PX_GEOIP_COUNTRY) &&
        !px__get_cc(&res.entry, px__path_cc, out->cc))
      px__get_cc(&res.entry, px__path_reg_cc, out->cc);
    if (out->asn == 0 && (db->provides & PX_GEOIP_ASN) && px__get_asn(&res.entry, &out->asn))
      px__get_org(&res.entry, out->network_name);
  }
  return 0;
}

void px_geoip_free(px_geoip_t *g) {
  if (g == NULL)
    return;
  for (size_t i = 0; i < g->n; i++)
    px__geodb_free(g->v[i]);
  free(g->v);
  free(g);
}
