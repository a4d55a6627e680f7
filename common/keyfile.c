#include "common/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/statedir.h"

int px_key_generate(const char *path, px_ssh_pubkey_t *pub, char *err,
                    size_t errlen) {
  char pub_path[PX_PATH_MAX];
  EVP_PKEY *key = NULL;
  BIO *bio = NULL;
  char *line = NULL;
  int rc;

  if (snprintf(pub_path, sizeof(pub_path), "%s.pub", path) >= (int)sizeof(pub_path)) {
    snprintf(err, errlen, "key path too long");
    return -ENAMETOOLONG;
  }
  if (access(path, F_OK) == 0) {
    snprintf(err, errlen, "%s already exists (not overwritten)", path);
    return -EEXIST;
  }
  key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
  bio = BIO_new(BIO_s_mem());
  if (key == NULL || bio == NULL ||
      PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
      px_ssh_pubkey_from_pkey(key, pub) != 0) {
    snprintf(err, errlen, "cannot generate an Ed25519 key");
    rc = -EIO;
    goto done;
  }
  char *pem;
  long pem_len = BIO_get_mem_data(bio, &pem);
  rc = px_write_file_new(path, pem, (size_t)pem_len, 0600);
  if (rc != 0) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
    goto done;
  }
  line = px_ssh_pubkey_line(pub);
  if (line == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  size_t n = strlen(line);
  char *with_nl = malloc(n + 12);
  if (with_nl == NULL) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  n = (size_t)sprintf(with_nl, "%s parallax\n", line);
  unlink(pub_path); /* a stale .pub of an older key must not survive */
  rc = px_write_file_new(pub_path, with_nl, n, 0644);
  free(with_nl);
  if (rc != 0)
    snprintf(err, errlen, "cannot write %s: %s", pub_path, strerror(-rc));
done:
  free(line);
  BIO_free(bio);
  EVP_PKEY_free(key);
  ERR_clear_error();
  return rc;
}

int px_key_load(const char *path, EVP_PKEY **out, char *err, size_t errlen) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot open key %s: %s", path, strerror(e));
    return -e;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(err, errlen, "key %s is not a regular file", path);
    return -EINVAL;
  }
  if ((st.st_mode & 077) != 0) {
    close(fd);
    snprintf(err, errlen, "permissions %04o for key %s are too open: it must not be "
                          "accessible by others (chmod 600)", (unsigned)(st.st_mode & 07777), path);
    return -EPERM;
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    snprintf(err, errlen, "key %s belongs to another user", path);
    return -EPERM;
  }
  FILE *f = fdopen(fd, "r");
  if (f == NULL) {
    close(fd);
    return -errno;
  }
  *out = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  ERR_clear_error();
  if (*out == NULL || EVP_PKEY_get_id(*out) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(*out);
    *out = NULL;
    snprintf(err, errlen, "%s is not an Ed25519 private key", path);
    return -EINVAL;
  }
  return 0;
}
