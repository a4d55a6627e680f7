/* The store interface (collector/store/store.h), one contract for both
 * implementations: SQLite in a temporary file, PostgreSQL in a schema of
 * its own in the test cluster (tests/pg/pg.sh, PX_PG_DIR). And what only
 * PostgreSQL has: several stores ("nodes") on one database at once. */
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/store/store.h"
#include "collector/store/store_migrate.h"
#include "common/timeutil.h"
#include "tests/runner.h"

/* ---- databases ------------------------------------------------------------ */

/* PX_PG_URL from PX_PG_DIR/pg.env (static), or skips the test. */
static const char *px__pg_base_url(void) {
  static char url[1024];
  const char *dir = getenv("PX_PG_DIR");
  char path[1024], line[1024];
  if (dir == NULL)
    px_test_skip("PX_PG_DIR is not set (run through ctest, which starts tests/pg/pg.sh)");
  snprintf(path, sizeof(path), "%s/pg.env", dir);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    px_test_skip("the PostgreSQL test cluster is not up (%s)", path);
  url[0] = '\0';
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "PX_PG_URL=", 10) == 0) {
      line[strcspn(line, "\n")] = '\0';
      snprintf(url, sizeof(url), "%s", line + 10);
    }
  fclose(f);
  if (url[0] == '\0')
    px_test_skip("no PX_PG_URL in %s", path);
  return url;
}

/* A --db URL of a fresh database: "sqlite:<tmp>/s.sqlite" (dir set, the
 * caller removes it) or a new schema of the PostgreSQL test database. */
static void px__fresh_db(bool pg, char *url, size_t n, char **dir) {
  static int serial;
  *dir = NULL;
  if (!pg) {
    *dir = px_test_tmpdir();
    snprintf(url, n, "sqlite:%s/s.sqlite", *dir);
    return;
  }
  const char *base = px__pg_base_url();
  char schema[64], sql[128];
  snprintf(schema, sizeof(schema), "u%d_%d_%ld", (int)getpid(), ++serial, (long)random());
  PGconn *conn = PQconnectdb(base);
  assert_int_equal(PQstatus(conn), CONNECTION_OK);
  snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
  PGresult *r = PQexec(conn, sql);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(conn);
  snprintf(url, n, "%s?options=-csearch_path%%3D%s&pool_size=6", base, schema);
}

static px_store_t *px__open(const char *url) {
  px_store_t *s;
  char err[512] = "";
  int rc = px_store_open(url, &s, err, sizeof(err));
  if (rc != 0)
    fail_msg("px_store_open(%s): %d %s", url, rc, err);
  return s;
}

/* ---- submissions ------------------------------------------------------------ */

typedef struct {
  px_ssh_pubkey_t pub;
} px__key_t;

static void px__key(px__key_t *k) {
  EVP_PKEY *p = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  assert_non_null(p);
  assert_int_equal(px_ssh_pubkey_from_pkey(p, &k->pub), 0);
  EVP_PKEY_free(p);
}

#define PX__T0 ((time_t)1413806400) /* 2014-10-20 12:00:00 UTC */

/* Measurement i: its own content and start time (spread over three
 * months, so the PostgreSQL store makes partitions on the way), country
 * and domain from i. The store does not parse content. */
typedef struct {
  char content[256];
  px_submission_t sub;
} px__m_t;

static void px__m(px__m_t *m, int i, const px__key_t *k, time_t start) {
  static const char *const ccs[] = {"DE", "US", "CN"};
  memset(m, 0, sizeof(*m));
  int n = snprintf(m->content, sizeof(m->content), "{\"m\":%d,\"t\":%lld}", i, (long long)start);
  px_submission_t *s = &m->sub;
  s->content = m->content;
  s->content_len = (size_t)n;
  s->signature = "-----BEGIN SSH SIGNATURE-----\nnot checked by the store\n"
                 "-----END SSH SIGNATURE-----\n";
  s->key = &k->pub;
  unsigned len;
  EVP_Digest(m->content, (size_t)n, s->sha256, &len, EVP_sha256(), NULL);
  snprintf(s->meta.probe_cc, sizeof(s->meta.probe_cc), "%s", ccs[i % 3]);
  snprintf(s->meta.probe_asn, sizeof(s->meta.probe_asn), "AS%d", 100 + i % 2);
  snprintf(s->meta.test_name, sizeof(s->meta.test_name), "tls_cert_consistency");
  snprintf(s->meta.domain, sizeof(s->meta.domain), "d%d.example", i % 4);
  snprintf(s->meta.input, sizeof(s->meta.input), "d%d.example", i % 4);
  s->meta.measurement_start_time = start;
  s->received_at = PX__T0 + (time_t)100 * 86400;
  /* Equal content, equal uid; the content holds i. */
  snprintf(s->uid, sizeof(s->uid), "u_%02x%02x%02x%02x_%d", s->sha256[0], s->sha256[1],
           s->sha256[2], s->sha256[3], i);
  if (i % 5 == 0) {
    s->geo_mismatch = true;
    memcpy(s->uploader_cc, "FR", 3);
  }
}

