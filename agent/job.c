/* The measurement of one target: DNS through every resolver, then one TLS
 * flow per address worth probing, then the df-000 envelope. */
#include <ares.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine_internal.h"
#include "common/encoding.h"
#include "common/failure.h"
#include "common/json_util.h"
#include "common/netaddr.h"
#include "common/timeutil.h"
#include "probes/dns_wire.h"
#include "probes/tls.h"

typedef struct px__job px__job_t;

typedef struct px__dns_op {
  px_sched_op_t op; /* first member: the scheduler hands this back */
  px__job_t *job;
  px_dns_resolver_t *resolver;
  px_dns_late_t *late; /* NULL: no late-reply window */
  int qtype;
  int64_t txid;
  uint64_t late_t0_ns; /* when our copy of the question went out */
} px__dns_op_t;

typedef struct px__tls_op {
  px_sched_op_t op;
  px__job_t *job;
  struct sockaddr_storage addr;
  int64_t txid;
} px__tls_op_t;

typedef struct px__job_addr {
  struct sockaddr_storage addr;
  int64_t txid;
  bool user_named; /* given with --address: probed whatever it is */
} px__job_addr_t;

struct px__job {
  px__engine_t *eng;
  const px_target_t *target;
  time_t start_wall;
  uint64_t start_ns;
  int pending;        /* operations submitted and not yet finished */
  int watching;       /* late-reply windows still open */
  bool dns_phase, lingering;
  int64_t next_txid;
  json_t *queries, *tcp_connect, *tls_handshakes, *skipped, *late_replies;
  px__job_addr_t *addrs;
  size_t naddrs, addrs_cap;
  px__dns_op_t *dns_ops;
  px__tls_op_t *tls_ops;
};

static void px__job_op_done(px__job_t *job);
static void px__job_maybe_finish(px__job_t *job);

/* Adds sa unless its IP is already listed; returns the entry or NULL when
 * out of memory. */
static px__job_addr_t *px__add_addr(px__job_t *job, const struct sockaddr *sa,
                                    int64_t txid) {
  for (size_t i = 0; i < job->naddrs; i++)
    if (px_addr_same_ip((struct sockaddr *)&job->addrs[i].addr, sa))
      return &job->addrs[i];
  if (job->naddrs == job->addrs_cap) {
    size_t cap = job->addrs_cap ? job->addrs_cap * 2 : 4;
    px__job_addr_t *n = realloc(job->addrs, cap * sizeof(*n));
    if (n == NULL)
      return NULL;
    job->addrs = n;
    job->addrs_cap = cap;
  }
  px__job_addr_t *a = &job->addrs[job->naddrs++];
  memset(a, 0, sizeof(*a));
  memcpy(&a->addr, sa, px_addr_len(sa));
  px_addr_set_port(&a->addr, job->target->port);
  a->txid = txid;
  return a;
}

/* Addresses of the queried type, taken from the parsed answers. */
static void px__collect_addrs(px__job_t *job, json_t *answers, int qtype,
                              int64_t txid) {
  size_t i;
  json_t *a;
  const char *key = qtype == PX_DNS_TYPE_A ? "ipv4" : "ipv6";
  json_array_foreach(answers, i, a) {
    const char *ip = json_string_value(json_object_get(a, key));
    struct sockaddr_storage ss;
    if (ip != NULL && px_addr_parse_ip(ip, &ss) == 0)
      px__add_addr(job, (struct sockaddr *)&ss, txid);
  }
}

