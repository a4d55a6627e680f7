/* What people give as targets: URLs, IDNs, Citizen Lab CSV test lists,
 * files from spreadsheets (a BOM) and the mistakes around them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/cli/measure.h"
#include "common/target.h"
#include "tests/runner.h"

static void px__expect(const char *in, uint16_t default_port, const char *input,
                       const char *hostname, uint16_t port) {
  px_target_t t;
  const char *reason = NULL;
  if (px_target_parse(in, default_port, &t, &reason) != 0)
    fail_msg("'%s' should parse: %s", in, reason);
  assert_string_equal(t.input, input);
  assert_string_equal(t.hostname, hostname);
  assert_int_equal(t.port, port);
}

static void px__refused(const char *in, const char *reason_part) {
  px_target_t t;
  const char *reason = NULL;
  if (px_target_parse(in, 443, &t, &reason) != -EINVAL)
    fail_msg("'%s' should be refused", in);
  assert_non_null(reason);
  if (strstr(reason, reason_part) == NULL)
    fail_msg("'%s': reason '%s' does not say '%s'", in, reason, reason_part);
}

PX_TEST(target_parse_urls) {
  (void)state;
  /* The URL is the input; the host and port are what is probed. */
  px__expect("https://www.example.test/path", 443, "https://www.example.test/path",
             "www.example.test", 443);
  px__expect("https://www.example.test:8443/a/b?x=1&y=2#top", 443,
             "https://www.example.test:8443/a/b?x=1&y=2#top", "www.example.test", 8443);
  px__expect("HTTPS://Example.COM.", 443, "HTTPS://Example.COM.", "Example.COM", 443);
  px__expect("https://example.com?q=a@b", 443, "https://example.com?q=a@b", "example.com", 443);
  px__expect("https://example.com#frag", 443, "https://example.com#frag", "example.com", 443);
  px__expect("https://example.com:/", 443, "https://example.com:/", "example.com", 443);
  /* Without a port a URL is probed on the TLS port, whatever its scheme:
   * parallax measures TLS, not plain HTTP. */
  px__expect("http://www.example.test/", 443, "http://www.example.test/", "www.example.test", 443);
  px__expect("http://www.example.test/", 8443, "http://www.example.test/", "www.example.test",
             8443);
  px__expect("https://www.example.test/", 8443, "https://www.example.test/",
             "www.example.test", 8443);
  px__expect("http://www.example.test:9443", 443, "http://www.example.test:9443",
             "www.example.test", 9443);
  /* Userinfo is not probed and never recorded: it may be a password. */
  px__expect("https://user:secret@example.com:8443/x", 443, "https://example.com:8443/x",
             "example.com", 8443);
  px__expect("https://a@b@example.com/", 443, "https://example.com/", "example.com", 443);
  /* An IDN in a URL: the A-label is probed, the URL kept as written. */
  px__expect("https://bücher.example/straße", 443, "https://bücher.example/straße",
             "xn--bcher-kva.example", 443);

  px__refused("ftp://example.com/", "unsupported URL scheme 'ftp'");
  px__refused("gopher://example.com", "https:// or http://");
  px__refused("://example.com", "no scheme");
  px__refused("1http://example.com", "not a scheme");
  px__refused("https://", "no host");
  px__refused("https:///path", "no host");
  px__refused("https://user@/path", "no host");
  px__refused("https://[::1]:443/", "not an IP address");
  px__refused("https://[2001:db8::1]/", "not an IP address");
  px__refused("https://192.0.2.1/", "not an IP address");
  px__refused("https://example.com:0/", "port out of range");
  px__refused("https://example.com:65536/", "port out of range");
  px__refused("https://example.com:99999999999999999999/", "port out of range");
  px__refused("https://example.com:80x/", "port is not a number");
  px__refused("https://exa mple.com/", "spaces or control characters");
  px__refused("https://example.com/a b", "spaces or control characters");
  px__refused("https://example.com/\t", "spaces or control characters");
  px__refused("https://ex%41mple.com/", "invalid character");
  px__refused("https://example..com/", "empty label");
  px__refused("http:example.com", "malformed URL");
  px__refused("https:/example.com", "malformed URL");
  px__refused("example.com/path", "is a URL");

  /* The input must fit the schema's 260 characters. */
  char url[400];
  memcpy(url, "https://example.com/", 20);
  memset(url + 20, 'a', 240);
  url[260] = '\0';
  px__expect(url, 443, url, "example.com", 443);
  memcpy(url + 260, "b", 2);
  px__refused(url, "longer than 260");
  /* ... counted without the userinfo that is dropped. */
  char with_user[512];
  snprintf(with_user, sizeof(with_user), "https://someone:password@%s", url + 8);
  with_user[strlen(with_user) - 1] = '\0';
  url[260] = '\0';
  px__expect(with_user, 443, url, "example.com", 443);
}