static time_t px__start(int i) {
  return PX__T0 + (time_t)i * 86400 * 2; /* 40 measurements: Oct to Dec 2014 */
}

static void px__put_new(px_store_t *s, px__m_t *m) {
  bool dup = true;
  assert_int_equal(px_store_put(s, &m->sub, &dup), 0);
  assert_false(dup);
  assert_string_equal(m->sub.stored_key_id, m->sub.key->key_id);
}

/* ---- readers ---------------------------------------------------------------- */

typedef struct {
  int n;
  int64_t last_time, last_id;
  bool ordered;
  char uids[64][PX_UID_MAX];
} px__rows_t;

static int px__collect_row(void *data, const px_stored_row_t *row) {
  px__rows_t *r = data;
  if (r->n > 0 && ((int64_t)row->measurement_start_time < r->last_time))
    r->ordered = false;
  r->last_time = row->measurement_start_time;
  r->last_id = row->id;
  assert_true(row->content_len > 0 && row->content[0] == '{');
  assert_non_null(row->signature);
  assert_int_equal(row->geo_mismatch, row->uploader_cc != NULL);
  if (row->uploader_cc != NULL)
    assert_string_equal(row->uploader_cc, "FR");
  if (r->n < 64)
    snprintf(r->uids[r->n], PX_UID_MAX, "%s", row->uid);
  r->n++;
  return 0;
}

/* Everything an export of f yields, in batches of 7. */
static void px__export_all(px_store_t *s, const px_filter_t *f, px__rows_t *out) {
  px_store_export_t *e;
  memset(out, 0, sizeof(*out));
  out->ordered = true;
  assert_int_equal(px_store_export_open(s, f, &e), 0);
  int n;
  while ((n = px_store_export_next(e, 7, px__collect_row, out)) > 0)
    ;
  assert_int_equal(n, 0);
  px_store_export_close(e);
}

/* Walks a listing page by page; returns how many rows, checking order. */
static int px__list_all(px_store_t *s, px_filter_t f, unsigned limit) {
  int total = 0;
  int64_t prev = INT64_MAX;
  f.limit = limit;
  for (int pages = 0; pages < 100; pages++) {
    json_t *results = NULL;
    char cursor[64];
    assert_int_equal(px_store_list(s, &f, &results, cursor, sizeof(cursor)), 0);
    size_t i;
    json_t *row;
    json_array_foreach(results, i, row) {
      time_t t;
      assert_int_equal(
          px_time_parse_utc(json_string_value(json_object_get(row, "measurement_start_time")), &t),
          0);
      assert_true((int64_t)t <= prev); /* newest first */
      prev = t;
      total++;
    }
    assert_true(json_array_size(results) <= limit);
    json_decref(results);
    if (cursor[0] == '\0')
      return total;
    assert_int_equal(px_cursor_decode(cursor, &f.cursor_time, &f.cursor_id), 0);
    f.has_cursor = true;
  }
  fail_msg("pagination does not end");
  return -1;
}

typedef struct {
  int calls;
  int64_t ids[256];
} px__summarized_t;

static int px__summarize(void *data, const px_stored_t *m, px_analysis_out_t *out) {
  px__summarized_t *a = data;
  assert_true(m->content_len > 0 && m->content[0] == '{');
  if (a->calls < 256)
    a->ids[a->calls] = m->id;
  a->calls++;
  out->summary = strdup("{\"v\":1}");
  return out->summary ? 0 : -ENOMEM;
}

typedef struct {
  int rows, texts;
  char digest[65];
} px__summaries_t;

/* Every row has a digest; equal texts share one, and only the newest row
 * of a (key, digest) carries the text: the others say NULL. */
