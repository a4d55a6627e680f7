/* parallax compare: the collector's cross-country view of one domain, as
 * a table (or its JSON). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli/common.h"
#include "agent/cli/measure.h"
#include "agent/cli/run.h"
#include "collector-client/http.h"
#include "common/encoding.h"
#include "common/json_util.h"
#include "common/termsafe.h"

static const char *px__s(json_t *o, const char *k, const char *dflt) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : dflt;
}

/* o[k] (or dflt) rendered for the terminal into buf, cut to fit: every
 * string of the document is the collector's, and many are what agents
 * reported (certificate names, failures). */
static const char *px__t(json_t *o, const char *k, const char *dflt, char *buf, size_t n) {
  return px_term_str(px__s(o, k, dflt), buf, n);
}

/* How often the window showed the group's verdict, in words:
 * "tls_interception — intermittent: 1 of 3 measurements, last seen
 * 2026-12-03 10:04:12, clean since 11:04:09". Nothing for a consistent
 * group. */
static void px__observed(json_t *g) {
  json_t *o = json_object_get(g, "observed");
  long long n = json_integer_value(json_object_get(o, "measurements")),
            k = json_integer_value(json_object_get(o, "anomalous"));
  if (!json_is_object(o) || k <= 0)
    return;
  char verdict[64], first[64], last[64], clean[64];
  px__t(g, "verdict", "?", verdict, sizeof(verdict));
  px__t(o, "first_seen", "?", first, sizeof(first));
  px__t(o, "last_seen", "?", last, sizeof(last));
  px__t(o, "clean_since", "?", clean, sizeof(clean));
  if (json_is_true(json_object_get(o, "ongoing"))) {
    printf("    %s — ongoing: %lld of %lld measurement%s, since %s, last seen %s\n", verdict, k, n,
           n == 1 ? "" : "s", first, last);
    return;
  }
  /* The clean time without its date when it is the last sighting's day. */
  const char *since = clean;
  if (strlen(clean) == 19 && strncmp(clean, last, 11) == 0)
    since = clean + 11;
  printf("    %s — intermittent: %lld of %lld measurement%s, last seen %s, clean since %s\n",
         verdict, k, n, n == 1 ? "" : "s", last, since);
}

/* Where an address came from: the group's own DNS, the collector's
 * control list, or both. */
static const char *px__from(json_t *a) {
  bool dns = json_is_true(json_object_get(a, "resolved"));
  bool control = json_is_true(json_object_get(a, "control"));
  return dns && control ? "dns+ctl" : dns ? "dns" : control ? "control" : "-";
}

static void px__legend(void) {
  fputs("\nfrom: dns = this group's resolvers answered the address; control = the\n"
        "collector's list of the service's real addresses (probed from everywhere).\n"
        "valid: the collector's own check of the chain and host name. \"N% of M\": the\n"
        "share of the group's M vantages whose latest measurement agrees with the\n"
        "verdict. Verdicts: consistent (what everyone else sees), dns_inconsistent\n"
        "(answers nobody else gets, with chains that do not verify), tls_interception\n"
        "(an invalid certificate at a real address), tls_divergent (a valid chain\n"
        "nobody else sees), tls_blocked (no handshake where others get one),\n"
        "insufficient_data (too few vantages or measurements to judge).\n"
        "`parallax compare --json` has every field.\n",
        stdout);
}

/* cc | asn | address | from | leaf sha256 prefix | issuer | valid |
 * failure | verdict: one line per address, the group's columns on its
 * first line. Cut columns are cut between characters of the rendering,
 * never inside an escape. */
