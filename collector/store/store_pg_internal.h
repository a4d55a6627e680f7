#ifndef PX_STORE_PG_INTERNAL_H
#define PX_STORE_PG_INTERNAL_H

/* Shared by the PostgreSQL store's files: store_pg.c (the pool, opening,
 * the ops table), store_pg_schema.c (migrations, monthly partitions),
 * store_pg_write.c (submissions, keys), store_pg_read.c (the researcher
 * API, export) and store_pg_analysis.c (the analysis queue, summaries). */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "collector/store/store.h"
#include "collector/store/store_migrate.h"

/* Every statement with a value in it is prepared on each connection when
 * it is opened (px__pg_stmts in store_pg.c; the SQL is beside each use).
 * The researcher API's filtered statements are prepared on first use,
 * one per combination of filters (px__pg_prepare_once). */
typedef enum {
  PX__PG_FIND,         /* key_id and leaf of stored content: sha256, start time */
  PX__PG_KEY_ADD,      /* a key, unless known */
  PX__PG_KEY_SEEN,     /* last_seen forward, returning valid_before */
  PX__PG_KEY_SHARE,    /* valid_before, the row locked against rotation */
  PX__PG_INSERT,       /* a measurement, its uid and its queue entry */
  PX__PG_INSERT_CHECKED, /* the same unless its key was rotated away before it started */
  PX__PG_KEYS_LOCK,    /* two keys' valid_before, locked for a rotation */
  PX__PG_KEY_ROTATE,   /* valid_before of one key */
  PX__PG_KEY_IMPORT,   /* a key merged in from another store */
  PX__PG_GET,          /* content, signature, key of a uid */
  PX__PG_KEYS,         /* every key */
  PX__PG_COUNT,        /* measurements and keys */
  PX__PG_QUEUE_TAKE,   /* the next pending measurements, locked, skipping others' */
  PX__PG_SUMMARY_ADD,  /* one summary */
  PX__PG_QUARANTINE,   /* one measurement the analysis could not analyse */
  PX__PG_POOL_ADD,     /* one intermediate, within the bound */
  PX__PG_POOL,         /* every intermediate */
  PX__PG_RECHECK,      /* summaries awaiting an issuer back into the queue */
  PX__PG_QUARANTINED,  /* the newest quarantines */
  PX__PG_QUEUE_DONE,   /* a queue entry gone */
  PX__PG_MARK,         /* the newest queue entry */
  PX__PG_REACHED,      /* whether none at or below a mark is left */
  PX__PG_SUMMARIES,    /* every summary of a domain in a window */
  PX__PG_SUMMARY_TEXTS, /* the texts of some of them */
  PX__PG_ENSURE_MONTH, /* the partitions of a time's month */
  PX__PG_MIG_START,    /* a migration's record, unless there */
  PX__PG_MIG_GET,      /* a migration's progress */
  PX__PG_MIG_MOVE,     /* a migration's progress forward, if nobody moved it */
  PX__PG_MIG_REFUSE,   /* a refused source row */
  PX__PG_MIG_REFUSED,  /* every refused row of a source */
  PX__PG_COUNT_UIDS,   /* how many of a list of uids are stored */
  PX__PG_LOG_LOCK,     /* the log's size and frontier, its row locked until COMMIT */
  PX__PG_LOG_HEAD,     /* the same, unlocked */
  PX__PG_LOG_HEAD_SET, /* the log's new size and frontier */
  PX__PG_LOG_LEAF_ADD, /* one leaf */
  PX__PG_LOG_NODE_ADD, /* one perfect subtree */
  PX__PG_LOG_NODE,     /* a perfect subtree's hash */
  PX__PG_LOG_LEAF_AT,  /* the leaf at an index */
  PX__PG_LOG_LEAF_OF,  /* the leaf of a uid */
  PX__PG_LOG_UNLOGGED, /* stored measurements without a leaf, oldest first */
  PX__PG_LOG_HEAD_PUT, /* a signed tree head, unless one of its size is kept */
  PX__PG_LOG_HEAD_GET, /* the signed tree head of a size */
  PX__PG_LOG_HEAD_TOP, /* the largest signed tree head */
  PX__PG_NSTMT
} px__pg_stmt_t;

/* One pooled connection: used by one thread at a time (libpq connections
 * are not to be shared concurrently). */
typedef struct px__pgconn {
  PGconn *conn;
  bool busy;
  bool broken;               /* dropped at release, reopened at the next checkout */
  uint64_t list_prepared[2]; /* which filter combinations are prepared, bit = mask */
  uint64_t export_prepared[2];
} px__pgconn_t;

#define PX__PG_POOL_DEFAULT 10
#define PX__PG_POOL_MAX 256

