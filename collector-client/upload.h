#ifndef PX_UPLOAD_H
#define PX_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/spool.h"

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
  char error[512];       /* error code and detail, or the transport error */
} px_upload_outcome_t;

int px_uploader_new(const px_upload_config_t *cfg, px_uploader_t **out, char *err,
                    size_t errlen);
void px_uploader_free(px_uploader_t *u);

void px_upload_one(px_uploader_t *u, const char *content, size_t n, const char *signature,
                   px_upload_outcome_t *out);

typedef struct px_drain_report {
  size_t accepted, rejected, pending;
  bool deferred;         /* skipped: backoff after earlier failures */
  int state_error;       /* 0, or why spool/upload-state.json was not saved */
  char last_error[512];
} px_drain_report_t;

/* Sends every pending measurement, oldest first. A measurement that meets
 * a retryable error is tried again with jittered exponential backoff
 * (a few times, seconds apart); if it still fails, draining stops (the
 * collector is down: no point hammering it with the rest), the failure is
 * recorded and the next automatic attempt is pushed back exponentially
 * (1 min doubling to 6 h, jittered). When respect_backoff is set (timer
 * runs) a drain before that time does nothing. Returns 0 when the spool
 * could be read (the outcome, and a failure to save the upload state, are
 * in *rep), else a negative errno. */
int px_upload_drain(px_uploader_t *u, px_spool_t *sp, bool respect_backoff,
                    px_drain_report_t *rep);

#endif