static int px__count_summary(void *data, const px_summary_row_t *row) {
  px__summaries_t *n = data;
  assert_non_null(row->digest);
  assert_true(strlen(row->digest) > 0 && strlen(row->digest) < sizeof(n->digest));
  if (n->rows == 0)
    snprintf(n->digest, sizeof(n->digest), "%s", row->digest);
  assert_string_equal(row->digest, n->digest);
  if (row->summary != NULL) {
    assert_string_equal(row->summary, "{\"v\":1}");
    n->texts++;
  }
  n->rows++;
  return 0;
}

typedef struct {
  int n;
  time_t valid_before;
  const char *want;
} px__keys_t;

static int px__key_cb(void *data, const char *key_id, const char *pubkey, time_t first_seen,
                      time_t last_seen, time_t valid_before) {
  px__keys_t *k = data;
  assert_true(strncmp(pubkey, "ssh-ed25519 ", 12) == 0);
  assert_true(first_seen <= last_seen);
  if (k->want != NULL && strcmp(key_id, k->want) == 0)
    k->valid_before = valid_before;
  k->n++;
  return 0;
}

/* ---- the contract ---------------------------------------------------------- */

static void px__contract(bool pg) {
  char url[1024], *dir;
  px__fresh_db(pg, url, sizeof(url), &dir);
  px_store_t *s = px__open(url);
  px__key_t k1, k2, k3;
  px__key(&k1);
  px__key(&k2);
  px__key(&k3);
  static px__m_t ms[40];
  for (int i = 0; i < 40; i++) {
    px__m(&ms[i], i, i % 2 ? &k2 : &k1, px__start(i));
    px__put_new(s, &ms[i]);
  }
  int64_t nm, nk;
  assert_int_equal(px_store_count(s, &nm, &nk), 0);
  assert_int_equal(nm, 40);
  assert_int_equal(nk, 2);

  /* The same content again, even signed by another key: one row, the
   * first signer's. */
  px__m_t again;
  px__m(&again, 3, &k3, px__start(3));
  bool dup = false;
  assert_int_equal(px_store_put(s, &again.sub, &dup), 0);
  assert_true(dup);
  assert_string_equal(again.sub.stored_key_id, k2.pub.key_id);
  assert_int_equal(px_store_count(s, &nm, &nk), 0);
  assert_int_equal(nm, 40);
  assert_int_equal(nk, 2); /* nothing changes, not even the key list */

  char *content, *sig, *kid;
  size_t len;
  assert_int_equal(px_store_get(s, ms[7].sub.uid, &content, &len, &sig, &kid), 0);
  assert_int_equal(len, ms[7].sub.content_len);
  assert_memory_equal(content, ms[7].content, len);
  assert_string_equal(sig, ms[7].sub.signature);
  assert_string_equal(kid, k2.pub.key_id);
  free(content);
  free(sig);
  free(kid);
  assert_int_equal(px_store_get(s, "nope", &content, &len, &sig, &kid), -ENOENT);

  /* Listing: every filter, every page size; export: everything once,
   * oldest first. */
  px_filter_t f = {0};
  assert_int_equal(px__list_all(s, f, 7), 40);
  assert_int_equal(px__list_all(s, f, 100), 40);
  f.probe_cc = "CN";
  assert_int_equal(px__list_all(s, f, 3), 13);
  f.key_id = k1.pub.key_id;
  assert_int_equal(px__list_all(s, f, 2), 7); /* even i, i % 3 == 2 */
  memset(&f, 0, sizeof(f));
  f.has_since = f.has_until = true;
  f.since = px__start(10);
  f.until = px__start(20);
  assert_int_equal(px__list_all(s, f, 4), 10);
  f.domain = "d1.example";
  assert_int_equal(px__list_all(s, f, 4), 2); /* 13, 17 */
  px__rows_t rows;
  memset(&f, 0, sizeof(f));
  px__export_all(s, &f, &rows);
  assert_int_equal(rows.n, 40);
  assert_true(rows.ordered);
  f.probe_asn = "AS101";
  px__export_all(s, &f, &rows);
  assert_int_equal(rows.n, 20);

  /* Analysis: each measurement summarised once, whatever the batches;
   * the mark taken before is reached after. */
  int64_t mark;
  bool reached = true;
  assert_int_equal(px_store_analysis_mark(s, &mark), 0);
  assert_int_equal(px_store_analysis_reached(s, mark, &reached), 0);
  assert_false(reached);
  px__summarized_t an = {0};
  int n, total = 0;
  while ((n = px_store_analyze(s, 15, px__summarize, &an)) > 0)
    total += n;
  assert_int_equal(n, 0);
  assert_int_equal(total, 40);
  assert_int_equal(an.calls, 40);
  assert_int_equal(px_store_analysis_reached(s, mark, &reached), 0);
  assert_true(reached);
  px__summaries_t sums = {0};
  assert_int_equal(px_store_summaries(s, "d1.example", 0, PX__T0 * 2, false, px__count_summary,
                                      &sums),
                   0);
  assert_int_equal(sums.rows, 10);
  assert_int_equal(sums.texts, 1); /* one key, one text: read once */
  memset(&sums, 0, sizeof(sums));
  assert_int_equal(px_store_summaries(s, "d1.example", 0, PX__T0 * 2, true, px__count_summary,
                                      &sums),
                   0);
  assert_int_equal(sums.rows, 1); /* i = 1, 5, 9…: all k2 */
  assert_int_equal(sums.texts, 1);

  /* Rotation: k2 signs nothing that starts at or after valid_before; the
   * earliest rotation counts; a retired key cannot come back. */
  time_t vb = px__start(50), stored = 0;
  assert_int_equal(px_store_rotate_key(s, &k2.pub, &k3.pub, vb, vb + 10, &stored), 0);
  assert_int_equal(stored, vb);
  assert_int_equal(px_store_rotate_key(s, &k2.pub, &k3.pub, vb + 100, vb + 10, &stored), 0);
  assert_int_equal(stored, vb);
  assert_int_equal(px_store_rotate_key(s, &k3.pub, &k2.pub, vb + 200, vb + 10, &stored), -ESTALE);
  px__m_t late, early;
  px__m(&late, 51, &k2, px__start(51));
  assert_int_equal(px_store_put(s, &late.sub, &dup), -EKEYREVOKED);
  assert_int_equal(late.sub.key_valid_before, vb);
  px__m(&early, 49, &k2, px__start(49));
  px__put_new(s, &early);
  px__keys_t keys = {.want = k2.pub.key_id};
  assert_int_equal(px_store_keys(s, px__key_cb, &keys), 0);
  assert_int_equal(keys.n, 3);
  assert_int_equal(keys.valid_before, vb);

  /* A key imported from another store merges: earlier valid_before wins. */
  char *line = px_ssh_pubkey_line(&k1.pub);
  assert_int_equal(px_store_import_key(s, k1.pub.key_id, line, 10, 20, vb + 5), 0);
  assert_int_equal(px_store_import_key(s, k1.pub.key_id, line, 30, 40, 0), 0);
  free(line);
  keys = (px__keys_t){.want = k1.pub.key_id};
  assert_int_equal(px_store_keys(s, px__key_cb, &keys), 0);
  assert_int_equal(keys.valid_before, vb + 5);
  assert_int_equal(px_store_ping(s), 0);
  px_store_close(s);

  /* Reopened: the schema is there, nothing is migrated twice. */
  s = px__open(url);
  assert_int_equal(px_store_count(s, &nm, &nk), 0);
  assert_int_equal(nm, 41);
  px_store_close(s);
  if (dir != NULL) {
    px_test_rmrf(dir);
    free(dir);
  }
}

