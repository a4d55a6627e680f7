#include "collector-client/upload.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json_util.h"
#include "common/timeutil.h"
#include "px_version.h"

#define PX__RESPONSE_MAX ((size_t)64 * 1024)

struct px_uploader {
  CURL *curl;
  struct curl_slist *headers;
  char *url;
  char *body;
  size_t body_len;
  char curl_err[CURL_ERROR_SIZE];
};

static size_t px__collect(char *data, size_t size, size_t nmemb, void *arg) {
  px_uploader_t *u = arg;
  size_t n = size * nmemb;
  if (u->body_len + n > PX__RESPONSE_MAX)
    return 0; /* a collector has nothing that long to say: abort */
  char *b = realloc(u->body, u->body_len + n + 1);
  if (b == NULL)
    return 0;
  memcpy(b + u->body_len, data, n);
  u->body = b;
  u->body_len += n;
  u->body[u->body_len] = '\0';
  return n;
}

int px_uploader_new(const px_upload_config_t *cfg, px_uploader_t **out, char *err,
                    size_t errlen) {
  static int global_init;
  if (!global_init) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    global_init = 1;
  }
  const char *c = cfg->collector;
  if (c == NULL || (strncmp(c, "http://", 7) != 0 && strncmp(c, "https://", 8) != 0)) {
    snprintf(err, errlen, "the collector must be an http:// or https:// URL");
    return -EINVAL;
  }
  px_uploader_t *u = calloc(1, sizeof(*u));
  if (u == NULL)
    return -ENOMEM;
  size_t n = strlen(c);
  while (n > 0 && c[n - 1] == '/')
    n--;
  u->url = malloc(n + 64);
  u->curl = curl_easy_init();
  if (u->url == NULL || u->curl == NULL) {
    px_uploader_free(u);
    return -ENOMEM;
  }
  snprintf(u->url, n + 64, "%.*s/api/v1/submit_measurement", (int)n, c);
  u->headers = curl_slist_append(NULL, "Content-Type: application/json");
  u->headers = curl_slist_append(u->headers, "Expect:"); /* no 100-continue round trip */
  CURL *h = u->curl;
  curl_easy_setopt(h, CURLOPT_URL, u->url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, u->headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "parallax/" PX_SOFTWARE_VERSION);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_ms > 0 ? cfg->timeout_ms : 60000L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, px__collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, u);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, u->curl_err);
  /* Only the proxy the user names: environment proxies would silently
   * route measurements elsewhere. */
  curl_easy_setopt(h, CURLOPT_PROXY, cfg->proxy ? cfg->proxy : "");
  if (cfg->ca_file != NULL)
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
  if (cfg->pin != NULL && curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, cfg->pin) != CURLE_OK) {
    snprintf(err, errlen, "this libcurl cannot pin public keys");
    px_uploader_free(u);
    return -ENOTSUP;
  }
  *out = u;
  return 0;
}

void px_uploader_free(px_uploader_t *u) {
  if (u == NULL)
    return;
  curl_easy_cleanup(u->curl);
  curl_slist_free_all(u->headers);
  free(u->url);
  free(u->body);
  free(u);
}

void px_upload_one(px_uploader_t *u, const char *content, size_t n, const char *signature,
                   px_upload_outcome_t *out) {
  memset(out, 0, sizeof(*out));
  out->leaf_index = -1;
  json_t *req = json_object();
  json_object_set_new(req, "format", json_string("json"));
  json_object_set_new(req, "content", json_stringn(content, n));
  json_object_set_new(req, "signature", json_string(signature));
  if (json_object_get(req, "content") == NULL) {
    json_decref(req);
    out->result = PX_UPLOAD_REJECTED;
    snprintf(out->error, sizeof(out->error), "content is not valid UTF-8");
    return;
  }
  char *body = px_json_dump(req);
  json_decref(req);
  if (body == NULL) {
    out->result = PX_UPLOAD_RETRY;
    snprintf(out->error, sizeof(out->error), "out of memory");
    return;
  }
  free(u->body);
  u->body = NULL;
  u->body_len = 0;
  u->curl_err[0] = '\0';
  curl_easy_setopt(u->curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(u->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
  CURLcode cc = curl_easy_perform(u->curl);
  free(body);
  if (cc != CURLE_OK) {
    out->result = PX_UPLOAD_RETRY;
    px_transport_error((int)cc, u->curl_err, out->error, sizeof(out->error));
    return;
  }
  curl_easy_getinfo(u->curl, CURLINFO_RESPONSE_CODE, &out->http_status);
  json_t *resp = u->body ? json_loads(u->body, 0, NULL) : NULL;
  long s = out->http_status;
  if (s >= 200 && s < 300) {
    out->result = PX_UPLOAD_ACCEPTED;
    const char *uid = json_string_value(json_object_get(resp, "measurement_uid"));
    snprintf(out->uid, sizeof(out->uid), "%s", uid ? uid : "");
    json_t *leaf = json_object_get(resp, "leaf_index");
    out->leaf_index = json_is_integer(leaf) ? (long long)json_integer_value(leaf) : -1;
  } else {
    const char *code = json_string_value(json_object_get(resp, "error"));
    const char *detail = json_string_value(json_object_get(resp, "detail"));
    snprintf(out->error, sizeof(out->error), "HTTP %ld%s%s%s%s", s, code ? ": " : "",
             code ? code : "", detail ? ": " : "", detail ? detail : "");
    /* Only the collector's verdict on this measurement is final. A 404
     * from a mistyped URL, a proxy's 407, a 429: nothing wrong with the
     * measurement, so it stays pending. */
    static const char *const verdicts[] = {"malformed_request", "bad_signature", "too_large",
                                           "invalid_measurement"};
    out->result = PX_UPLOAD_RETRY;
    for (size_t i = 0; code != NULL && s >= 400 && s < 500 && i < 4; i++)
      if (strcmp(code, verdicts[i]) == 0)
        out->result = PX_UPLOAD_REJECTED;
  }
  json_decref(resp);
}
