#ifndef PX_STORE_H
#define PX_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "collector/ingest/validate.h"
#include "common/sshsig.h"

/* Where accepted measurements live. Two implementations behind one
 * interface (the px_store_ops_t table below), chosen by the --db URL:
 * SQLite (store_sqlite*.c: one writer thread, group commit, WAL) and
 * PostgreSQL (store_pg*.c: a pool of libpq connections, any number of
 * collector processes on one database). Every function may be called from
 * any thread. put() returns only once the row is durable (committed and
 * flushed). Errors are negative errno values. */
typedef struct px_store px_store_t;

#define PX_UID_MAX 96

typedef struct px_submission {
  const char *content;   /* exact signed bytes */
  size_t content_len;
  const char *signature; /* armored SSHSIG */
  const px_ssh_pubkey_t *key;
  uint8_t sha256[32];    /* of content: the idempotency key */
  px_measurement_meta_t meta;
  time_t received_at;
  char uid[PX_UID_MAX];  /* derived from the content, so equal content => equal uid */
  /* The uploader's address geolocates to another country than probe_cc
   * claims; uploader_cc is that country (only then; never an address). */
  bool geo_mismatch;
  char uploader_cc[3];
  char stored_key_id[PX_KEY_ID_LEN]; /* set by put(): who signed the stored copy */
  time_t key_valid_before; /* set by put() when it answers -EKEYREVOKED */
  int64_t leaf_index;      /* set by put(): its place in the log, -1 where there is none */
} px_submission_t;

/* Filters of the researcher API; NULL/false fields do not filter. */
typedef struct px_filter {
  const char *probe_cc, *probe_asn, *domain, *test_name, *key_id;
  bool has_since, has_until;
  time_t since, until;
  unsigned limit;
  bool has_cursor;
  int64_t cursor_time, cursor_id;
  /* Exports only: rows whose store id is above this (a migration resuming
   * where it stopped). Honoured by the SQLite store, whose export pages on
   * id; a store that pages otherwise answers -EOPNOTSUPP when it is set. */
  int64_t after_id;
} px_filter_t;

/* "sqlite:PATH" (collector/store_sqlite*.c) or "postgresql://…" /
 * "postgres://…" (collector/store_pg*.c). Creates or migrates the schema.
 * -EPROTONOSUPPORT when the URL is not one of these (a usage error). */
int px_store_open(const char *url, px_store_t **out, char *err, size_t errlen);
/* Waits for queued writes, then closes. */
void px_store_close(px_store_t *s);

/* Stores s (blocking until durable). *duplicate is set when the same
 * content was already there; s->uid is the stored uid either way.
 * -EKEYREVOKED (nothing stored) when the key was rotated away at or before
 * the measurement's start time (sub->key_valid_before says when). */
int px_store_put(px_store_t *s, px_submission_t *sub, bool *duplicate);

/* The exact content and armored signature of uid; -ENOENT when unknown. */
int px_store_get(px_store_t *s, const char *uid, char **content, size_t *content_len,
                 char **signature, char **key_id);

/* One page, newest first: results is a JSON array of
 * {measurement_uid, input, probe_cc, probe_asn, test_name,
 * measurement_start_time, key_id, geo_mismatch, analysis ("pending",
 * "analysed", "quarantined"), claims_mismatch}; next_cursor is "" when
 * there is no more. */
int px_store_list(px_store_t *s, const px_filter_t *f, json_t **results,
                  char *next_cursor, size_t cursor_len);

/* Calls cb for every key known (signed a stored measurement, or named by
 * a key rotation): key id, public key line, first/last seen, and the time
 * it was rotated away (0: still current). */
int px_store_keys(px_store_t *s,
                  int (*cb)(void *data, const char *key_id, const char *pubkey,
                            time_t first_seen, time_t last_seen, time_t valid_before),
                  void *data);

/* Records a key rotation (both signatures already checked): old_key,
 * added if unknown, is valid before valid_before from now on (an earlier
 * rotation's time is kept, so repeating one changes nothing); new_key is
 * added if unknown. *stored is old_key's valid_before afterwards.
 * -ESTALE (nothing changed) when new_key was itself rotated away at or
 * before that time: a retired key cannot come back. */
int px_store_rotate_key(px_store_t *s, const px_ssh_pubkey_t *old_key,
                        const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                        time_t *stored);