/* One df-002 entry per wire exchange. */
static void px__dns_exchange_cb(void *data, const px_dns_exchange_t *ex) {
  px__dns_op_t *op = data;
  px__job_t *job = op->job;
  char addr[PX_ADDRSTRLEN], type_buf[16];

  /* The query is about a header, the name and the question; the answer
   * as received. */
  px__engine_count_bytes(job->eng, 12 + strlen(job->target->hostname) + 2 + 4 + 11 +
                                       ex->response_len);

  px_addr_format(px_dns_resolver_server(op->resolver), addr, sizeof(addr));
  json_t *e = json_object();
  json_object_set_new(e, "engine", json_string(ex->engine));
  json_object_set_new(e, "resolver_address", json_string(addr));
  json_object_set_new(e, "hostname", json_string(job->target->hostname));
  json_object_set_new(e, "query_type", json_string(px_dns_type_name(op->qtype, type_buf, sizeof(type_buf))));
  px_dns_entry_fields(e, ex->status, ex->sock_error, ex->response, ex->response_len, op->qtype,
                      ex->final);
  /* A malformed answer has no answers: nothing is collected from it. */
  px__collect_addrs(job, json_object_get(e, "answers"), op->qtype, op->txid);
  json_object_set_new(e, "t0", json_real(px_elapsed_seconds(job->start_ns, ex->t0_ns)));
  json_object_set_new(e, "t", json_real(px_elapsed_seconds(job->start_ns, ex->t_ns)));
  json_object_set_new(e, "transaction_id", json_integer(op->txid));
  json_array_append_new(job->queries, e);

  if (ex->final) {
    px_sched_done(&job->eng->sched);
    px__job_op_done(job);
  }
}

/* A further reply to our copy of the question: recorded in the shape of
 * a queries entry, with the lookup's transaction id (the analysis pairs
 * it with c-ares's first answer); or the window's end. */
static void px__late_cb(void *data, const uint8_t *response, size_t len, uint64_t t_ns) {
  px__dns_op_t *op = data;
  px__job_t *job = op->job;
  if (response == NULL) {
    job->watching--;
    px__job_maybe_finish(job);
    return;
  }
  px__engine_count_bytes(job->eng, len);
  if (json_array_size(job->late_replies) >= PX_JOB_LATE_MAX)
    return;
  char addr[PX_ADDRSTRLEN], type_buf[16];
  px_addr_format(px_dns_resolver_server(op->resolver), addr, sizeof(addr));
  json_t *e = json_object();
  json_object_set_new(e, "engine", json_string("udp"));
  json_object_set_new(e, "resolver_address", json_string(addr));
  json_object_set_new(e, "hostname", json_string(job->target->hostname));
  json_object_set_new(e, "query_type", json_string(px_dns_type_name(op->qtype, type_buf, sizeof(type_buf))));
  px_dns_entry_fields(e, ARES_SUCCESS, 0, response, len, op->qtype, true);
  json_object_set_new(e, "t0", json_real(px_elapsed_seconds(job->start_ns, op->late_t0_ns)));
  json_object_set_new(e, "t", json_real(px_elapsed_seconds(job->start_ns, t_ns)));
  json_object_set_new(e, "transaction_id", json_integer(op->txid));
  json_array_append_new(job->late_replies, e);
}

static void px__dns_start(px_sched_op_t *sop) {
  px__dns_op_t *op = (px__dns_op_t *)sop;
  const px_engine_config_t *cfg = op->job->eng->cfg;
  /* Our own copy of the question first, so its replies race c-ares's. */
  if (op->late != NULL &&
      px_dns_late_watch(op->late, op->job->target->hostname, op->qtype, cfg->timeout_ms,
                        cfg->dns_late_window_ms, px__late_cb, op, &op->late_t0_ns) == 0)
    op->job->watching++;
  int rc = px_dns_lookup(op->resolver, op->job->target->hostname, op->qtype,
                         px__dns_exchange_cb, op);
  if (rc != 0) {
    px_dns_exchange_t ex;
    memset(&ex, 0, sizeof(ex));
    ex.engine = "udp";
    ex.status = rc == -ENOMEM ? ARES_ENOMEM : ARES_ECANCELLED;
    ex.t0_ns = ex.t_ns = uv_hrtime();
    ex.final = true;
    px__dns_exchange_cb(op, &ex);
  }
}

static void px__tls_done(void *data, px_tls_probe_result_t *res) {
  px__tls_op_t *op = data;
  px__job_t *job = op->job;
  px__engine_count_bytes(job->eng, res->bytes_read + res->bytes_written);
  json_array_append_new(job->tcp_connect, res->tcp_connect);
  if (res->tls_handshake != NULL)
    json_array_append_new(job->tls_handshakes, res->tls_handshake);
  px_sched_done(&job->eng->sched);
  px__job_op_done(job);
}