PX_TEST(store_contract_sqlite) {
  (void)state;
  px__contract(false);
}

PX_TEST(store_contract_postgresql) {
  (void)state;
  px__contract(true);
}

/* ---- several nodes on one PostgreSQL database --------------------------------- */

#define PX__NODES_THREADS 6
#define PX__NODES_M 60

typedef struct {
  px_store_t *store;
  px__m_t *ms; /* its own copies: put() writes into the submission */
  int fresh, errors;
  char uids[PX__NODES_M][PX_UID_MAX];
  px__summarized_t an;
} px__node_thread_t;

static void *px__node_put_all(void *arg) {
  px__node_thread_t *t = arg;
  for (int i = 0; i < PX__NODES_M; i++) {
    bool dup;
    if (px_store_put(t->store, &t->ms[i].sub, &dup) != 0) {
      t->errors++;
      continue;
    }
    t->fresh += !dup;
    snprintf(t->uids[i], PX_UID_MAX, "%s", t->ms[i].sub.uid);
  }
  return NULL;
}

static void *px__node_analyze(void *arg) {
  px__node_thread_t *t = arg;
  int n;
  while ((n = px_store_analyze(t->store, 4, px__summarize, &t->an)) > 0)
    ;
  if (n < 0)
    t->errors++;
  return NULL;
}