/* A stored measurement as export (and a migration) reads it. Pointers
 * are valid during the callback only. */
typedef struct px_stored_row {
  int64_t id; /* the store's own row id; only meaningful within one store */
  const char *uid, *key_id, *signature;
  const char *content;
  size_t content_len;
  time_t measurement_start_time, received_at;
  bool geo_mismatch;
  const char *uploader_cc; /* NULL unless geo_mismatch */
  const uint8_t *content_sha256; /* 32 bytes, as the store recorded them */
} px_stored_row_t;

/* A streaming export of what a filter matches (limit and cursor ignored),
 * oldest first. Every row committed before px_store_export_open returned
 * is part of it exactly once, however the writers' commits interleave
 * (PostgreSQL: the export reads one snapshot; SQLite: ids commit in
 * order). An open export holds a database connection: close it. */
typedef struct px_store_export px_store_export_t;
/* -EBUSY when too many exports are open already (the caller answers 503). */
int px_store_export_open(px_store_t *s, const px_filter_t *f, px_store_export_t **out);
/* The next up to max rows, cb called for each; returns how many (0: the
 * end, and only 0), or a negative error (cb's, or the store's). A batch
 * also ends after the row that brings its contents to
 * PX_STORE_EXPORT_BATCH_BYTES, so that what a batch holds in memory (the
 * store's result, the caller's copies) is bounded by bytes, not only by
 * rows: about that much plus one row, however large the rows. */
#define PX_STORE_EXPORT_BATCH_BYTES ((size_t)1 << 20)
int px_store_export_next(px_store_export_t *e, unsigned max,
                         int (*cb)(void *data, const px_stored_row_t *row), void *data);
void px_store_export_close(px_store_export_t *e);

/* ---- analysis (collector/analysis/analysis.c) ---------------------------------- */

/* Bytes with their length (certificate DER, here). */
typedef struct px_blob {
  uint8_t *data;
  size_t len;
} px_blob_t;

typedef struct px_blobs {
  px_blob_t *v;
  size_t n, cap;
} px_blobs_t;

/* Appends a copy of data. 0 or -ENOMEM. */
int px_blobs_push(px_blobs_t *b, const uint8_t *data, size_t n);
void px_blobs_free(px_blobs_t *b);

/* A stored measurement, as the analysis reads it. */
typedef struct px_stored {
  int64_t id;
  const char *uid, *key_id, *probe_cc, *probe_asn, *domain;
  time_t measurement_start_time;
  const char *content;
  size_t content_len;
} px_stored_t;

/* One measurement's summary: what the comparison needs, derived from its
 * content (addresses answered, handshakes and their re-validation). */
typedef struct px_summary_row {
  int64_t measurement_id;
  const char *uid, *key_id, *probe_cc, *probe_asn, *domain;
  time_t measurement_start_time;
  /* Two summaries with one digest are the same text. A listing gives
   * each digest's text once, on the first row with it; the others say
   * summary NULL (a stable vantage's hourly runs, and vantages that see
   * the same thing, are read once). A row without a digest ("": made
   * before digests) always carries its own. */
  const char *digest;
  const char *summary; /* JSON, or NULL (see digest) */
} px_summary_row_t;

/* What the analysis made of one stored measurement: a summary, or (the
 * analysis failed on it: a crash, a timeout, content it cannot read) a
 * reason to quarantine it, so that it is never analysed again and never
 * stops the analysis of the others. */
typedef struct px_analysis_out {
  char *summary;        /* malloc'ed JSON (the store frees it) */
  bool claims_mismatch; /* the agent's certificate fields differ from the DER's */
  bool awaiting_issuer; /* a chain failed for want of an issuer the pool may supply */
  char *quarantine;     /* malloc'ed reason (the store frees it); summary is NULL */
  px_blobs_t pool;      /* intermediates for the pool (the store frees them) */
} px_analysis_out_t;

/* Summarises up to max stored measurements that have no summary yet:
 * summarize(data, m, &out) fills out for each one (neither a summary nor
 * a quarantine: the measurement is marked done anyway), and the summaries
 * and quarantines are stored in one commit with the measurements marked
 * done. A negative return of summarize abandons the batch (nothing is
 * marked). Several callers, in one process or on several nodes, may run
 * at once: each measurement is summarised by one of them. Returns how
 * many measurements the batch covered, or a negative error. */
