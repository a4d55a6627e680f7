#ifndef PX_ANALYSIS_WORKER_PROTO_H
#define PX_ANALYSIS_WORKER_PROTO_H

#include <stdint.h>

/* Frames between the collector and its analysis worker, host byte order
 * (both ends are one binary):
 *   request: u32 magic, u32 kind, u32 length, i64 judging time, bytes
 *     kind SUMMARIZE: a stored measurement; one answer follows;
 *     kind POOL_ADD: the DER of an intermediate for the pool; no answer
 *   answer:  u32 magic, u32 outcome (PX_AWORKER_*), u32 length, text:
 *     OK: {"summary": {...}, "pool": ["base64 DER", ...]} (what the
 *     measurement's chains added to the pool); otherwise why. */
#define PX__MAGIC 0x70784132u /* "pxA2" */
#define PX__KIND_SUMMARIZE 0u
#define PX__KIND_POOL_ADD 1u
/* Larger than any request body the collector accepts (--max-body is at
 * most 1 GiB, a measurement a fraction of it): a bound, not a limit. */
#define PX__MAX_FRAME ((uint32_t)1 << 30)

#endif
