#include "common/keysigner.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/keyfile.h"
#include "common/signer_box.h"
#include "common/timeutil.h"

#define PX__MAX_FRAME (PX_SIGNER_MAX_MESSAGE + 1024u)
#define PX__SIGNER_FD 3

/* A frame: 4-byte big-endian length, then that many bytes; replies start
 * with a status byte, 'K' (ok), 'R' (refused by the policy: its reason
 * follows) or 'E' (any other error: its text follows). */
static int px__send_frame(int fd, char status, const void *data, size_t n) {
  uint32_t len = (uint32_t)n + (status ? 1u : 0u);
  uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
  int rc = px_write_all(fd, be, 4);
  if (rc == 0 && status)
    rc = px_write_all(fd, &status, 1);
  if (rc == 0)
    rc = px_write_all(fd, data, n);
  return rc;
}

static int px__recv_frame(int fd, char **data, size_t *n) {
  uint8_t be[4];
  int rc = px_read_all(fd, be, 4);
  if (rc != 0)
    return rc;
  uint32_t len = ((uint32_t)be[0] << 24) | ((uint32_t)be[1] << 16) | ((uint32_t)be[2] << 8) | be[3];
  if (len > PX__MAX_FRAME)
    return -EMSGSIZE;
  *data = malloc(len + 1);
  if (*data == NULL)
    return -ENOMEM;
  rc = px_read_all(fd, *data, len);
  if (rc != 0) {
    free(*data);
    *data = NULL;
    return rc;
  }
  (*data)[len] = '\0';
  *n = len;
  return 0;
}

/* The signer's whole life. Never returns. */
static void px__signer_main(const char *key_path, bool create, const px_signer_policy_t *policy) {
  char err[512];
  EVP_PKEY *key = NULL;
  px_ssh_pubkey_t pub;

  /* No core dumps, no ptrace by the same user, nothing inherited. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  closefrom(PX__SIGNER_FD + 1);

  int rc = 0;
  if (create && access(key_path, F_OK) != 0 && errno == ENOENT)
    rc = px_key_generate(key_path, &pub, err, sizeof(err));
  if (rc == 0 || rc == -EEXIST)
    rc = px_key_load(key_path, &key, err, sizeof(err));
  if (rc == 0 && px_ssh_pubkey_from_pkey(key, &pub) != 0) {
    snprintf(err, sizeof(err), "cannot read the public half of %s", key_path);
    rc = -EINVAL;
  }
  /* The key is in memory: from here on the process needs nothing but
   * its socket (see agent/signer_policy.h). */
  if (rc == 0 && (rc = px_signer_sandbox()) != 0)
    snprintf(err, sizeof(err), "cannot confine the signer process: %s", strerror(-rc));
  if (rc != 0) {
    px__send_frame(PX__SIGNER_FD, 'E', err, strlen(err));
    _exit(1);
  }
  px__send_frame(PX__SIGNER_FD, 'K', pub.blob, sizeof(pub.blob));

  for (;;) {
    char *msg = NULL, *sig = NULL;
    size_t n;
    if (px__recv_frame(PX__SIGNER_FD, &msg, &n) != 0)
      break; /* parent gone or closed: done */
    /* The parent parses the network and may be an attacker's now: the
     * key vouches only for what the policy lets through. */
    char status = 'R';
    if (n > policy->max_message) {
      snprintf(err, sizeof(err), "a message of %zu bytes is larger than the signer takes", n);
      rc = -EMSGSIZE;
    } else {
      rc = policy->check(msg, n, err, sizeof(err));
    }
    if (rc == 0 &&
        px_sshsig_sign(key, policy->namespace, (const uint8_t *)msg, n, &sig) != 0) {
      snprintf(err, sizeof(err), "signing failed");
      status = 'E';
      rc = -EIO;
    }
    free(msg);
    if (rc != 0) {
      if (px__send_frame(PX__SIGNER_FD, status, err, strlen(err)) != 0)
        break;
      continue;
    }
    rc = px__send_frame(PX__SIGNER_FD, 'K', sig, strlen(sig));
    free(sig);
    if (rc != 0)
      break;
  }
  EVP_PKEY_free(key);
  /* LeakSanitizer's check needs threads, ptrace and /proc, which the box
   * forbids: the signer's per-frame code (px_signer_frame_check,
   * px_sshsig_sign) is leak-checked in-process by the unit tests instead. */
  _exit(0);
}