PX_TEST(target_parse_idn) {
  (void)state;
  /* U-labels become A-labels (IDNA2008, UTS #46 non-transitional: ß is
   * kept, not mapped to ss); the input keeps what the person wrote. */
  px__expect("bücher.example", 443, "bücher.example", "xn--bcher-kva.example", 443);
  px__expect("Bücher.Example.:8443", 443, "Bücher.Example.:8443", "xn--bcher-kva.example",
             8443);
  px__expect("straße.de", 443, "straße.de", "xn--strae-oqa.de", 443);
  px__expect("例え.テスト", 443, "例え.テスト", "xn--r8jz45g.xn--zckzah", 443);
  px__expect("bücher。example", 443, "bücher。example", "xn--bcher-kva.example", 443);
  px__expect("_dmarc.bücher.example", 443, "_dmarc.bücher.example",
             "_dmarc.xn--bcher-kva.example", 443);
  /* ASCII names are left exactly as before (A-labels included). */
  px__expect("xn--bcher-kva.example", 443, "xn--bcher-kva.example", "xn--bcher-kva.example",
             443);
  px__expect("ab--c.example", 443, "ab--c.example", "ab--c.example", 443);

  /* libidn2's own words say what is wrong. */
  px__refused("☃.example", "libidn2 IDN2_DISALLOWED");
  px__refused("a\xe2\x80\x8d" "b.example", "libidn2 IDN2_CONTEXTJ");
  px__refused("a\xff" "b.example", "libidn2 IDN2_ENCODING_ERROR");
  px__refused("-bücher.example", "invalid internationalized domain name");
  px__refused("bü cher.example", "invalid character");
  px__refused("bücher..example", "empty label");
  /* An IDN whose A-label is longer than DNS allows, though its UTF-8 fits. */
  char longname[PX_TARGET_MAX + 1] = "";
  for (int i = 0; i < 4; i++) {
    size_t n = strlen(longname);
    memset(longname + n, 'a', 54);
    memcpy(longname + n + 54, "ü.", sizeof("ü."));
  }
  memcpy(longname + strlen(longname), "example", sizeof("example"));
  px__refused(longname, "libidn2 IDN2_TOO_BIG_DOMAIN");
}

/* Collects what px_target_list_parse hands over, as "line:target" lines. */
typedef struct px__seen {
  char text[2048];
  int fail_at; /* the call that fails, counting from 1; 0: none */
  int calls;
} px__seen_t;

static int px__collect(void *ctx, const char *target, unsigned line) {
  px__seen_t *s = ctx;
  if (++s->calls == s->fail_at)
    return -EINVAL;
  size_t n = strlen(s->text);
  snprintf(s->text + n, sizeof(s->text) - n, "%u:%s\n", line, target);
  return 0;
}

static int px__list(const char *content, size_t n, px__seen_t *seen, bool *csv, unsigned *line,
                    const char **reason) {
  char *buf = malloc(n + 1);
  assert_non_null(buf);
  memcpy(buf, content, n);
  buf[n] = '\0';
  int rc = px_target_list_parse(buf, n, px__collect, seen, csv, line, reason);
  free(buf);
  return rc;
}

static void px__list_ok(const char *content, bool want_csv, const char *want) {
  px__seen_t seen = {0};
  bool csv = !want_csv;
  unsigned line = 0;
  const char *reason = NULL;
  int rc = px__list(content, strlen(content), &seen, &csv, &line, &reason);
  if (rc != 0)
    fail_msg("line %u: %s", line, reason ? reason : "(callback)");
  assert_int_equal(csv, want_csv);
  assert_string_equal(seen.text, want);
}

