#ifndef PX_ROTATE_H
#define PX_ROTATE_H

#include <stddef.h>

#include "agent/cli/common.h"

/* A new identity for the agent (`parallax keygen --rotate`). The key id
 * links every measurement of one agent; a volunteer who wants a fresh
 * start gets a new key, and the collector learns, from a statement both
 * keys signed (PX_SSHSIG_ROTATION_NAMESPACE), that the old key
 * stops being valid at that moment: its allowed_signers line gets a
 * valid-before, so measurements it signed before stay verifiable and
 * anything later claiming to be from it does not.
 *
 * The statement is made while both private keys are in memory and before
 * any network traffic; the old private key is then deleted (its .pub is
 * kept as KEY.old-<time>.pub) and the request waits in
 * STATE_DIR/key-rotation.json until a collector accepts it. */
/* Rotates the key at key_path. Prints nothing; old_id and new_id receive
 * the key ids (PX_KEY_ID_LEN bytes each). 0 or a negative errno with a
 * reason in err. */
int px_rotate_key(const char *state_dir, const char *key_path, char *old_id, char *new_id,
                  char *err, size_t errlen);

/* Sends a waiting rotation to o's collector(s). 0 when none waits or one
 * accepted it (the file is then removed), -EAGAIN when it still waits,
 * -EINVAL when a collector refused it (it stays, and err says why). */
int px_rotation_send_pending(px_agent_opts_t *o, char *err, size_t errlen);

#endif