static void px__tls_start(px_sched_op_t *sop) {
  px__tls_op_t *op = (px__tls_op_t *)sop;
  px__job_t *job = op->job;
  const px_engine_config_t *cfg = job->eng->cfg;
  px_tls_probe_req_t req = {
      .address = (struct sockaddr *)&op->addr,
      .server_name = job->target->hostname,
      .timeout_ms = cfg->timeout_ms,
      .base_ns = job->start_ns,
      .transaction_id = op->txid,
      .ctx = cfg->tls,
  };
  if (px_tls_probe_start(job->eng->loop, &req, px__tls_done, op) != 0) {
    char ip[PX_ADDRSTRLEN];
    json_t *e = json_object(), *st = json_object();
    px_addr_format_ip((struct sockaddr *)&op->addr, ip, sizeof(ip));
    json_object_set_new(e, "ip", json_string(ip));
    json_object_set_new(e, "port", json_integer(job->target->port));
    json_object_set_new(st, "failure", json_string("unknown_failure: out of memory"));
    json_object_set_new(st, "success", json_false());
    json_object_set_new(e, "status", st);
    json_object_set_new(e, "t0", json_real(0));
    json_object_set_new(e, "t", json_real(0));
    json_object_set_new(e, "transaction_id", json_integer(op->txid));
    json_array_append_new(job->tcp_connect, e);
    px_sched_done(&job->eng->sched);
    px__job_op_done(job);
  }
}

/* Which addresses get a TLS flow (none with no_tls): DNS answers that are
 * public unicast (or any, in test worlds), then every --address. The rest are listed with the
 * reason, so the measurement says what was deliberately not contacted. */