/* The PostgreSQL implementation of px_store_t. */
typedef struct px__pg {
  px_store_t base; /* first: a px_store_t * is a px__pg_t * */
  char *conninfo;  /* the URL without the parameters that are ours */
  unsigned pool_size, exports_max;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  px__pgconn_t *pool;
  unsigned exports; /* open exports, each holding a connection */
  bool stopping;

  /* Months (year * 12 + month - 1) known to have their partitions. */
  pthread_mutex_t months_mu;
  int32_t *months;
  size_t nmonths, months_cap;

  void (*on_commit)(void *data);
  void *on_commit_data;

  /* Submissions waiting for a batch (store_pg_put.c), and how many
   * threads are writing batches. */
  pthread_mutex_t put_mu;
  struct px__pg_job *put_head, *put_tail;
  unsigned put_leaders;

  /* Queue entries this node's analysis deleted since it last vacuumed
   * the queue (see px__pg_analyze). */
  _Atomic int64_t queue_dead;
} px__pg_t;

static inline px__pg_t *px__pgs(px_store_t *s) {
  return (px__pg_t *)s;
}

/* Parameters of one statement: text, 64-bit integers (sent as text),
 * binary, or NULL. */
#define PX__PG_ARGS_MAX 24
typedef struct px__pg_args {
  const char *v[PX__PG_ARGS_MAX];
  int len[PX__PG_ARGS_MAX], fmt[PX__PG_ARGS_MAX];
  char num[PX__PG_ARGS_MAX][24];
  int n;
} px__pg_args_t;

void px__pg_text(px__pg_args_t *a, const char *s);
void px__pg_i64(px__pg_args_t *a, int64_t v);
void px__pg_bin(px__pg_args_t *a, const void *p, size_t n);
void px__pg_null(px__pg_args_t *a);
/* PX__PG_INSERT's parameters for a submission (store_pg_write.c). */
void px__pg_insert_args(px__pg_args_t *a, const px_submission_t *sub);

/* A connection from the pool, opened (and its statements prepared) if
 * need be; waits up to 30 s for one to be free. NULL with *rc -EBUSY
 * (pool exhausted), -EIO (the database does not answer) or -ESHUTDOWN. */
px__pgconn_t *px__pg_checkout(px__pg_t *s, int *rc);
/* Gives c back; a connection that failed (or was left inside a
 * transaction) is closed, so the next user gets a clean one. */
void px__pg_release(px__pg_t *s, px__pgconn_t *c);

/* Runs prepared statement st (binary results when binary); NULL on a
 * failure to send. The caller PQclear()s. */
PGresult *px__pg_run(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a, bool binary);
/* Runs a named statement prepared by px__pg_prepare_once. */
PGresult *px__pg_run_named(px__pgconn_t *c, const char *name, const px__pg_args_t *a,
                           bool binary);
/* Prepares sql as name on c unless bit mask of *prepared says it is. */
int px__pg_prepare_once(px__pgconn_t *c, uint64_t prepared[2], unsigned mask, const char *name,
                        const char *sql);
/* Pipeline mode (store_pg_put.c): send prepared statement st (false,
 * the connection marked broken, when it could not be sent); the next
 * statement's result, the rest of its results read (NULL: the connection
 * is gone); the sync's own result, and out of pipeline mode. */
bool px__pg_send(px__pgconn_t *c, px__pg_stmt_t st, const px__pg_args_t *a);
PGresult *px__pg_next(px__pgconn_t *c);
bool px__pg_pipe_end(px__pgconn_t *c);
/* Runs a statement that answers at most one row on a pooled connection
 * (binary results when binary); *out (the caller clears it) holds that
 * row when 0 is returned. -ENOENT when it answered none, -EIO, or
 * checkout's error. */
int px__pg_one_row(px__pg_t *s, bool binary, px__pg_stmt_t st, const px__pg_args_t *a,
                   const char *what, PGresult **out);
/* A statement without values: BEGIN, COMMIT, ROLLBACK. 0 or -EIO. */
int px__pg_exec(px__pgconn_t *c, const char *sql);

/* The result's status is what was expected; otherwise logs why (once per
 * kind of failure, not per row) and marks c broken when the connection
 * is gone. */
bool px__pg_ok(px__pgconn_t *c, PGresult *r, ExecStatusType want, const char *what);
/* How a try of a write ended, beyond 0 and the errors put() returns. */
#define PX__PG_RETRY 1      /* a deadlock, a serialization failure: try again */
#define PX__PG_NO_MONTH 2   /* the month's partition is missing */
/* What a failed result means: PX__PG_RETRY, PX__PG_NO_MONTH or -EIO. */
int px__pg_failed(PGresult *r);
/* SQLSTATE of a failed result ("" when none). */
const char *px__pg_state(PGresult *r);

