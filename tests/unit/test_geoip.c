/* collector/ingest/geoip.c against small MaxMind DB files written by
 * tests/tools/make-mmdb.pl (libmaxmind-db-writer-perl): what each file is
 * recognised as, every way a file is refused, and the lookups. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "collector/ingest/geoip.h"
#include "common/netaddr.h"
#include "tests/runner.h"

/* A fresh directory with the test databases; skips without the writer. */
static char *px__mmdb_dir(void) {
  if (system("perl -MMaxMind::DB::Writer::Tree -e 1 2>/dev/null") != 0)
    px_test_skip("MaxMind::DB::Writer::Tree is missing (libmaxmind-db-writer-perl)");
  char *d = px_test_tmpdir(), cmd[1024];
  snprintf(cmd, sizeof(cmd), "perl '%s/tests/tools/make-mmdb.pl' '%s'", PX_SOURCE_DIR, d);
  assert_int_equal(system(cmd), 0);
  return d;
}

static const char *px__path(const char *dir, const char *name) {
  static char p[512];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  return p;
}

static void px__lookup(const px_geoip_t *g, const char *ip, px_geo_t *geo) {
  struct sockaddr_storage ss;
  assert_int_equal(px_addr_parse_ip(ip, &ss), 0);
  assert_int_equal(px_geoip_lookup(g, (struct sockaddr *)&ss, geo), 0);
}

PX_TEST(geoip_refuses_unusable_files) {
  (void)state;
  char *d = px__mmdb_dir(), err[512];
  px_geoip_t *g = NULL;
  unsigned what = 0;

  /* Missing: the open error, naming the file. */
  assert_int_equal(px_geoip_add(&g, px__path(d, "missing.mmdb"), &what, err, sizeof(err)), -ENOENT);
  assert_non_null(strstr(err, "missing.mmdb"));
  assert_non_null(strstr(err, "cannot open"));
  assert_null(g);
  /* Not a MaxMind DB: empty, text, a directory. */
  FILE *f = fopen(px__path(d, "empty.mmdb"), "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(px_geoip_add(&g, px__path(d, "empty.mmdb"), &what, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "empty.mmdb"));
  f = fopen(px__path(d, "text.mmdb"), "w");
  assert_non_null(f);
  fputs("203.0.113.0/24 CN\n", f);
  fclose(f);
  assert_int_equal(px_geoip_add(&g, px__path(d, "text.mmdb"), &what, err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "is not a MaxMind DB file"));
  assert_true(px_geoip_add(&g, d, &what, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, d));
  /* A well-formed file of another layout: neither a country nor an ASN. */
  assert_int_equal(px_geoip_add(&g, px__path(d, "other.mmdb"), &what, err, sizeof(err)), -ENODATA);
  assert_non_null(strstr(err, "other.mmdb"));
  assert_non_null(strstr(err, "Parallax-Test-Other"));
  assert_null(g);
  assert_int_equal(px_geoip_provides(g), 0);

  /* A refusal after a good file leaves the set as it was. */
  assert_int_equal(px_geoip_add(&g, px__path(d, "country.mmdb"), &what, err, sizeof(err)), 0);
  assert_non_null(g);
  px_geoip_t *kept = g;
  assert_int_equal(px_geoip_add(&g, px__path(d, "other.mmdb"), NULL, err, sizeof(err)), -ENODATA);
  assert_ptr_equal(g, kept);
  assert_int_equal(px_geoip_provides(g), PX_GEOIP_COUNTRY);
  px_geoip_free(g);
  px_geoip_free(NULL);
  px_test_rmrf(d);
  free(d);
}

PX_TEST(geoip_detects_and_looks_up) {
  (void)state;
  char *d = px__mmdb_dir(), err[512];
  px_geoip_t *g = NULL;
  unsigned what = 0;
  px_geo_t geo;

  /* The name says country; the records agree. */
  assert_int_equal(px_geoip_add(&g, px__path(d, "country.mmdb"), &what, err, sizeof(err)), 0);
  assert_int_equal(what, PX_GEOIP_COUNTRY);
  /* The name says nothing: recognised from its records. */
  assert_int_equal(px_geoip_add(&g, px__path(d, "networks.mmdb"), &what, err, sizeof(err)), 0);
  assert_int_equal(what, PX_GEOIP_ASN);
  assert_int_equal(px_geoip_provides(g), PX_GEOIP_COUNTRY | PX_GEOIP_ASN);

  px__lookup(g, "203.0.113.7", &geo);
  assert_string_equal(geo.cc, "CN");
  assert_int_equal(geo.asn, 4134);
  assert_string_equal(geo.network_name, "CHINANET");
  /* A dual-stack listener's view of the same client. */
  px__lookup(g, "::ffff:203.0.113.200", &geo);
  assert_string_equal(geo.cc, "CN");
  assert_int_equal(geo.asn, 4134);
  px__lookup(g, "2001:db8:1::5", &geo);
  assert_string_equal(geo.cc, "FR");
  assert_int_equal(geo.asn, 3215);
  assert_string_equal(geo.network_name, "Orange S.A.");
  /* Only registered_country in the record; a UTF-8 name kept as is. */
  px__lookup(g, "192.0.2.1", &geo);
  assert_string_equal(geo.cc, "US");
  assert_int_equal(geo.asn, 64500);
  assert_string_equal(geo.network_name, "R\xc3\xa9seau d'essai \xe2\x9c\x93");
  /* In no database. */
  px__lookup(g, "127.0.0.1", &geo);
  assert_string_equal(geo.cc, "");
  assert_int_equal(geo.asn, 0);
  assert_string_equal(geo.network_name, "");
  px__lookup(g, "2001:db9::1", &geo);
  assert_string_equal(geo.cc, "");
  /* Not an IP address at all, or no handle: unknown, not an error. */
  struct sockaddr_un un;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  memset(&geo, 'x', sizeof(geo));
  assert_int_equal(px_geoip_lookup(g, (struct sockaddr *)&un, &geo), 0);
  assert_string_equal(geo.cc, "");
  px__lookup(NULL, "203.0.113.7", &geo);
  assert_string_equal(geo.cc, "");
  assert_int_equal(geo.asn, 0);
  px_geoip_free(g);

  /* Both layouts in one file with a neutral name; the lower-case country
   * comes out upper-case. */
  g = NULL;
  assert_int_equal(px_geoip_add(&g, px__path(d, "combined.mmdb"), &what, err, sizeof(err)), 0);
  assert_int_equal(what, PX_GEOIP_COUNTRY | PX_GEOIP_ASN);
  px__lookup(g, "203.0.113.9", &geo);
  assert_string_equal(geo.cc, "CN");
  assert_int_equal(geo.asn, 4134);
  assert_string_equal(geo.network_name, "CHINANET");
  px_geoip_free(g);
  px_test_rmrf(d);
  free(d);
}
