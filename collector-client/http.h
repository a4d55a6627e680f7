#ifndef PX_HTTP_H
#define PX_HTTP_H

#include <stddef.h>

#include "collector-client/upload.h"

/* One request to the collector (check-in, compare) with the same TLS,
 * pinning and proxy settings as uploads. body NULL: GET, else POST of JSON.
 * *status is the HTTP status (0 if none); *response the body (caller
 * frees). Returns 0 when an HTTP answer arrived (any status), or a
 * negative error with the transport's message in err. */
int px_http_request(const px_upload_config_t *cfg, const char *path, const char *body,
                    long *status, char **response, char *err, size_t errlen);

#endif