static int px__start_flows(px__job_t *job) {
  const px_engine_config_t *cfg = job->eng->cfg;
  if (cfg->no_tls)
    return 0; /* DNS only: the answers are the measurement */

  for (size_t i = 0; i < cfg->naddresses; i++) {
    size_t before = job->naddrs;
    px__job_addr_t *a = px__add_addr(job, (const struct sockaddr *)&cfg->addresses[i],
                                     job->next_txid);
    if (a == NULL)
      return -ENOMEM;
    a->user_named = true;
    if (job->naddrs > before)
      job->next_txid++;
  }
  /* Control addresses: where other countries saw this service verify, so
   * interception of a correct address is seen even when DNS is clean.
   * They were filtered for publicness when the check-in was read. */
  const px_target_t *t = job->target;
  for (size_t i = 0; i < t->ncontrols; i++) {
    size_t before = job->naddrs;
    px__job_addr_t *a = px__add_addr(job, (const struct sockaddr *)&t->controls[i], job->next_txid);
    if (a == NULL)
      return -ENOMEM;
    a->user_named = true;
    if (job->naddrs > before)
      job->next_txid++;
  }

  job->tls_ops = calloc(job->naddrs > 0 ? job->naddrs : 1, sizeof(*job->tls_ops));
  if (job->tls_ops == NULL)
    return -ENOMEM;
  size_t nflows = 0;
  /* Named addresses (--address, control addresses) first: when a hostile
   * answer lists hundreds of addresses, the bound cuts those. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < job->naddrs; i++) {
      if (job->addrs[i].user_named != (pass == 0))
        continue;
      const struct sockaddr *sa = (struct sockaddr *)&job->addrs[i].addr;
      const char *why = NULL;
      if ((!job->addrs[i].user_named && !cfg->allow_nonpublic && !px_addr_is_public(sa, &why)) ||
          (nflows >= PX_JOB_FLOWS_MAX && (why = "over the limit of addresses probed per target"))) {
        if (json_array_size(job->skipped) >= PX_JOB_SKIPPED_MAX)
          continue;
        char ip[PX_ADDRSTRLEN];
        px_addr_format_ip(sa, ip, sizeof(ip));
        json_t *s = json_object();
        json_object_set_new(s, "ip", json_string(ip));
        json_object_set_new(s, "reason", json_string(why));
        json_object_set_new(s, "transaction_id", json_integer(job->addrs[i].txid));
        json_array_append_new(job->skipped, s);
        continue;
      }
      px__tls_op_t *op = &job->tls_ops[nflows++];
      op->op.start = px__tls_start;
      op->job = job;
      op->addr = job->addrs[i].addr;
      op->txid = job->addrs[i].txid;
    }
  }
  job->pending += (int)nflows;
  for (size_t i = 0; i < nflows; i++)
    px_sched_submit(&job->eng->sched, &job->tls_ops[i].op);
  return 0;
}

static void px__job_free(px__job_t *job) {
  json_decref(job->queries);
  json_decref(job->tcp_connect);
  json_decref(job->tls_handshakes);
  json_decref(job->skipped);
  json_decref(job->late_replies);
  free(job->addrs);
  free(job->dns_ops);
  free(job->tls_ops);
  free(job);
}

static void px__job_finish(px__job_t *job) {
  px__engine_t *eng = job->eng;
  if (eng->error == 0) {
    json_t *keys = json_object();
    json_object_set(keys, "queries", job->queries);
    json_object_set(keys, "tcp_connect", job->tcp_connect);
    json_object_set(keys, "tls_handshakes", job->tls_handshakes);
    json_object_set(keys, "skipped_addresses", job->skipped);
    if (json_array_size(job->late_replies) > 0)
      json_object_set(keys, "dns_late_replies", job->late_replies);
    if (job->target->ncontrols > 0) {
      json_t *controls = json_array();
      char ip[PX_ADDRSTRLEN];
      for (size_t i = 0; i < job->target->ncontrols; i++) {
        px_addr_format_ip((const struct sockaddr *)&job->target->controls[i], ip, sizeof(ip));
        json_array_append_new(controls, json_string(ip));
      }
      json_object_set_new(keys, "control_addresses", controls);
    }
    json_t *m = px_measurement_new(eng->cfg->run, job->target->input,
                                   job->start_wall,
                                   px_elapsed_seconds(job->start_ns, uv_hrtime()),
                                   keys);
    int rc = m != NULL ? eng->cfg->emit(eng->cfg->emit_data, m) : -ENOMEM;
    json_decref(m);
    if (rc != 0)
      eng->error = rc;
  }
  bool lingered = job->lingering;
  px__job_free(job);
  px__engine_job_done(eng, lingered);
}

/* Every operation over: emitted now, or (windows still open) once the
 * last one closes, the target's slot going to the next meanwhile. */
static void px__job_maybe_finish(px__job_t *job) {
  if (job->pending > 0 || job->dns_phase)
    return;
  if (job->watching > 0) {
    if (!job->lingering) {
      job->lingering = true;
      px__engine_job_linger(job->eng);
    }
    return;
  }
  px__job_finish(job);
}

static void px__job_op_done(px__job_t *job) {
  if (--job->pending > 0)
    return;
  if (job->dns_phase) {
    job->dns_phase = false;
    /* Hold a reference while flows may finish synchronously. */
    job->pending++;
    if (px__start_flows(job) != 0 && job->eng->error == 0)
      job->eng->error = -ENOMEM;
    if (--job->pending > 0)
      return;
  }
  px__job_maybe_finish(job);
}

int px__job_start(px__engine_t *eng, const px_target_t *target) {
  px__job_t *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return -ENOMEM;
  job->eng = eng;
  job->target = target;
  /* Corrected by the offset to the collector's clock when one is known: a
   * board without a battery-backed clock records true times. */
  job->start_wall = time(NULL) + eng->cfg->tls->clock_offset;
  job->start_ns = uv_hrtime();
  job->next_txid = 1;
  job->queries = json_array();
  job->tcp_connect = json_array();
  job->tls_handshakes = json_array();
  job->skipped = json_array();
  job->late_replies = json_array();
  job->dns_phase = true;

  size_t nlookups = eng->nresolvers * 2;
  job->dns_ops = calloc(nlookups > 0 ? nlookups : 1, sizeof(*job->dns_ops));
  if (job->dns_ops == NULL) {
    px__job_free(job);
    return -ENOMEM;
  }
  for (size_t i = 0; i < nlookups; i++) {
    px__dns_op_t *op = &job->dns_ops[i];
    op->op.start = px__dns_start;
    op->job = job;
    op->resolver = eng->resolvers[i / 2];
    op->late = eng->late[i / 2];
    op->qtype = i % 2 == 0 ? PX_DNS_TYPE_A : PX_DNS_TYPE_AAAA;
    op->txid = job->next_txid++;
  }
  /* The extra count keeps the job alive while lookups that fail
   * synchronously report back inside px_sched_submit. */
  job->pending = (int)nlookups + 1;
  for (size_t i = 0; i < nlookups; i++)
    px_sched_submit(&eng->sched, &job->dns_ops[i].op);
  px__job_op_done(job);
  return 0;
}
