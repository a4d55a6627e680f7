#include "agent/cli/rotate.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keyfile.h"
#include "collector-client/http.h"
#include "common/fileio.h"
#include "common/json_util.h"
#include "common/sshsig.h"
#include "common/timeutil.h"

#define PX__PENDING "key-rotation.json"

/* The request body: the statement and a signature of it by each key. */
static char *px__statement(EVP_PKEY *old_key, EVP_PKEY *new_key, time_t now, char *old_id,
                           char *new_id) {
  px_ssh_pubkey_t old_pub, new_pub;
  if (px_ssh_pubkey_from_pkey(old_key, &old_pub) != 0 ||
      px_ssh_pubkey_from_pkey(new_key, &new_pub) != 0)
    return NULL;
  memcpy(old_id, old_pub.key_id, PX_KEY_ID_LEN);
  memcpy(new_id, new_pub.key_id, PX_KEY_ID_LEN);
  char *old_line = px_ssh_pubkey_line(&old_pub), *new_line = px_ssh_pubkey_line(&new_pub);
  char when[PX_TIME_ISO_LEN];
  px_time_format_iso(now, when);
  json_t *st = json_pack("{s:s?, s:s?, s:s}", "old_key", old_line, "new_key", new_line,
                         "rotated_at", when);
  free(old_line);
  free(new_line);
  char *content = st != NULL && json_object_size(st) == 3 ? px_json_dump(st) : NULL;
  json_decref(st);
  if (content == NULL)
    return NULL;
  char *old_sig = NULL, *new_sig = NULL, *body = NULL;
  size_t n = strlen(content);
  if (px_sshsig_sign(old_key, PX_SSHSIG_ROTATION_NAMESPACE, (const uint8_t *)content, n, &old_sig) == 0 &&
      px_sshsig_sign(new_key, PX_SSHSIG_ROTATION_NAMESPACE, (const uint8_t *)content, n, &new_sig) == 0) {
    json_t *req = json_pack("{s:s, s:s, s:s, s:s}", "format", "json", "content", content,
                            "old_signature", old_sig, "new_signature", new_sig);
    body = req != NULL ? px_json_dump(req) : NULL;
    json_decref(req);
  }
  free(old_sig);
  free(new_sig);
  free(content);
  return body;
}

int px_rotate_key(const char *state_dir, const char *key_path, char *old_id, char *new_id,
                  char *err, size_t errlen) {
  char next[4200], stamp[32], old_pub[4300], kept_pub[4300], pub_path[4300];
  EVP_PKEY *old_key = NULL, *new_key = NULL;
  px_ssh_pubkey_t pub;
  time_t now = time(NULL);
  struct tm tm;
  int rc;

  if (access(key_path, F_OK) != 0) {
    snprintf(err, errlen, "no key at %s to rotate (`parallax keygen` creates one)", key_path);
    return -ENOENT;
  }
  snprintf(next, sizeof(next), "%s.next", key_path);
  snprintf(pub_path, sizeof(pub_path), "%s.pub", next);
  unlink(next); /* left by an interrupted rotation: never used */
  unlink(pub_path);
  if ((rc = px_key_load(key_path, &old_key, err, errlen)) != 0)
    return rc;
  if ((rc = px_key_generate(next, &pub, err, errlen)) != 0 ||
      (rc = px_key_load(next, &new_key, err, errlen)) != 0) {
    EVP_PKEY_free(old_key);
    return rc;
  }
  char *body = px__statement(old_key, new_key, now, old_id, new_id);
  EVP_PKEY_free(old_key);
  EVP_PKEY_free(new_key);
  if (body == NULL) {
    snprintf(err, errlen, "cannot sign the rotation statement");
    unlink(next);
    unlink(pub_path);
    return -ENOMEM;
  }
  /* Durable before the keys move: a crash after this point leaves a
   * statement to send, and at worst the old key in place. */
  rc = px_write_file_atomic(state_dir, PX__PENDING, body, strlen(body), 0600);
  free(body);
  if (rc != 0) {
    snprintf(err, errlen, "cannot write %s/%s: %s", state_dir, PX__PENDING, strerror(-rc));
    return rc;
  }
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
  snprintf(old_pub, sizeof(old_pub), "%s.pub", key_path);
  snprintf(kept_pub, sizeof(kept_pub), "%s.old-%s.pub", key_path, stamp);
  if (rename(old_pub, kept_pub) != 0 || rename(pub_path, old_pub) != 0 ||
      rename(next, key_path) != 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot put the new key in place: %s", strerror(errno));
    return rc;
  }
  return px_fsync_dir(state_dir);
}

int px_rotation_send_pending(px_agent_opts_t *o, char *err, size_t errlen) {
  char path[4200], *body = NULL;
  snprintf(path, sizeof(path), "%s/%s", o->state_dir, PX__PENDING);
  if (px_read_file(path, &body, NULL) != 0)
    return 0;
  int rc = -EAGAIN;
  err[0] = '\0';
  for (size_t i = 0; i < o->ncollectors && rc == -EAGAIN; i++) {
    px_upload_config_t cfg = {o->collectors[i], o->proxy, o->collector_ca, o->collector_pin,
                              30000};
    long status = 0;
    char *resp = NULL;
    if (px_http_request(&cfg, "/api/v1/key_rotation", body, &status, &resp, err, errlen) == 0) {
      if (status == 200) {
        rc = 0;
      } else if (status >= 400 && status < 500) {
        snprintf(err, errlen, "%s refused the key rotation (HTTP %ld): %.300s", o->collectors[i],
                 status, resp ? resp : "");
        rc = -EINVAL;
      } else {
        snprintf(err, errlen, "%s answered HTTP %ld", o->collectors[i], status);
      }
    }
    free(resp);
  }
  free(body);
  if (rc == 0 && unlink(path) != 0 && errno != ENOENT)
    return -errno;
  return rc;
}
