/* parallax compare: the collector's cross-country view of one domain, as
 * a table (or its JSON). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli_common.h"
#include "agent/cli_measure.h"
#include "agent/cli_run.h"
#include "collector-client/http.h"
#include "common/encoding.h"
#include "common/json_util.h"

static const char *px__s(json_t *o, const char *k, const char *dflt) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : dflt;
}

/* cc | asn | addresses | leaf sha256 prefix | issuer | valid | verdict: one
 * line per address, the group's columns on its first line. */
static void px__table(json_t *doc) {
  printf("%s, %s to %s (chains re-validated against %s)\n\n", px__s(doc, "domain", "?"),
         px__s(doc, "since", "?"), px__s(doc, "until", "?"), px__s(doc, "trust_store", "?"));
  printf("%-3s %-9s %-26s %-17s %-44s %-5s %s\n", "cc", "asn", "addresses", "leaf sha256",
         "issuer", "valid", "verdict");
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(doc, "vantages"), i, g) {
    json_t *addrs = json_object_get(g, "addresses");
    char verdict[96];
    snprintf(verdict, sizeof(verdict), "%s (%.0f%% of %lld)", px__s(g, "verdict", "?"),
             100.0 * json_number_value(json_object_get(g, "confidence")),
             (long long)json_integer_value(json_object_get(g, "vantage_count")));
    size_t n = json_array_size(addrs);
    for (size_t k = 0; k < (n ? n : 1); k++) {
      json_t *a = json_array_get(addrs, k);
      char leaf[18], issuer[45];
      const char *sha = px__s(a, "leaf_sha256", NULL);
      snprintf(leaf, sizeof(leaf), "%.16s", sha ? sha : px__s(a, "failure", "-"));
      snprintf(issuer, sizeof(issuer), "%.44s", px__s(a, "issuer", "-"));
      printf("%-3s %-9s %-26s %-17s %-44s %-5s %s\n", k ? "" : px__s(g, "probe_cc", "?"),
             k ? "" : px__s(g, "probe_asn", "?"), a ? px__s(a, "address", "-") : "-", leaf,
             issuer, a ? (json_is_true(json_object_get(a, "verified")) ? "yes" : "no") : "-",
             k ? "" : verdict);
    }
    json_t *ev;
    size_t e;
    json_array_foreach(json_object_get(g, "evidence"), e, ev) {
      const char *leaf = px__s(ev, "leaf_sha256", NULL);
      printf("    evidence: %s%s%s%s%s%s\n", px__s(ev, "rule", "?"),
             json_object_get(ev, "address") ? " at " : "", px__s(ev, "address", ""),
             leaf ? ", leaf " : "", leaf ? leaf : "",
             json_is_true(json_object_get(ev, "self_signed")) ? " (self-signed)" : "");
    }
  }
}

int px_cmd_compare(int argc, char **argv) {
  const char *prog = "parallax compare";
  static const struct option own[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, 'j'},
      {"since", required_argument, NULL, 's'},
      {"until", required_argument, NULL, 'u'},
      {NULL, 0, NULL, 0},
  };
  struct option *opts = px_agent_options(own, false);
  px_agent_opts_t agent;
  const char *domain = NULL, *since = NULL, *until = NULL;
  bool as_json = false;
  char err[512];
  int c, code = PX_EXIT_OK;

  if (opts == NULL)
    return PX_EXIT_RUNTIME;
  memset(&agent, 0, sizeof(agent));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      puts("Usage: parallax compare --collector URL --domain D [--json] [--since T] [--until T]\n"
           "The collector's comparison of one domain across vantage groups (country,\n"
           "network): addresses, leaf certificates, whether they verify, the verdict\n"
           "(consistent, tls_interception, dns_inconsistent, tls_blocked,\n"
           "insufficient_data) and its evidence. --json prints the API's document.");
      goto done;
    case 'd':
      domain = optarg;
      continue;
    case 'j':
      as_json = true;
      continue;
    case 's':
      since = optarg;
      continue;
    case 'u':
      until = optarg;
      continue;
    case '?':
    case ':':
      fprintf(stderr, "%s: %s '%s' (see --help)\n", prog,
              c == ':' ? "missing value for" : "unknown option", argv[optind - 1]);
      code = PX_EXIT_USAGE;
      goto done;
    default:
      if (px_agent_apply(&agent, c, optarg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        code = PX_EXIT_USAGE;
        goto done;
      }
    }
  }
  if (agent.collector == NULL || domain == NULL || optind < argc) {
    fprintf(stderr, "%s: give --collector URL and --domain D\n", prog);
    code = PX_EXIT_USAGE;
    goto done;
  }
  char path[1024], enc[800];
  px_percent_encode(domain, enc, sizeof(enc));
  int n = snprintf(path, sizeof(path), "/api/v1/compare?domain=%s", enc);
  if (since != NULL) {
    px_percent_encode(since, enc, sizeof(enc));
    n += snprintf(path + n, sizeof(path) - (size_t)n, "&since=%s", enc);
  }
  if (until != NULL) {
    px_percent_encode(until, enc, sizeof(enc));
    snprintf(path + n, sizeof(path) - (size_t)n, "&until=%s", enc);
  }
  px_upload_config_t cfg = {agent.collector, agent.proxy, agent.collector_ca,
                            agent.collector_pin, 60000};
  long status;
  char *body = NULL;
  if (px_http_request(&cfg, path, NULL, &status, &body, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s: %s\n", prog, err);
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  json_t *doc = json_loads(body, 0, NULL);
  if (status != 200 || doc == NULL) {
    fprintf(stderr, "%s: the collector answered HTTP %ld: %s\n", prog, status,
            doc ? px__s(doc, "detail", body) : body);
    code = status >= 400 && status < 500 ? PX_EXIT_USAGE : PX_EXIT_RUNTIME;
  } else if (as_json) {
    fputs(body, stdout);
    if (body[0] != '\0' && body[strlen(body) - 1] != '\n')
      putchar('\n');
  } else {
    px__table(doc);
  }
  json_decref(doc);
  free(body);
done:
  free(opts);
  return code;
}
