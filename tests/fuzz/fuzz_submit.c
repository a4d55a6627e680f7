/* POST /api/v1/submit_measurement end to end, without HTTP: the request
 * body through px_submit_process (envelope, signature, validation, the
 * durable store, here a fresh in-memory SQLite per input), and for what
 * is accepted, the analysis and the cross-vantage verdict it takes part
 * in. Invariants: an answer is always JSON; an accepted measurement is
 * stored byte for byte and found again; the same body again is a
 * duplicate with the same uid; what is stored, the analysis can read.
 *
 * Input: one mode byte, then
 *   0: the request body as sent (real bodies are the seeds);
 *   1: measurement content, signed here with a fixed key, so mutations
 *      reach past the signature into validation, storage and analysis;
 *   2: the same, signed with a key rotated away at 2026-06-01, so
 *      content decides between accepted and key_rotated;
 *   3: as 1, but the envelope escapes every non-ASCII character (\uXXXX,
 *      surrogate pairs) as other JSON writers do. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/analysis/analysis.h"
#include "collector/ingest/envelope.h"
#include "collector/ingest/submit.h"
#include "collector/ingest/validate.h"
#include "collector/analysis/verdict.h"
#include "common/json_util.h"
#include "common/sshsig.h"
#include "tests/fuzz/fuzz_common.h"

#define PX__ROTATED_AT ((time_t)1780272000) /* 2026-06-01 */

static EVP_PKEY *px__key_a, *px__key_b;
static px_ssh_pubkey_t px__pub_b, px__pub_c;

/* Three other vantage groups that saw www.example.test verify at
 * 127.80.1.1:8443 (summaries as collector/analysis/analysis.c writes them). */
#define PX__OTHER(cc, asn, key)                                                    \
  {.key_id = key, .probe_cc = cc, .probe_asn = asn,                              \
   .uid = "20270101000000_" cc "_tlscertconsistency_0000000000000000",           \
   .measurement_start_time = PX_FUZZ_NOW}
static px_vantage_t px__others[3] = {PX__OTHER("DE", "AS3320", "SHA256:de"),
                                     PX__OTHER("US", "AS7922", "SHA256:us"),
                                     PX__OTHER("FR", "AS3215", "SHA256:fr")};
static const char px__other_summary[] =
    "{\"v\":1,\"dns\":{\"answered\":true,\"addresses\":[\"127.80.1.1\"],\"failures\":[]},"
    "\"tls\":[{\"ip\":\"127.80.1.1\",\"port\":8443,\"resolved\":true,\"control\":false,"
    "\"connect_failure\":null,\"completed\":true,\"failure\":null,\"leaf_sha256\":"
    "\"5f1d0c7e1a3b4c2d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d\","
    "\"subject\":\"CN=www.example.test,O=parallax tests\",\"issuer\":\"CN=Parallax Test "
    "Intermediate CA,O=parallax tests\",\"self_signed\":false,\"agent_verified\":true,"
    "\"verified\":true,\"hostname_match\":true,\"errors\":[],\"judged_failure\":null}]}";

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  px_fuzz_sqlite_init();
  px_fuzz_trust();
  px__key_a = px_fuzz_key(0xa1);
  px__key_b = px_fuzz_key(0xb2);
  EVP_PKEY *c = px_fuzz_key(0xc3);
  if (px_ssh_pubkey_from_pkey(px__key_b, &px__pub_b) != 0 ||
      px_ssh_pubkey_from_pkey(c, &px__pub_c) != 0)
    px_fuzz_fail("px_ssh_pubkey_from_pkey");
  EVP_PKEY_free(c);
  for (int i = 0; i < 3; i++) {
    px__others[i].summary = json_loads(px__other_summary, 0, NULL);
    if (px__others[i].summary == NULL)
      px_fuzz_fail("the fixed summary is not JSON");
  }
  return 0;
}

/* The body with every non-ASCII character of content escaped (Jansson's
 * JSON_ENSURE_ASCII), or NULL when content is not UTF-8 text. */
static char *px__ascii_envelope(const uint8_t *content, size_t n, size_t *len) {
  char *armored = NULL;
  if (px_sshsig_sign(px__key_a, PX_SSHSIG_NAMESPACE, content, n, &armored) != 0)
    px_fuzz_fail("px_sshsig_sign");
  json_t *s = json_stringn((const char *)content, n), *body = NULL;
  char *text = NULL;
  if (s != NULL) {
    body = json_object();
    json_object_set_new(body, "format", json_string("json"));
    json_object_set_new(body, "content", s);
    json_object_set_new(body, "signature", json_string(armored));
    text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(body);
  }
  free(armored);
  if (text != NULL)
    *len = strlen(text);
  return text;
}

