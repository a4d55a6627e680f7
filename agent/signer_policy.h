#ifndef PX_SIGNER_POLICY_H
#define PX_SIGNER_POLICY_H

#include <stddef.h>

#include "common/signer_box.h"

/* What the signer process (agent/signer.c) will sign, and the box it
 * signs in. The parent that parses DNS answers and TLS peers from the
 * network may be owned by an attacker; the key must then still only ever
 * vouch for what looks like this agent's own measurements. See
 * docs/architecture.md, "The signer's boundary". */

/* The largest line the signer signs: far above any measurement the probe
 * writes (bounded by --max-bytes), far below what could exhaust the
 * signer's memory. */
#define PX_SIGNER_MAX_LINE (8u << 20)

/* 0 when msg[0..n) is one measurement line of this agent: at most
 * PX_SIGNER_MAX_LINE bytes, one line (no CR or LF), one JSON object
 * without duplicate members whose software_name is "parallax", test_name
 * this agent's test and probe_ip "127.0.0.1" (an agent never records its
 * own address). Otherwise -EMSGSIZE or -EINVAL, with the reason in why.
 * The signer enforces it; `parallax submit` calls it first to explain a
 * refusal per line. */
int px_signer_frame_check(const char *msg, size_t n, char *why, size_t whylen);

/* The agent's signer: measurement lines only, in the measurement
 * namespace (px_signer_start in agent/signer.h uses it). */
extern const struct px_signer_policy px_measurement_signer_policy;

#endif