/* The same 60 measurements sent by six threads through two stores at
 * once: each stored once, one "new" answer per measurement, one uid; then
 * both nodes' analyses at once: each measurement summarised exactly once. */
PX_TEST(store_postgresql_two_nodes) {
  (void)state;
  char url[1024], *dir;
  px__fresh_db(true, url, sizeof(url), &dir);
  px_store_t *nodes[2] = {px__open(url), px__open(url)};
  px__key_t k;
  px__key(&k);
  static px__node_thread_t t[PX__NODES_THREADS];
  pthread_t th[PX__NODES_THREADS];
  for (int j = 0; j < PX__NODES_THREADS; j++) {
    memset(&t[j], 0, sizeof(t[j]));
    t[j].store = nodes[j % 2];
    t[j].ms = calloc(PX__NODES_M, sizeof(px__m_t));
    assert_non_null(t[j].ms);
    for (int i = 0; i < PX__NODES_M; i++)
      px__m(&t[j].ms[i], i, &k, px__start(i % 40) + i);
  }
  for (int j = 0; j < PX__NODES_THREADS; j++)
    assert_int_equal(pthread_create(&th[j], NULL, px__node_put_all, &t[j]), 0);
  int fresh = 0;
  for (int j = 0; j < PX__NODES_THREADS; j++) {
    pthread_join(th[j], NULL);
    assert_int_equal(t[j].errors, 0);
    fresh += t[j].fresh;
    for (int i = 0; i < PX__NODES_M; i++)
      assert_string_equal(t[j].uids[i], t[0].uids[i]);
  }
  assert_int_equal(fresh, PX__NODES_M);
  int64_t nm, nk;
  assert_int_equal(px_store_count(nodes[1], &nm, &nk), 0);
  assert_int_equal(nm, PX__NODES_M);
  assert_int_equal(nk, 1);

  int64_t mark;
  assert_int_equal(px_store_analysis_mark(nodes[0], &mark), 0);
  for (int j = 0; j < 4; j++)
    assert_int_equal(pthread_create(&th[j], NULL, px__node_analyze, &t[j]), 0);
  int calls = 0;
  for (int j = 0; j < 4; j++) {
    pthread_join(th[j], NULL);
    assert_int_equal(t[j].errors, 0);
    calls += t[j].an.calls;
  }
  assert_int_equal(calls, PX__NODES_M);
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < a; b++)
      for (int i = 0; i < t[a].an.calls; i++)
        for (int j = 0; j < t[b].an.calls; j++)
          assert_true(t[a].an.ids[i] != t[b].an.ids[j]);
  bool reached = false;
  assert_int_equal(px_store_analysis_reached(nodes[1], mark, &reached), 0);
  assert_true(reached);
  for (int j = 0; j < PX__NODES_THREADS; j++)
    free(t[j].ms);
  px_store_close(nodes[0]);
  px_store_close(nodes[1]);
  free(dir);
}

/* An export reads the store as it was when it opened: rows committed
 * meanwhile, older or newer, on this node or another, are not half in. */
PX_TEST(store_postgresql_export_snapshot) {
  (void)state;
  char url[1024], *dir;
  px__fresh_db(true, url, sizeof(url), &dir);
  px_store_t *a = px__open(url), *b = px__open(url);
  px__key_t k;
  px__key(&k);
  static px__m_t ms[30];
  for (int i = 0; i < 30; i++)
    px__m(&ms[i], i, &k, px__start(i));
  for (int i = 0; i < 30; i += 2)
    px__put_new(a, &ms[i]);
  px_filter_t f = {0};
  px_store_export_t *e;
  assert_int_equal(px_store_export_open(a, &f, &e), 0);
  px__rows_t rows = {.ordered = true};
  assert_int_equal(px_store_export_next(e, 4, px__collect_row, &rows), 4);
  /* Between batches: odd ones, before and after the export's position. */
  for (int i = 1; i < 30; i += 2)
    px__put_new(i % 4 == 1 ? a : b, &ms[i]);
  int n;
  while ((n = px_store_export_next(e, 4, px__collect_row, &rows)) > 0)
    ;
  assert_int_equal(n, 0);
  px_store_export_close(e);
  assert_int_equal(rows.n, 15);
  assert_true(rows.ordered);
  /* A new export sees all of them. */
  px__export_all(b, &f, &rows);
  assert_int_equal(rows.n, 30);
  px_store_close(a);
  px_store_close(b);
  free(dir);
}

/* ---- group commit: one submission's outcome is its own -------------------------- */

#define PX__GROUP_THREADS 24