int px_store_analyze(px_store_t *s, unsigned max,
                     int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                     void *data);
/* The summaries were made by an analysis of this version: when the store
 * holds older ones (or none recorded), every measurement is queued to be
 * summarised again, quarantines included, and the version recorded; a
 * newer recorded version is left alone (an older node of a cluster being
 * upgraded). *requeued says whether it happened. */
int px_store_analysis_version(px_store_t *s, int version, bool *requeued);
/* The intermediate pool (collector/analysis/summary.h): CA certificates seen in
 * stored chains that chain to the trust store, at most PX_POOL_MAX. The
 * analysis stores what it finds with the summaries (px_store_analyze),
 * and when the pool grows every measurement whose chain lacked an issuer
 * is summarised again. cb gets each certificate's DER. */
int px_store_pool(px_store_t *s, int (*cb)(void *data, const uint8_t *der, size_t n), void *data);
/* Adds certificates (a migration carrying the pool over); duplicates and
 * those beyond the bound are skipped. */
int px_store_pool_add(px_store_t *s, const px_blob_t *certs, size_t n);

/* Quarantined measurements, newest first, at most limit: cb gets each
 * one's uid, reason and when. *total is how many there are in all. */
int px_store_quarantined(px_store_t *s, unsigned limit,
                         int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                         void *data, int64_t *total);
/* A mark of everything committed so far (by any node), and whether the
 * analysis has summarised all of it since: "measurements acknowledged
 * before this request are part of the answer". */
int px_store_analysis_mark(px_store_t *s, int64_t *mark);
int px_store_analysis_reached(px_store_t *s, int64_t mark, bool *reached);
/* Summaries of domain with since <= measurement_start_time < until, oldest
 * first (then by measurement_id); with latest_per_key, only each key's
 * newest one (ties: the higher id), by probe_cc, probe_asn, key_id. */
int px_store_summaries(px_store_t *s, const char *domain, time_t since, time_t until,
                       bool latest_per_key,
                       int (*cb)(void *data, const px_summary_row_t *row), void *data);
/* fn is called after each commit of a submission made through s (this
 * process's commits only; other nodes' are found by polling). */
void px_store_set_commit_hook(px_store_t *s, void (*fn)(void *data), void *data);

/* A cheap liveness check of the database. */
int px_store_ping(px_store_t *s);

/* ---- the measurement log (docs/transparency.md, common/merkle.h) -------------
 * Every stored measurement is a leaf, appended in the transaction that
 * stores it, in commit order. A store without a log answers -ENOTSUP. */
typedef struct px_log_leaf {
  int64_t index;
  char uid[PX_UID_MAX];
  uint8_t content_sha256[32];
  time_t received_at;
} px_log_leaf_t;

/* The committed tree: its size and root. */
int px_store_log_head(px_store_t *s, uint64_t *size, uint8_t root[32]);
/* The hash of the perfect subtree (level, index); -ENOENT if not (yet) in the log. */
int px_store_log_node(px_store_t *s, unsigned level, uint64_t index, uint8_t out[32]);
/* The leaf at index (uid NULL) or of measurement uid; -ENOENT if none. */
int px_store_log_leaf(px_store_t *s, int64_t index, const char *uid, px_log_leaf_t *out);

/* A signed tree head as kept (collector/log/sth.c): the first one signed
 * of each size, so any head a researcher was ever shown can be fetched
 * again. public_key and signature are heap strings (px_log_head_free). */
typedef struct px_log_head {
  uint64_t tree_size;
  uint8_t root[32];
  time_t timestamp;
  char key_id[PX_KEY_ID_LEN];
  char *public_key; /* "ssh-ed25519 AAAA…" */
  char *signature;  /* armored SSHSIG */
} px_log_head_t;

void px_log_head_free(px_log_head_t *h);
/* Keeps h unless a head of its size is kept already (then 0 too). */
int px_store_log_head_put(px_store_t *s, const px_log_head_t *h);
/* The head kept for tree_size, or the largest kept (tree_size -1);
 * -ENOENT if none. */
int px_store_log_head_get(px_store_t *s, int64_t tree_size, px_log_head_t *out);
/* Every kept head, smallest first (the SQLite store, a migration's
 * source, only); cb's non-zero return stops and is returned. */
