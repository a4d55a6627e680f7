#ifndef PX_ROUTES_H
#define PX_ROUTES_H

/* What server.c routes each request to. Each handler answers through
 * collector/http/request.h and returns its MHD result. */

#include "collector/http/query.h"
#include "collector/http/request.h"

/* POST /api/v1/submit (collector/ingest/api_submit.c). */
enum MHD_Result px_api_submit(px_request_t *r);
/* The researcher API (collector/http/api_read.c, api_compare.c) and the
 * agents' check-in (api_checkin.c). */
enum MHD_Result px_api_measurements(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_raw(px_request_t *r, const px_query_t *q, bool signature);
enum MHD_Result px_api_allowed_signers(px_request_t *r);
enum MHD_Result px_api_export(px_request_t *r, const px_query_t *q);
/* GET /api/v1/observations.csv: the export as one CSV row per observation. */
enum MHD_Result px_api_observations(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_quarantine(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_compare(px_request_t *r, const px_query_t *q);
/* GET /api/v1/overview, and / without domain= (collector/http/overview.c):
 * domains x countries over a window, each cell compare's verdict. */
enum MHD_Result px_api_overview(px_request_t *r, const px_query_t *q);
enum MHD_Result px_web_overview(px_request_t *r, const px_query_t *q);
/* GET /api/v1/compare/history: compare bucket by bucket (api_history.c). */
enum MHD_Result px_api_compare_history(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_checkin(px_request_t *r);
/* The measurement log (collector/http/api_log.c). */
enum MHD_Result px_api_log_sth(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_log_inclusion(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_log_consistency(px_request_t *r, const px_query_t *q);
enum MHD_Result px_api_log_leaves(px_request_t *r, const px_query_t *q);
/* POST /api/v1/key_rotation (collector/http/api_keys.c); bodies above
 * PX_ROTATION_MAX_BODY (or --max-body, if smaller) get 413. */
#define PX_ROTATION_MAX_BODY 16384
enum MHD_Result px_api_key_rotation(px_request_t *r);
/* The web view (collector/http/web.c): the page, and its script and style
 * under /static/ (404 for any other name there). */
enum MHD_Result px_web_page(px_request_t *r);
enum MHD_Result px_web_static(px_request_t *r);

#endif