typedef struct {
  px_store_t *store;
  px__m_t m;
  pthread_barrier_t *start;
  int rc;
  bool dup;
} px__group_t;

static void *px__group_put(void *arg) {
  px__group_t *g = arg;
  pthread_barrier_wait(g->start);
  g->rc = px_store_put(g->store, &g->m.sub, &g->dup);
  return NULL;
}

/* Submissions sent at once, so they share batches: one from a key rotated
 * away, ones already stored (signed by a key the store has never seen),
 * pairs of the same new content, and plain new ones. Each gets its own
 * answer; the refused and the duplicates change nothing, not even the key
 * list; everything new is stored once. Three rounds. */
PX_TEST(store_postgresql_group_commit_isolates) {
  (void)state;
  char url[1024], *dir;
  px__fresh_db(true, url, sizeof(url), &dir);
  px_store_t *s = px__open(url);
  px__key_t k, old, stranger;
  px__key(&k);
  px__key(&old);
  px__key(&stranger);
  time_t vb = px__start(20), stored;
  px__m_t first;
  px__m(&first, 1000, &old, px__start(1));
  px__put_new(s, &first);
  assert_int_equal(px_store_rotate_key(s, &old.pub, &k.pub, vb, vb, &stored), 0);
  static px__m_t pre[PX__GROUP_THREADS];
  for (int i = 0; i < PX__GROUP_THREADS; i++) {
    px__m(&pre[i], 2000 + i, &k, px__start(i % 10));
    px__put_new(s, &pre[i]);
  }
  int64_t nm0, nk0, nm, nk;
  assert_int_equal(px_store_count(s, &nm0, &nk0), 0);
  assert_int_equal(nk0, 2);

  static px__group_t g[PX__GROUP_THREADS];
  pthread_t th[PX__GROUP_THREADS];
  pthread_barrier_t start;
  int fresh_total = 0;
  for (int round = 0; round < 3; round++) {
    assert_int_equal(pthread_barrier_init(&start, NULL, PX__GROUP_THREADS), 0);
    for (int j = 0; j < PX__GROUP_THREADS; j++) {
      memset(&g[j], 0, sizeof(g[j]));
      g[j].store = s;
      g[j].start = &start;
      int i = 100 * (round + 1) + j;
      if (j % 6 == 0)
        px__m(&g[j].m, i, &old, vb + j); /* started after the rotation */
      else if (j % 6 == 1)
        g[j].m = pre[j], g[j].m.sub.content = g[j].m.content, g[j].m.sub.key = &stranger.pub;
      else if (j % 6 == 3)
        px__m(&g[j].m, i - 1, &k, px__start((j - 1) % 10) + round); /* j - 1's content */
      else
        px__m(&g[j].m, i, &k, px__start(j % 10) + round);
    }
    for (int j = 0; j < PX__GROUP_THREADS; j++)
      assert_int_equal(pthread_create(&th[j], NULL, px__group_put, &g[j]), 0);
    for (int j = 0; j < PX__GROUP_THREADS; j++)
      pthread_join(th[j], NULL);
    pthread_barrier_destroy(&start);
    int fresh = 0, pairs_fresh[PX__GROUP_THREADS] = {0};
    for (int j = 0; j < PX__GROUP_THREADS; j++) {
      if (j % 6 == 0) {
        assert_int_equal(g[j].rc, -EKEYREVOKED);
        assert_int_equal(g[j].m.sub.key_valid_before, vb);
        continue;
      }
      assert_int_equal(g[j].rc, 0);
      if (j % 6 == 1) {
        assert_true(g[j].dup);
        assert_string_equal(g[j].m.sub.stored_key_id, k.pub.key_id);
        continue;
      }
      fresh += !g[j].dup;
      if (j % 6 == 2 || j % 6 == 3)
        pairs_fresh[j - j % 6] += !g[j].dup;
      else
        assert_false(g[j].dup);
    }
    /* Of each pair of one content exactly one was new. */
    for (int j = 0; j < PX__GROUP_THREADS; j += 6)
      assert_int_equal(pairs_fresh[j], 1);
    assert_int_equal(fresh, PX__GROUP_THREADS / 6 * 3);
    fresh_total += fresh;
  }
  assert_int_equal(px_store_count(s, &nm, &nk), 0);
  assert_int_equal(nm, nm0 + fresh_total);
  assert_int_equal(nk, nk0); /* the stranger's duplicates added no key */
  px_store_close(s);
  free(dir);
}
