#ifndef PX_SIGNER_H
#define PX_SIGNER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/keysigner.h"

/* The agent's signer (common/keysigner.h): it signs only this agent's
 * measurement lines (agent/signer_policy.h), in the measurement namespace. */
int px_signer_start(px_signer_t *s, const char *key_path, bool create, char *err, size_t errlen);

#endif