/* Reading results. Text and binary formats both hold integers; text
 * columns are NUL-terminated in both. */
int64_t px__pg_get_i64(PGresult *r, int row, int col);
bool px__pg_get_bool(PGresult *r, int row, int col);

/* Migrations and partitions (store_pg_schema.c). */
int px__pg_migrate(PGconn *conn, char *err, size_t errlen);
/* The partitions for t's month exist (created, race-free across nodes,
 * if need be). */
int px__pg_ensure_month(px__pg_t *s, px__pgconn_t *c, int64_t t);
/* Forgets that t's month has partitions (an operator detached it). */
void px__pg_forget_month(px__pg_t *s, int64_t t);

/* The ops, by file. */
int px__pg_put(px_store_t *base, px_submission_t *sub, bool *duplicate);
int px__pg_rotate_key(px_store_t *base, const px_ssh_pubkey_t *old_key,
                      const px_ssh_pubkey_t *new_key, time_t valid_before, time_t now,
                      time_t *stored);
int px__pg_import_key(px_store_t *base, const char *key_id, const char *pubkey,
                      time_t first_seen, time_t last_seen, time_t valid_before);
int px__pg_get(px_store_t *base, const char *uid, char **content, size_t *content_len,
               char **signature, char **key_id);
int px__pg_list(px_store_t *base, const px_filter_t *f, json_t **results, char *next_cursor,
                size_t cursor_len);
int px__pg_keys(px_store_t *base,
                int (*cb)(void *data, const char *key_id, const char *pubkey, time_t first_seen,
                          time_t last_seen, time_t valid_before),
                void *data);
int px__pg_export_open(px_store_t *base, const px_filter_t *f, px_store_export_t **out);
int px__pg_export_next(px_store_export_t *e, unsigned max,
                       int (*cb)(void *data, const px_stored_row_t *row), void *data);
void px__pg_export_close(px_store_export_t *e);
int px__pg_count(px_store_t *base, int64_t *measurements, int64_t *keys);
int px__pg_analyze(px_store_t *base, unsigned max,
                   int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                   void *data);
int px__pg_analysis_version(px_store_t *base, int version, bool *requeued);
int px__pg_pool(px_store_t *base, int (*cb)(void *data, const uint8_t *der, size_t n), void *data);
int px__pg_pool_add(px_store_t *base, const px_blob_t *certs, size_t n);
int px__pg_quarantined(px_store_t *base, unsigned limit,
                       int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                       void *data, int64_t *total);
int px__pg_analysis_mark(px_store_t *base, int64_t *mark);
int px__pg_analysis_reached(px_store_t *base, int64_t mark, bool *reached);
int px__pg_summaries(px_store_t *base, const char *domain, time_t since, time_t until,
                     bool latest_per_key, int (*cb)(void *data, const px_summary_row_t *row),
                     void *data);
/* store_pg_migrate.c: a migration's side. */
int px__pg_migration_get(px_store_t *base, const char *source, px_migration_t *m);
int px__pg_import_batch(px_store_t *base, const char *source, int64_t from_id, int64_t to_id,
                        const px_submission_t *rows, size_t n, const px_refusal_t *refused,
                        size_t nrefused, size_t *copied);
int px__pg_count_uids(px_store_t *base, const char *const *uids, size_t n, size_t *present);
int px__pg_migration_refused(px_store_t *base, const char *source,
                             int (*cb)(void *data, const char *uid, const char *reason),
                             void *data);

/* The measurement log (store_pg_log.c). append runs on c inside the
 * caller's transaction, outside pipeline mode: it locks the log's head
 * row (held until the caller's COMMIT or ROLLBACK, so every node appends
 * in one order) and appends subs[0..n) in that order, at indexes
 * *first_index and on. 0 or what px__pg_failed says. */
int px__pg_log_append(px__pgconn_t *c, const px_submission_t *const *subs, size_t n,
                      int64_t *first_index);
/* Measurements stored before the log existed become leaves, oldest
 * first (at open; any node may, the lock makes it once). */
int px__pg_log_backfill(px__pg_t *s, char *err, size_t errlen);
int px__pg_log_head(px_store_t *base, uint64_t *size, uint8_t root[32]);
int px__pg_log_node(px_store_t *base, unsigned level, uint64_t index, uint8_t out[32]);
int px__pg_log_leaf(px_store_t *base, int64_t index, const char *uid, px_log_leaf_t *out);
int px__pg_log_head_put(px_store_t *base, const px_log_head_t *h);
int px__pg_log_head_get(px_store_t *base, int64_t tree_size, px_log_head_t *out);

/* Export accounting (store_pg.c): an export holds a pool connection for
 * its lifetime; at most exports_max do. */
int px__pg_export_slot(px__pg_t *s);
void px__pg_export_slot_done(px__pg_t *s);

#endif