static void px__table(json_t *doc) {
  char domain[1024], since[256], until[256], trust[1024];
  json_t *vantages = json_object_get(doc, "vantages");
  px__t(doc, "domain", "?", domain, sizeof(domain));
  px__t(doc, "since", "?", since, sizeof(since));
  px__t(doc, "until", "?", until, sizeof(until));
  if (json_array_size(vantages) == 0) {
    printf("no measurements of %s in the window %s to %s\n", domain, since, until);
    return;
  }
  printf("%s, %s to %s (chains re-validated against %s)\n\n", domain, since, until,
         px__t(doc, "trust_store", "?", trust, sizeof(trust)));
  printf("%-3s %-9s %-26s %-7s %-17s %-36s %-5s %-24s %s\n", "cc", "asn", "address", "from",
         "leaf sha256", "issuer", "valid", "failure", "verdict");
  size_t i;
  json_t *g;
  json_array_foreach(vantages, i, g) {
    json_t *addrs = json_object_get(g, "addresses");
    char verdict[160], word[64], cc[32], asn[64];
    long long count = (long long)json_integer_value(json_object_get(g, "vantage_count"));
    snprintf(verdict, sizeof(verdict), "%s (%.0f%% of %lld vantage%s)",
             px__t(g, "verdict", "?", word, sizeof(word)),
             100.0 * json_number_value(json_object_get(g, "confidence")), count,
             count == 1 ? "" : "s");
    px__t(g, "probe_cc", "?", cc, sizeof(cc));
    px__t(g, "probe_asn", "?", asn, sizeof(asn));
    size_t n = json_array_size(addrs);
    for (size_t k = 0; k < (n ? n : 1); k++) {
      json_t *a = json_array_get(addrs, k);
      char leaf[17], issuer[37], address[256], failure[25];
      px__t(a, "leaf_sha256", "-", leaf, sizeof(leaf));
      px__t(a, "issuer", "-", issuer, sizeof(issuer));
      px__t(a, "failure", "-", failure, sizeof(failure));
      printf("%-3s %-9s %-26s %-7s %-17s %-36s %-5s %-24s %s\n", k ? "" : cc, k ? "" : asn,
             a ? px__t(a, "address", "-", address, sizeof(address)) : "-", a ? px__from(a) : "-",
             leaf, issuer,
             a ? (json_is_true(json_object_get(a, "verified")) ? "yes" : "no") : "-", failure,
             k ? "" : verdict);
    }
    px__observed(g);
    json_t *ev;
    size_t e;
    json_array_foreach(json_object_get(g, "evidence"), e, ev) {
      char rule[128], address[256], leaf[PX_TERM_ESCAPED_MAX(64)];
      const char *sha = px__s(ev, "leaf_sha256", NULL);
      printf("    evidence: %s%s%s%s%s%s\n", px__t(ev, "rule", "?", rule, sizeof(rule)),
             json_object_get(ev, "address") ? " at " : "",
             px__t(ev, "address", "", address, sizeof(address)), sha ? ", leaf " : "",
             px_term_str(sha, leaf, sizeof(leaf)),
             json_is_true(json_object_get(ev, "self_signed")) ? " (self-signed)" : "");
      json_t *names = json_object_get(ev, "collector_error_names");
      if (json_array_size(names) > 0) {
        size_t x;
        json_t *nm;
        fputs("      collector's verification:", stdout);
        json_array_foreach(names, x, nm) {
          char shown[PX_TERM_ESCAPED_MAX(64)];
          printf("%s %s", x ? "," : "", px_term_str(json_string_value(nm), shown, sizeof(shown)));
        }
        putchar('\n');
      }
      /* The evidence in words: what this vantage saw, what the others
       * saw, when. */
      const char *why = px__s(ev, "explanation", NULL);
      if (why != NULL) {
        char line[PX_TERM_ESCAPED_MAX(1024)];
        printf("      %s\n", px_term_str(why, line, sizeof(line)));
      }
    }
  }
  px__legend();
}

int px_cmd_compare(int argc, char **argv) {
  const char *prog = "parallax compare";
  static const struct option own[] = {
      {"domain", required_argument, NULL, 'd'},
      {"json", no_argument, NULL, 'j'},
      {"since", required_argument, NULL, 's'},
      {"until", required_argument, NULL, 'u'},
      {"latest", no_argument, NULL, 'l'},
      {NULL, 0, NULL, 0},
  };
  struct option *opts = px_agent_options(own, false);
  px_agent_opts_t agent;
  const char *domain = NULL, *since = NULL, *until = NULL;
  bool as_json = false, latest = false;
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
           "                        [--latest]\n"
           "The collector's comparison of one domain across vantage groups (country,\n"
           "network): addresses, leaf certificates, whether they verify, the verdict\n"
           "(consistent, tls_interception, dns_inconsistent, tls_blocked,\n"
           "tls_divergent, insufficient_data) and its evidence, each piece in one line:\n"
           "what this vantage saw, what the others saw, when. tls_divergent (a valid\n"
           "chain from a CA nobody else sees there) is a lead to check, not proof.\n"
           "Every measurement in the window counts, and an anomaly says how often and\n"
           "whether it still happens; --latest judges each vantage's newest measurement\n"
           "alone. --json prints the API's document.");
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
    case 'l':
      latest = true;
      continue;
    case '?':
    case ':':
      px_cli_getopt_error(prog, c, argv);
      code = PX_EXIT_USAGE;
      goto done;
    default:
      if (px_agent_apply(&agent, c, optarg, err, sizeof(err)) != 0) {
        px_cli_error(prog, "%s", err);
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
    n += snprintf(path + n, sizeof(path) - (size_t)n, "&until=%s", enc);
  }
  if (latest)
    snprintf(path + n, sizeof(path) - (size_t)n, "&latest=1");
  px_upload_config_t cfg = {agent.collector, agent.proxy, agent.collector_ca,
                            agent.collector_pin, 60000};
  long status;
  char *body = NULL;
  char shown[2048];
  if (px_http_request(&cfg, path, NULL, &status, &body, err, sizeof(err)) != 0) {
    /* libcurl's message can quote the server's certificate. */
    fprintf(stderr, "%s: %s\n", prog, px_term_str(err, shown, sizeof(shown)));
    code = PX_EXIT_RUNTIME;
    goto done;
  }
  json_t *doc = json_loads(body, 0, NULL);
  if (status != 200 || doc == NULL) {
    fprintf(stderr, "%s: the collector answered HTTP %ld: %s\n", prog, status,
            px_term_str(doc ? px__s(doc, "detail", body) : body, shown, sizeof(shown)));
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