static void px__list_bad(const char *content, size_t n, unsigned want_line,
                         const char *reason_part) {
  px__seen_t seen = {0};
  unsigned line = 0;
  const char *reason = NULL;
  if (n == 0)
    n = strlen(content);
  assert_int_equal(px__list(content, n, &seen, NULL, &line, &reason), -EINVAL);
  assert_non_null(reason);
  if (strstr(reason, reason_part) == NULL)
    fail_msg("reason '%s' does not say '%s'", reason, reason_part);
  assert_int_equal(line, want_line);
}

PX_TEST(target_list_plain_and_bom) {
  (void)state;
  px__list_ok("# a list\nwww.example.test\n\n  expired.example.test  # old\r\n"
              "https://x.example/#frag # a comment after a URL with a fragment\n"
              "#https://commented.example/\nlast.example",
              false,
              "2:www.example.test\n4:expired.example.test\n5:https://x.example/#frag\n"
              "7:last.example\n");
  px__list_ok("\xef\xbb\xbfwww.example.test\r\nbücher.example\r\n", false,
              "1:www.example.test\n2:bücher.example\n");
  /* A BOM before a CSV header still lets the header be seen. */
  px__list_ok("\xef\xbb\xbfurl,category_code\nhttps://a.example/,NEWS\n", true,
              "2:https://a.example/\n");
  px__list_ok("", false, "");
  px__list_ok("\xef\xbb\xbf", false, "");
  px__list_ok("# nothing\n\n   \n", false, "");
  /* A line with a comma but no url column is a plain line. */
  px__list_ok("a.example,b.example\n", false, "1:a.example,b.example\n");

  px__list_bad("\xff\xfew\0w\0w\0", 8, 1, "UTF-16");
  px__list_bad("\xfe\xff\0w\0w\0w", 8, 1, "UTF-16");
  px__list_bad("a.example\nb.exa\0mple\n", 21, 2, "NUL bytes");

  /* A target the callback refuses stops the reading, on its line. */
  px__seen_t seen = {.fail_at = 2};
  unsigned line = 0;
  const char *reason = "unset";
  const char *text = "one.example\n\ntwo.example\nthree.example\n";
  assert_int_equal(px__list(text, strlen(text), &seen, NULL, &line, &reason), -EINVAL);
  assert_null(reason);
  assert_int_equal(line, 3);
  assert_string_equal(seen.text, "1:one.example\n");
}

PX_TEST(target_list_citizenlab_csv) {
  (void)state;
  /* The header of https://github.com/citizenlab/test-lists, quoted notes
   * with commas, doubled quotes and a line break, CRLF line ends. */
  px__list_ok("url,category_code,category_description,date_added,source,notes\r\n"
              "http://www.example.test/,NEWS,News Media,2014-04-15,citizenlab,\r\n"
              "https://bücher.example/shop,COMM,\"E-commerce, books\",2017-01-01,,"
              "\"said \"\"hi\"\", then\r\nleft\"\r\n"
              "\r\n"
              "\"https://q.example/a,b\",HOST,\"Hosting\",2020-02-02,x,\"\"\r\n",
              true,
              "2:http://www.example.test/\n3:https://bücher.example/shop\n"
              "6:https://q.example/a,b\n");
  /* The url column need not be first, nor lower case; fields are trimmed. */
  px__list_ok("# exported\ncategory_code, URL ,notes\nNEWS,  https://a.example/ ,x\n"
              "GRP,\"https://b.example/\" ,\"y\"\n",
              true, "3:https://a.example/\n4:https://b.example/\n");
  /* A header with a url column alone. */
  px__list_ok("\"url\"\nhttps://a.example/\n", true, "2:https://a.example/\n");
  px__list_ok("url,category_code\n", true, "");
  px__list_ok("url,category_code", true, "");
  /* The last record without a line end. */
  px__list_ok("url,notes\nhttps://a.example/,\"n\"", true, "2:https://a.example/\n");

  px__list_bad("url,notes\nhttps://a.example/,\"never closed\nhttps://b.example/\n", 0, 2,
               "unterminated quoted field");
  px__list_bad("url,notes\nhttps://a.example/,\"x\"y\n", 0, 2, "text after a closing quote");
  px__list_bad("notes,category_code,url\nfirst,NEWS,https://a.example/\nonly,two\n", 0, 3,
               "no url field");
  px__list_bad("url,notes\n,empty\n", 0, 2, "empty url");
}

