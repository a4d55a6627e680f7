#ifndef PX_FILEIO_H
#define PX_FILEIO_H

#include <stddef.h>

/* Whole-buffer I/O that survives EINTR and short writes. 0 or -errno
 * (-EPIPE when read meets end of file first). */
int px_write_all(int fd, const void *data, size_t n);
int px_read_all(int fd, void *data, size_t n);

/* dir/name replaced atomically and durably: a temporary file, fsync,
 * rename, fsync of the directory. A crash leaves the old file or the new
 * one, never a mix; a full disk leaves the old one and no temporary. */
int px_write_file_atomic(const char *dir, const char *name, const void *data, size_t n,
                         unsigned mode);

/* path created only if it does not exist (-EEXIST), durably: a temporary
 * file, fsync, link(2). */
int px_write_file_new(const char *path, const void *data, size_t n, unsigned mode);

/* fsync(2), 0 or -errno. Every fsync of parallax goes through here (test
 * builds delay it when PX_TEST_FSYNC_DELAY_MS is set). */
int px_fsync(int fd);

/* fsync(2) of a directory, so renames and links in it are durable. */
int px_fsync_dir(const char *dir);

/* The whole file, NUL-terminated (*n excludes the NUL). 0 or -errno. */
int px_read_file(const char *path, char **out, size_t *n);

#endif
