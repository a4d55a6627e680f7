#ifndef PX_STATEDIR_H
#define PX_STATEDIR_H

#include <stddef.h>

#define PX_PATH_MAX 4096
#define PX_KEY_FILE "parallax_ed25519"

/* The state directory of program name ("parallax" keeps its key, spool
 * and run records there; "parallax-collector" its database): flag when
 * given, else $STATE_DIRECTORY (systemd's StateDirectory=), else
 * /var/lib/NAME for root and $XDG_STATE_HOME/NAME or ~/.local/state/NAME
 * for others. Returns 0 or -EINVAL with a reason. */
int px_state_dir_resolve(const char *flag, const char *name, char *out,
                         size_t n, char *err, size_t errlen);

/* mkdir -p with mode 0700 for what it creates. 0 or a negative errno. */
int px_mkdirs(const char *path, unsigned mode);

#endif
