/* How every handler answers: the headers every answer carries, JSON and
 * error bodies, the base of the links the API builds. */
#include "collector/http/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_util.h"

void px_response_headers(px_request_t *r, struct MHD_Response *resp, const char *content_type) {
  r->answered = true;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  /* Browsers must not guess another type (a measurement's bytes taken
   * for HTML, an export for a script). */
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  /* MHD ends the connection after an answer that says so. */
  if (r->close)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

enum MHD_Result px_respond_with(px_request_t *r, unsigned status, const char *content_type,
                                const void *body, size_t len, const char *const *extra) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (resp == NULL)
    return MHD_NO;
  px_response_headers(r, resp, content_type);
  for (size_t i = 0; extra != NULL && extra[i] != NULL && extra[i + 1] != NULL; i += 2)
    MHD_add_response_header(resp, extra[i], extra[i + 1]);
  enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

enum MHD_Result px_respond(px_request_t *r, unsigned status, const char *content_type,
                           const void *body, size_t len) {
  return px_respond_with(r, status, content_type, body, len, NULL);
}

enum MHD_Result px_respond_json(px_request_t *r, unsigned status, json_t *body) {
  char *text = px_json_dump(body);
  json_decref(body);
  if (text == NULL)
    return MHD_NO;
  size_t n = strlen(text);
  text[n] = '\n'; /* one line, newline-terminated, like every JSON we serve */
  enum MHD_Result ret = px_respond(r, status, "application/json", text, n + 1);
  free(text);
  return ret;
}

json_t *px_error_json(const char *code, const char *detail) {
  json_t *e = json_object();
  json_object_set_new(e, "error", json_string(code));
  json_object_set_new(e, "detail", px_json_string_lossy(detail, strlen(detail)));
  return e;
}

enum MHD_Result px_respond_error(px_request_t *r, unsigned status, const char *code,
                                 const char *detail) {
  return px_respond_json(r, status, px_error_json(code, detail));
}

void px_public_base(px_request_t *r, char *out, size_t n) {
  if (r->c->cfg.public_url != NULL) {
    snprintf(out, n, "%s", r->c->cfg.public_url);
    size_t len = strlen(out);
    if (len > 0 && out[len - 1] == '/')
      out[len - 1] = '\0';
    return;
  }
  const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
  const char *proto = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Forwarded-Proto");
  const union MHD_ConnectionInfo *peer =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  /* Behind a trusted TLS-terminating proxy the links must say https. */
  bool https = proto != NULL && strcmp(proto, "https") == 0 && peer != NULL &&
               px_collector_trusts(r->c, peer->client_addr);
  bool sane = host != NULL && host[0] != '\0' && strlen(host) < 256 &&
              strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
                  strlen(host);
  snprintf(out, n, "%s://%s", https ? "https" : "http", sane ? host : "localhost");
}

