#include "collector-client/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "px_version.h"

#define PX__MAX_RESPONSE (16u << 20)

typedef struct {
  char *data;
  size_t len;
} px__buf_t;

static size_t px__collect(char *data, size_t size, size_t nmemb, void *arg) {
  px__buf_t *b = arg;
  size_t n = size * nmemb;
  if (b->len + n > PX__MAX_RESPONSE)
    return 0;
  char *d = realloc(b->data, b->len + n + 1);
  if (d == NULL)
    return 0;
  memcpy(d + b->len, data, n);
  b->data = d;
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

void px_transport_error(int code, const char *curl_err, char *out, size_t n) {
  CURLcode cc = (CURLcode)code;
  const char *what = curl_err != NULL && curl_err[0] ? curl_err : curl_easy_strerror(cc);
  const char *hint = NULL;
  if (strstr(what, "wrong version number") != NULL)
    hint = "the collector may speak plain HTTP: try http:// instead of https://";
  else if (cc == CURLE_COULDNT_RESOLVE_HOST)
    hint = "is the host name right, and is this machine online?";
  else if (cc == CURLE_COULDNT_CONNECT)
    hint = "is the collector running at that address and port, and is this machine online?";
  else if (cc == CURLE_PEER_FAILED_VERIFICATION || strstr(what, "certificate") != NULL)
    hint = "the collector's certificate is not trusted: give --collector-ca FILE if it "
           "uses its own CA";
  else if (cc == CURLE_OPERATION_TIMEDOUT)
    hint = "no answer in time: a firewall, a proxy or a very slow link";
  else if (cc == CURLE_COULDNT_RESOLVE_PROXY || strstr(what, "proxy") != NULL ||
           strstr(what, "SOCKS") != NULL)
    hint = "check --proxy (for Tor: is tor running on that port?)";
  if (hint != NULL)
    snprintf(out, n, "%s (%s)", what, hint);
  else
    snprintf(out, n, "%s", what);
}

int px_http_request(const px_upload_config_t *cfg, const char *path, const char *body,
                    long *status, char **response, char *err, size_t errlen) {
  char curl_err[CURL_ERROR_SIZE] = "";
  px__buf_t b = {NULL, 0};
  *status = 0;
  *response = NULL;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  if (h == NULL)
    return -ENOMEM;
  size_t n = strlen(cfg->collector);
  while (n > 0 && cfg->collector[n - 1] == '/')
    n--;
  size_t ulen = n + strlen(path) + 1;
  char *url = malloc(ulen);
  if (url == NULL) {
    curl_easy_cleanup(h);
    return -ENOMEM;
  }
  snprintf(url, ulen, "%.*s%s", (int)n, cfg->collector, path);
  struct curl_slist *headers = NULL;
  if (body != NULL) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "parallax/" PX_SOFTWARE_VERSION);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, px__collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
  curl_easy_setopt(h, CURLOPT_PROXY, cfg->proxy ? cfg->proxy : "");
  if (cfg->ca_file != NULL)
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
  if (cfg->pin != NULL)
    curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, cfg->pin);
  CURLcode cc = curl_easy_perform(h);
  int rc = 0;
  if (cc != CURLE_OK) {
    px_transport_error((int)cc, curl_err, err, errlen);
    free(b.data);
    rc = -EIO;
  } else {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    *response = b.data ? b.data : strdup("");
    /* Callers read a successful answer as a string: never hand them NULL. */
    if (*response == NULL) {
      snprintf(err, errlen, "out of memory");
      rc = -ENOMEM;
    }
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  free(url);
  return rc;
}
