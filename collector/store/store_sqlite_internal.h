#ifndef PX_STORE_SQLITE_INTERNAL_H
#define PX_STORE_SQLITE_INTERNAL_H

/* Shared by store_sqlite.c (submissions, the researcher API) and
 * store_sqlite_analysis.c (summaries for the comparison). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "collector/store/store.h"
#include "collector/store/store_migrate.h"
#include "common/merkle.h"

#define PX__READERS 4
#define PX__BATCH_MAX 512

struct px__sqlite;

/* A write for the writer thread: write() runs inside the shared
 * transaction; the job's submitter sleeps on cv until it is committed. */
typedef struct px__job {
  int (*write)(struct px__sqlite *s, struct px__job *j);
  void *arg;
  px_submission_t *sub;
  bool done, duplicate;
  int rc;
  pthread_cond_t cv; /* its own: a commit wakes exactly the requests it covered */
  struct px__job *next;
} px__job_t;

/* The SQLite implementation of px_store_t (collector/store/store.h). */
typedef struct px__sqlite {
  px_store_t base; /* first: a px_store_t * is a px__sqlite_t * */
  char path[4096];
  sqlite3 *writer;
  sqlite3_stmt *ins_key, *ins_m, *find, *key_vb, *ins_summary, *set_analyzed;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work_cv;
  px__job_t *head, *tail;
  bool stopping;
  void (*on_commit)(void *data);
  void *on_commit_data;
  bool readonly; /* a migration's source: no writer, no writer thread */

  pthread_mutex_t rmu;
  pthread_cond_t rcv;
  sqlite3 *readers[PX__READERS];
  bool reader_busy[PX__READERS];

  /* The measurement log (store_sqlite_log.c): the committed tree, read
   * under log_mu, and the writer's working copy inside a transaction. */
  pthread_mutex_t log_mu;
  px_merkle_frontier_t log, log_work;
  sqlite3_stmt *ins_leaf, *ins_node, *find_leaf;
} px__sqlite_t;

static inline px__sqlite_t *px__sq(px_store_t *s) {
  return (px__sqlite_t *)s;
}

/* Queues j and sleeps until it is committed; returns its rc. */
int px__store_run(px__sqlite_t *s, px__job_t *j);
sqlite3 *px__store_reader(px__sqlite_t *s, int *slot);
void px__store_reader_done(px__sqlite_t *s, int slot);

/* store_sqlite_log.c. open loads the committed tree (and, on a writable
 * store, adds stored measurements that have no leaf yet); append and
 * index_of run on the writer inside its transaction, on log_work;
 * committed(true) publishes log_work after a COMMIT, committed(false)
 * drops it after a rollback. */
int px__sq_log_open(px__sqlite_t *s, char *err, size_t errlen);
void px__sq_log_close(px__sqlite_t *s);
int px__sq_log_append(px__sqlite_t *s, px_submission_t *sub);
int px__sq_log_index_of(px__sqlite_t *s, const uint8_t sha[32], int64_t *index);
void px__sq_log_committed(px__sqlite_t *s, bool committed);
int px__sq_log_head(px_store_t *base, uint64_t *size, uint8_t root[32]);
int px__sq_log_node(px_store_t *base, unsigned level, uint64_t index, uint8_t out[32]);
int px__sq_log_leaf(px_store_t *base, int64_t index, const char *uid, px_log_leaf_t *out);
int px__sq_log_head_put(px_store_t *base, const px_log_head_t *h);
int px__sq_log_head_get(px_store_t *base, int64_t tree_size, px_log_head_t *out);
int px__sq_log_heads(px_store_t *base, int (*cb)(void *data, const px_log_head_t *h),
                     void *data);

/* store_sqlite_analysis.c's side of the ops table. */
int px__sq_analyze(px_store_t *base, unsigned max,
                   int (*summarize)(void *data, const px_stored_t *m, px_analysis_out_t *out),
                   void *data);
int px__sq_analysis_version(px_store_t *base, int version, bool *requeued);
int px__sq_pool(px_store_t *base, int (*cb)(void *data, const uint8_t *der, size_t n), void *data);
int px__sq_pool_add(px_store_t *base, const px_blob_t *certs, size_t n);
int px__sq_quarantined(px_store_t *base, unsigned limit,
                       int (*cb)(void *data, const char *uid, const char *reason, time_t at),
                       void *data, int64_t *total);
int px__sq_analysis_mark(px_store_t *base, int64_t *mark);
int px__sq_analysis_reached(px_store_t *base, int64_t mark, bool *reached);
int px__sq_summaries(px_store_t *base, const char *domain, time_t since, time_t until,
                     bool latest_per_key, int (*cb)(void *data, const px_summary_row_t *row),
                     void *data);

#endif