/* px_measure_add_targets on real files: what the person sees. */
static int px__add_file(const char *path, char *err, size_t errlen, px_measure_opts_t *o) {
  px_measure_opts_init(o);
  o->targets_file = path;
  return px_measure_add_targets(o, 0, NULL, err, errlen);
}

static void px__write(const char *path, const char *content) {
  size_t n = strlen(content);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(content, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

PX_TEST(targets_file_messages) {
  (void)state;
  char *dir = px_test_tmpdir();
  char path[512], err[1024];
  px_measure_opts_t o;

  assert_int_equal(px__add_file(dir, err, sizeof(err), &o), -EINVAL);
  assert_non_null(strstr(err, "is a directory"));
  px_measure_opts_free(&o);

  snprintf(path, sizeof(path), "%s/empty.txt", dir);
  px__write(path, "");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), -EINVAL);
  assert_non_null(strstr(err, "no targets in '"));
  assert_non_null(strstr(err, "empty"));
  px_measure_opts_free(&o);

  px__write(path, "# only a comment\n");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), -EINVAL);
  assert_non_null(strstr(err, "no targets in '"));
  px_measure_opts_free(&o);

  px__write(path, "url,category_code\n");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), -EINVAL);
  assert_non_null(strstr(err, "CSV header and no records"));
  px_measure_opts_free(&o);

  px__write(path, "\xef\xbb\xbfurl,notes\nhttps://bücher.example:8443/x,\"a, b\"\n");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), 0);
  assert_int_equal(o.ntargets, 1);
  assert_string_equal(o.targets[0].input, "https://bücher.example:8443/x");
  assert_string_equal(o.targets[0].hostname, "xn--bcher-kva.example");
  assert_int_equal(o.targets[0].port, 8443);
  px_measure_opts_free(&o);

  /* Errors name the file and the line a record starts on. */
  px__write(path, "url,notes\n\"https://a.example/\",\"two\nlines\"\nftp://b.example/,x\n");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), -EINVAL);
  char want[600];
  snprintf(want, sizeof(want), "%s:4: bad target 'ftp://b.example/': unsupported URL scheme",
           path);
  if (strstr(err, want) == NULL)
    fail_msg("'%s' does not say '%s'", err, want);
  px_measure_opts_free(&o);

  px__write(path, "url\n\"https://a.example/\n");
  assert_int_equal(px__add_file(path, err, sizeof(err), &o), -EINVAL);
  snprintf(want, sizeof(want), "%s:2: unterminated quoted field", path);
  if (strstr(err, want) == NULL)
    fail_msg("'%s' does not say '%s'", err, want);
  px_measure_opts_free(&o);

  px_test_rmrf(dir);
  free(dir);
}

PX_TEST(resolver_ipv6_needs_brackets) {
  (void)state;
  char err[512];
  px_measure_opts_t o;
  px_measure_opts_init(&o);
  const char *good[] = {"::1", "[::1]:53", "[::1:53]", "2001:db8::53", "2001:db8::1",
                        "192.0.2.1:5353", "[2001:db8::1]:5353"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    if (px_measure_apply(&o, PX_OPT_RESOLVER, good[i], err, sizeof(err)) != 0)
      fail_msg("'%s' should be a resolver: %s", good[i], err);
  assert_int_equal(o.nresolvers, 6); /* "::1" is [::1]:53, counted once */

  assert_int_equal(px_measure_apply(&o, PX_OPT_RESOLVER, "::1:53", err, sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "[::1]:53"));
  assert_int_equal(px_measure_apply(&o, PX_OPT_RESOLVER, "2001:db8::1:5353", err, sizeof(err)),
                   -EINVAL);
  assert_non_null(strstr(err, "[2001:db8::1]:5353"));
  /* Eight groups and a port: only the bracketed reading is an address. */
  assert_int_equal(px_measure_apply(&o, PX_OPT_RESOLVER, "1:2:3:4:5:6:7:8:53", err,
                                    sizeof(err)), -EINVAL);
  assert_non_null(strstr(err, "[1:2:3:4:5:6:7:8]:53"));
  assert_int_equal(px_measure_apply(&o, PX_OPT_RESOLVER, "dns.example", err, sizeof(err)),
                   -EINVAL);
  assert_non_null(strstr(err, "is not IP[:PORT]"));
  assert_int_equal(o.nresolvers, 6);
  px_measure_opts_free(&o);
}