/* What an accepted measurement must satisfy. */
static void px__accepted(px_collector_t *c, const char *body, size_t len, json_t *answer) {
  char why[256];
  px_envelope_t env;
  if (px_envelope_parse(body, len, &env, why, sizeof(why)) != 0)
    px_fuzz_fail("accepted a body whose envelope does not parse: %s", why);
  const char *uid = json_string_value(json_object_get(answer, "measurement_uid"));
  if (uid == NULL)
    px_fuzz_fail("200 without a measurement_uid");

  char *content = NULL, *sig = NULL, *key_id = NULL;
  size_t clen = 0;
  if (px_store_get(c->store, uid, &content, &clen, &sig, &key_id) != 0)
    px_fuzz_fail("measurement %s acknowledged but not found", uid);
  char *canonical = NULL;
  px_ssh_pubkey_t signer;
  const char *sig_why;
  if (px_sshsig_verify_canonical(env.signature, env.signature_len, PX_SSHSIG_NAMESPACE,
                                 (const uint8_t *)env.content, env.content_len, &signer, &sig_why,
                                 &canonical) != 0)
    px_fuzz_fail("accepted a signature that does not verify");
  if (clen != env.content_len || memcmp(content, env.content, clen) != 0 ||
      strcmp(sig, canonical) != 0)
    px_fuzz_fail("measurement %s is not stored byte for byte (content, canonical armour)", uid);
  free(canonical);

  json_t *again = NULL;
  unsigned status = px_submit_process(c, NULL, body, len, PX_FUZZ_NOW, &again);
  if (status != 200 || !json_is_true(json_object_get(again, "duplicate")) ||
      strcmp(json_string_value(json_object_get(again, "measurement_uid")), uid) != 0)
    px_fuzz_fail("the same body again is not a duplicate of %s (status %u)", uid, status);
  json_decref(again);

  px_measurement_meta_t meta;
  if (px_validate_measurement(content, clen, PX_FUZZ_NOW, &meta, why, sizeof(why), NULL, 0) != 0)
    px_fuzz_fail("stored content no longer validates: %s", why);
  json_t *sum = px_summarize(content, clen, meta.measurement_start_time, px_fuzz_trust(), NULL);
  if (sum == NULL)
    px_fuzz_fail("measurement %s is stored but the analysis cannot read it", uid);

  /* The summary as the store keeps it (text), then the verdict among the
   * other three groups, and the control addresses check-in would hand
   * out. */
  char *stext = px_json_dump(sum);
  json_decref(sum);
  px_vantage_t v[4] = {px__others[0], px__others[1], px__others[2]};
  v[3] = (px_vantage_t){.key_id = key_id, .probe_cc = meta.probe_cc, .probe_asn = meta.probe_asn,
                        .uid = uid, .measurement_start_time = meta.measurement_start_time,
                        .summary = json_loads(stext, 0, NULL)};
  if (v[3].summary == NULL)
    px_fuzz_fail("a summary does not read back");
  json_t *doc = px_compare(meta.domain, v, 4, PX_QUORUM);
  char *dtext = px_json_dump(doc);
  if (dtext == NULL)
    px_fuzz_fail("the comparison cannot be serialised");
  for (int allow = 0; allow < 2; allow++)
    json_decref(px_control_addresses(v, 4, PX_QUORUM, allow));
  free(dtext);
  json_decref(doc);
  json_decref(v[3].summary);
  free(stext);
  free(content);
  free(sig);
  free(key_id);
  px_envelope_free(&env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  unsigned mode = data[0] & 3;
  const uint8_t *p = data + 1;
  size_t n = size - 1, len = 0;
  char *body = NULL;
  if (mode == 0) {
    body = px_fuzz_cstr(p, n);
    len = n;
  } else if (mode == 3) {
    body = px__ascii_envelope(p, n, &len);
  }
  if (body == NULL)
    body = px_fuzz_envelope(p, n, mode == 2 ? px__key_b : px__key_a, NULL, &len);

  px_collector_t c;
  memset(&c, 0, sizeof(c));
  c.store = px_fuzz_store_open("px-fuzz-submit");
  if (mode == 2) {
    time_t stored;
    if (px_store_rotate_key(c.store, &px__pub_b, &px__pub_c, PX__ROTATED_AT, PX_FUZZ_NOW,
                            &stored) != 0)
      px_fuzz_fail("px_store_rotate_key");
  }
  struct sockaddr_in client = {.sin_family = AF_INET, .sin_port = htons(40000),
                               .sin_addr.s_addr = htonl(0xcb007109)}; /* 203.0.113.9 */
  json_t *answer = NULL;
  unsigned status = px_submit_process(&c, (struct sockaddr *)&client, body, len, PX_FUZZ_NOW, &answer);
  char *text = answer != NULL ? px_json_dump(answer) : NULL;
  if (text == NULL)
    px_fuzz_fail("status %u without a JSON answer", status);
  if (getenv("PX_FUZZ_VERBOSE") != NULL) /* to see what a seed reaches */
    fprintf(stderr, "mode %u: %u %s\n", mode, status, text);
  free(text);
  if (status == 200)
    px__accepted(&c, body, len, answer);
  else if (status != 400 && status != 422)
    px_fuzz_fail("status %u: %s", status,
                 json_string_value(json_object_get(answer, "detail")));
  json_decref(answer);
  px_store_close(c.store);
  free(body);
  return 0;
}
