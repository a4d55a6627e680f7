/* POST /api/v1/key_rotation: an agent hands its identity over to a new
 * key. The statement is signed by both keys, so neither a thief of the
 * new key alone nor anyone else can retire a volunteer's key; the old key
 * stays in allowed_signers with valid-before, so everything it signed
 * before the rotation still verifies, with the collector and with
 * `ssh-keygen -Y verify -Overify-time=…`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector/metrics.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"
#include "common/sshsig.h"
#include "common/timeutil.h"

/* How far ahead of our clock rotated_at may be: an agent's clock drifts. */
#define PX__ROTATION_SKEW 300
/* Before this (2000-01-01) a clock has not been set; such a rotation would
 * retire the old key for everything it ever signed. */
#define PX__ROTATION_EPOCH 946684800

typedef struct {
  px_ssh_pubkey_t old_key, new_key;
  time_t rotated_at;
} px__statement_t;

/* One of old_key/new_key: exactly "ssh-ed25519 <base64>" as OpenSSH
 * writes it, no comment, so the signed bytes name the key one way only. */
static int px__key(json_t *v, px_ssh_pubkey_t *out) {
  const char *text = json_string_value(v);
  if (text == NULL || strncmp(text, "ssh-ed25519 ", 12) != 0 || px_ssh_pubkey_parse(text, out) != 0)
    return -EINVAL;
  char *line = px_ssh_pubkey_line(out);
  int rc = line != NULL && strcmp(line, text) == 0 ? 0 : -EINVAL;
  free(line);
  return rc;
}

/* The signed content: {"old_key", "new_key", "rotated_at"} and nothing
 * else. Returns 0 or -EINVAL with a reason in why. */
static int px__statement(const char *content, size_t n, px__statement_t *st, char *why,
                         size_t whylen) {
  json_t *doc = json_loadb(content, n, JSON_REJECT_DUPLICATES, NULL);
  int rc = -EINVAL;
  if (!json_is_object(doc) || json_object_size(doc) != 3) {
    snprintf(why, whylen, "content must be {\"old_key\", \"new_key\", \"rotated_at\"}");
    goto done;
  }
  if (px__key(json_object_get(doc, "old_key"), &st->old_key) != 0 ||
      px__key(json_object_get(doc, "new_key"), &st->new_key) != 0) {
    snprintf(why, whylen, "old_key and new_key must be \"ssh-ed25519 <base64>\" lines without a comment");
    goto done;
  }
  const char *at = json_string_value(json_object_get(doc, "rotated_at"));
  if (at == NULL || strlen(at) != 20 || at[10] != 'T' || at[19] != 'Z' ||
      px_time_parse_utc(at, &st->rotated_at) != 0) {
    snprintf(why, whylen, "rotated_at must be UTC \"YYYY-MM-DDTHH:MM:SSZ\"");
    goto done;
  }
  if (memcmp(st->old_key.blob, st->new_key.blob, sizeof(st->old_key.blob)) == 0) {
    snprintf(why, whylen, "old_key and new_key are the same key");
    goto done;
  }
  rc = 0;
done:
  json_decref(doc);
  return rc;
}

/* Verifies sig over content in the rotation namespace and that it was
 * made by expected. Returns 0 or -EPERM with a reason in why. */
static int px__check_signature(const char *which, const char *sig, size_t sig_len,
                               const char *content, size_t n, const px_ssh_pubkey_t *expected,
                               char *why, size_t whylen) {
  px_ssh_pubkey_t signer;
  const char *reason = NULL;
  if (px_sshsig_verify(sig, sig_len, PX_SSHSIG_ROTATION_NAMESPACE, (const uint8_t *)content, n,
                       &signer, &reason) != 0) {
    snprintf(why, whylen, "%s: %s", which, reason != NULL ? reason : "does not verify");
    return -EPERM;
  }
  if (memcmp(signer.blob, expected->blob, sizeof(signer.blob)) != 0) {
    snprintf(why, whylen, "%s was made by %s, not by the key the statement names", which,
             signer.key_id);
    return -EPERM;
  }
  return 0;
}

enum MHD_Result px_api_key_rotation(px_request_t *r) {
  static const char *const shape =
      "expected {\"format\": \"json\", \"content\", \"old_signature\", \"new_signature\"}";
  char why[256];
  json_t *req = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, NULL);
  json_t *content = json_object_get(req, "content");
  const char *format = json_string_value(json_object_get(req, "format"));
  const char *old_sig = json_string_value(json_object_get(req, "old_signature"));
  const char *new_sig = json_string_value(json_object_get(req, "new_signature"));
  if (!json_is_object(req) || json_object_size(req) != 4 || !json_is_string(content) ||
      format == NULL || strcmp(format, "json") != 0 || old_sig == NULL || new_sig == NULL) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", shape);
  }
  const char *text = json_string_value(content);
  size_t n = json_string_length(content);
  px__statement_t st;
  if (px__statement(text, n, &st, why, sizeof(why)) != 0) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request", why);
  }
  /* Both keys must agree: the old one releases the identity, the new one
   * proves it is held by whoever asks. */
  if (px__check_signature("old_signature", old_sig, strlen(old_sig), text, n, &st.old_key, why,
                          sizeof(why)) != 0 ||
      px__check_signature("new_signature", new_sig, strlen(new_sig), text, n, &st.new_key, why,
                          sizeof(why)) != 0) {
    json_decref(req);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "bad_signature", why);
  }
  json_decref(req);

  time_t now = time(NULL);
  if (st.rotated_at > now + PX__ROTATION_SKEW)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "rotated_at is in the future (more than 5 minutes ahead of the "
                            "collector's clock)");
  if (st.rotated_at < PX__ROTATION_EPOCH)
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "malformed_request",
                            "rotated_at is before 2000: is the agent's clock set?");
  /* A rotation cannot retire a key for a moment that has not come yet:
   * measurements the old key signs until the collector hears of it
   * would turn invalid later. */
  time_t valid_before = st.rotated_at < now ? st.rotated_at : now, stored = 0;
  int rc = px_store_rotate_key(r->c->store, &st.old_key, &st.new_key, valid_before, now, &stored);
  if (rc == -ESTALE) {
    snprintf(why, sizeof(why), "new_key %s has itself been rotated away; a retired key cannot "
             "come back", st.new_key.key_id);
    return px_respond_error(r, MHD_HTTP_BAD_REQUEST, "key_rotated", why);
  }
  if (rc != 0)
    return px_respond_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "storage_error",
                            "the rotation could not be stored; send it again later");
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(stored, when);
  px_metrics_key_rotation();
  /* Key ids are public (they are in every export); addresses never are. */
  fprintf(stderr, "parallax-collector: key %s rotated to %s, valid before %s\n",
          st.old_key.key_id, st.new_key.key_id, when);
  json_t *resp = json_object();
  json_object_set_new(resp, "old_key_id", json_string(st.old_key.key_id));
  json_object_set_new(resp, "new_key_id", json_string(st.new_key.key_id));
  json_object_set_new(resp, "valid_before", json_string(when));
  return px_respond_json(r, MHD_HTTP_OK, resp);
}