int px_keysigner_start(px_signer_t *s, const char *key_path, bool create,
                       const px_signer_policy_t *policy, char *err, size_t errlen) {
  int sv[2];
  memset(s, 0, sizeof(*s));
  s->fd = -1;
  s->max_message = policy->max_message;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    int e = errno; /* snprintf may change errno */
    snprintf(err, errlen, "socketpair: %s", strerror(e));
    return -e;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    snprintf(err, errlen, "fork: %s", strerror(e));
    return -e;
  }
  if (pid == 0) {
    close(sv[0]);
    if (dup2(sv[1], PX__SIGNER_FD) < 0)
      _exit(1);
    px__signer_main(key_path, create, policy);
  }
  close(sv[1]);
  s->pid = pid;
  s->fd = sv[0];

  char *hello = NULL;
  size_t n = 0;
  int rc = px__recv_frame(s->fd, &hello, &n);
  if (rc != 0 || n < 1 || hello[0] != 'K' || n != 1 + sizeof(s->pub.blob)) {
    if (rc == 0 && n >= 1 && hello[0] == 'E')
      snprintf(err, errlen, "%s", hello + 1);
    else
      snprintf(err, errlen, "the signer process failed to start");
    free(hello);
    px_signer_stop(s);
    return -EIO;
  }
  /* Re-derive the key id from the blob rather than trusting text. */
  px_ssh_pubkey_t tmp;
  memcpy(tmp.blob, hello + 1, sizeof(tmp.blob));
  char *text = px_ssh_pubkey_line(&tmp);
  free(hello);
  if (text == NULL || px_ssh_pubkey_parse(text, &s->pub) != 0) {
    free(text);
    snprintf(err, errlen, "the signer sent a bad public key");
    px_signer_stop(s);
    return -EIO;
  }
  free(text);
  return 0;
}

int px_signer_sign(px_signer_t *s, const void *msg, size_t n, char **armored,
                   char *err, size_t errlen) {
  char *reply = NULL;
  size_t len;
#ifdef PX_TEST_HOOKS
  /* Test builds only: PX_TEST_SIGN_DELAY_MS makes every signature as slow
   * as a busy Raspberry Pi's, so tests can show that none is waited for
   * on the agent's loop. */
  const char *delay = getenv("PX_TEST_SIGN_DELAY_MS");
  long ms = delay != NULL ? strtol(delay, NULL, 10) : 0;
  if (ms > 0 && ms <= 10000)
    px_sleep_ms((unsigned)ms);
#endif
  if (n > s->max_message) {
    snprintf(err, errlen, "signer: a message of %zu bytes is larger than the signer takes (%zu)",
             n, s->max_message);
    return -EMSGSIZE;
  }
  int rc = px__send_frame(s->fd, 0, msg, n);
  if (rc == 0)
    rc = px__recv_frame(s->fd, &reply, &len);
  if (rc != 0 || len < 1 || reply[0] != 'K') {
    snprintf(err, errlen, "signer: %s", rc != 0 ? strerror(-rc) : len > 1 ? reply + 1 : "no reply");
    /* A refusal (the frame is not what the policy signs) is the frame's
     * fault; anything else, the signer's. */
    rc = rc != 0 ? rc : reply[0] == 'R' ? -EINVAL : -EIO;
    free(reply);
    return rc;
  }
  memmove(reply, reply + 1, len); /* drop the status, keep the NUL */
  *armored = reply;
  return 0;
}

void px_signer_stop(px_signer_t *s) {
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  if (s->pid > 0) {
    int status;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  s->pid = 0;
}