int px_store_log_heads(px_store_t *s, int (*cb)(void *data, const px_log_head_t *h), void *data);

/* ---- the interface every store implements ---------------------------------
 * Each function above is a thin dispatcher through s->ops (collector/store/store.c);
 * an implementation embeds px_store_t as the first member of its own struct.
 * The contracts are those of the px_store_* functions of the same name. */
typedef struct px_store_ops {
  const char *name; /* "sqlite", "postgresql" */
  void (*close)(px_store_t *s);
  int (*put)(px_store_t *s, px_submission_t *sub, bool *duplicate);
  int (*get)(px_store_t *s, const char *uid, char **content, size_t *content_len,
             char **signature, char **key_id);
  int (*list)(px_store_t *s, const px_filter_t *f, json_t **results, char *next_cursor,
              size_t cursor_len);
  int (*keys)(px_store_t *s,
              int (*cb)(void *data, const char *key_id, const char *pubkey, time_t first_seen,
                        time_t last_seen, time_t valid_before),
              void *data);
  int (*rotate_key)(px_store_t *s, const px_ssh_pubkey_t *old_key,
                    const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                    time_t *stored);
  int (*export_open)(px_store_t *s, const px_filter_t *f, px_store_export_t **out);
  int (*export_next)(px_store_export_t *e, unsigned max,
                     int (*cb)(void *data, const px_stored_row_t *row), void *data);
  void (*export_close)(px_store_export_t *e);
  int (*analyze)(px_store_t *s, unsigned max,
                 int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                 void *data);
  int (*analysis_version)(px_store_t *s, int version, bool *requeued);
  int (*pool)(px_store_t *s, int (*cb)(void *data, const uint8_t *der, size_t n), void *data);
  int (*pool_add)(px_store_t *s, const px_blob_t *certs, size_t n);
  int (*quarantined)(px_store_t *s, unsigned limit,
                     int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                     void *data, int64_t *total);
  int (*analysis_mark)(px_store_t *s, int64_t *mark);
  int (*analysis_reached)(px_store_t *s, int64_t mark, bool *reached);
  int (*summaries)(px_store_t *s, const char *domain, time_t since, time_t until,
                   bool latest_per_key, int (*cb)(void *data, const px_summary_row_t *row),
                   void *data);
  void (*set_commit_hook)(px_store_t *s, void (*fn)(void *data), void *data);
  int (*ping)(px_store_t *s);
  /* NULL where the store keeps no log (px_store_log_* answer -ENOTSUP). */
  int (*log_head)(px_store_t *s, uint64_t *size, uint8_t root[32]);
  int (*log_node)(px_store_t *s, unsigned level, uint64_t index, uint8_t out[32]);
  int (*log_leaf)(px_store_t *s, int64_t index, const char *uid, px_log_leaf_t *out);
  int (*log_head_put)(px_store_t *s, const px_log_head_t *h);
  int (*log_head_get)(px_store_t *s, int64_t tree_size, px_log_head_t *out);
  int (*log_heads)(px_store_t *s, int (*cb)(void *data, const px_log_head_t *h), void *data);
  /* A migration's operations (collector/store/store_migrate.h): every
   * store is counted and can be a source; only a destination has the
   * rest. */
  const struct px_store_migrate_ops *migrate;
} px_store_ops_t;

struct px_store {
  const px_store_ops_t *ops;
};

/* An implementation's export embeds this first. */
struct px_store_export {
  px_store_t *store;
};

/* The implementations' constructors (url without its scheme prefix for
 * SQLite, the whole URL for PostgreSQL). */
int px_store_sqlite_open(const char *path, px_store_t **out, char *err, size_t errlen);
int px_store_pg_open(const char *url, px_store_t **out, char *err, size_t errlen);

/* A deep copy of a filter's strings (px_filter_free frees them), for an
 * export that outlives its request. */
int px_filter_dup(px_filter_t *dst, const px_filter_t *src);
void px_filter_free(px_filter_t *f);

/* url with any password replaced by "***", for logs and status lines. */
void px_store_url_redact(const char *url, char *out, size_t n);

/* Cursor text <-> (time, id). */
void px_cursor_encode(int64_t t, int64_t id, char *out, size_t n);
int px_cursor_decode(const char *s, int64_t *t, int64_t *id);

#endif
