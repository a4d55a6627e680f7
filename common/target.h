#ifndef PX_TARGET_H
#define PX_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PX_HOSTNAME_MAX 253
/* The longest "input" a measurement records (schemas/measurement.schema.json
 * says 260): a host name, ":" and a port, or a URL that fits. */
#define PX_TARGET_MAX (PX_HOSTNAME_MAX + 1 + 6)

/* One measurement input: a domain, optionally with ":port", or an
 * https:// or http:// URL naming one. */
typedef struct px_target {
  /* The "input" key: as given, so researchers see what was asked (a
   * U-label stays a U-label), except a URL's user:password@, which is
   * dropped because measurements are published. */
  char input[PX_TARGET_MAX + 1];
  /* For DNS and SNI: ASCII (IDNs as A-labels), no trailing dot. */
  char hostname[PX_HOSTNAME_MAX + 1];
  uint16_t port;
  /* Addresses the collector vouches for (seen verified by other countries);
   * probed besides this target's own answers. Not owned. */
  const struct sockaddr_storage *controls;
  size_t ncontrols;
} px_target_t;

/* Parses "example.com", "example.com:8443", "bücher.example" (converted
 * to its A-label with libidn2, IDNA2008 + UTS #46 non-transitional) or a
 * URL "https://[user@]host[:port][/path][?query][#fragment]" (http:// too).
 * A URL without a port, like a domain without one, is probed on
 * default_port: parallax probes TLS, whatever the scheme says. Host names
 * are LDH labels (underscores tolerated, as real zones contain them); IP
 * literals are refused because a target is a name: addresses go in
 * --address.
 * On error returns -EINVAL and sets *reason to a sentence that stays valid
 * until this thread's next call. */
int px_target_parse(const char *s, uint16_t default_port, px_target_t *out,
                    const char **reason);

/* Called once per target of a targets file, in file order, with the line
 * it starts on. Returns 0 to go on, or a negative errno that stops the
 * reading and is returned as is (the callee says why, in its own words). */
typedef int (*px_target_list_add_fn)(void *ctx, const char *target, unsigned line);

/* Splits the contents of a targets file, text[0..n) with text[n] == '\0'
 * (NUL bytes inside are refused), into targets, writing NULs into text.
 * Two forms, told apart by the first line that is neither blank nor a #
 * comment:
 *  - a CSV file whose header has a "url" column (the Citizen Lab test
 *    lists: url,category_code,...): one target a record, from that column;
 *    RFC 4180 quoting (commas, "" and line breaks inside quotes);
 *  - otherwise one target a line; # starts a comment at the start of a
 *    line or after a space or tab (a URL's #fragment is kept).
 * A UTF-8 byte order mark is skipped; UTF-16 is refused. *csv (if not
 * NULL) says which form was read. Returns 0; -EINVAL with *line and
 * *reason (a static sentence) for a malformed file; or what add returned,
 * with *reason NULL. */
int px_target_list_parse(char *text, size_t n, px_target_list_add_fn add, void *ctx,
                         bool *csv, unsigned *line, const char **reason);

#endif
