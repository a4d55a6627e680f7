#ifndef PX_UPLOAD_H
#define PX_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>

/* Uploads signed measurements to a collector with libcurl: TLS
 * verification (optionally against --collector-ca), public-key pinning
 * (--collector-pin sha256//…), proxies including socks5h:// (Tor). */
typedef struct px_upload_config {
  const char *collector;  /* base URL, e.g. https://collector.example */
  const char *proxy;      /* NULL: none (curl's *_proxy variables ignored) */
  const char *ca_file;
  const char *pin;
  long timeout_ms;
} px_upload_config_t;

typedef struct px_uploader px_uploader_t;

typedef enum {
  PX_UPLOAD_ACCEPTED, /* 2xx: stored (or already stored) */
  PX_UPLOAD_REJECTED, /* the collector's 4xx verdict on it: never accepted */
  PX_UPLOAD_RETRY     /* network errors, 5xx, any other answer: try later */
} px_upload_result_t;

typedef struct px_upload_outcome {
  px_upload_result_t result;
  long http_status;      /* 0 when no HTTP answer */
  char uid[128];
  long long leaf_index;  /* its place in the collector's log; -1 when it keeps none */
  char error[512];       /* error code and detail, or the transport error */
} px_upload_outcome_t;

/* The transport's error for a person: libcurl's message (which may quote
 * the server) with a hint at the usual cause, e.g. https:// to a plain
 * HTTP collector ("wrong version number"). cc is a CURLcode. */
void px_transport_error(int code, const char *curl_err, char *out, size_t n);

int px_uploader_new(const px_upload_config_t *cfg, px_uploader_t **out, char *err,
                    size_t errlen);
void px_uploader_free(px_uploader_t *u);

void px_upload_one(px_uploader_t *u, const char *content, size_t n, const char *signature,
                   px_upload_outcome_t *out);

#endif
