#ifndef PX_GEOIP_H
#define PX_GEOIP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Country and network of a client address, from MaxMind-format databases
 * the operator supplies (--geoip-db, repeatable): a country layout
 * (GeoLite2-Country, DB-IP country lite: country.iso_code) and an ASN
 * layout (GeoLite2-ASN, DB-IP ASN lite: autonomous_system_number,
 * autonomous_system_organization). A file may provide both.
 *
 * The address is only looked up, never kept: nothing here stores or
 * prints it. Lookups only read the memory-mapped files, so one handle
 * serves every request thread at once. */
typedef struct px_geoip px_geoip_t;

#define PX_GEOIP_COUNTRY 1u
#define PX_GEOIP_ASN 2u

#define PX_GEOIP_NAME_MAX 128

typedef struct px_geo {
  char cc[3];                              /* "CN"; "" when unknown */
  uint32_t asn;                            /* 0 when unknown */
  char network_name[PX_GEOIP_NAME_MAX];    /* UTF-8 as in the file; "" when unknown */
} px_geo_t;

/* Opens the database at path and appends it to *g (created on the first
 * call). What it provides (PX_GEOIP_* bits) is read from its metadata
 * (database_type) and from a sample of its records; *provides gets it
 * when not NULL. A file that cannot be opened, is not a MaxMind DB, or
 * provides neither a country nor an ASN is refused with a sentence naming
 * it in err: 0, -ENOENT and friends (open), -EINVAL (format), -ENODATA
 * (neither). On error *g is left as it was. */
int px_geoip_add(px_geoip_t **g, const char *path, unsigned *provides, char *err,
                 size_t errlen);

/* The union of what the databases of g provide (0 for NULL). */
unsigned px_geoip_provides(const px_geoip_t *g);

/* Looks sa up (IPv4, IPv6 or IPv4-mapped IPv6) in every database, in the
 * order they were added; for each field the first database that knows it
 * wins, and the network name comes from the database that gave the ASN.
 * The country falls back to registered_country when a record has no
 * country (anycast, satellite networks). g may be NULL: everything is then
 * unknown. Returns 0, also when nothing is known. */
int px_geoip_lookup(const px_geoip_t *g, const struct sockaddr *sa, px_geo_t *out);

void px_geoip_free(px_geoip_t *g);

#endif
