#ifndef PX_FUZZ_COMMON_H
#define PX_FUZZ_COMMON_H

/* Shared by the libFuzzer targets of tests/fuzz. Fixtures made once per
 * process (a trust store, a run's envelope fields, signing keys) are never
 * changed by a run, so no state carries from one input to the next. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* libFuzzer's entry points; targets define Initialize only when they
 * have fixtures to make. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant broke: say which, then abort so libFuzzer keeps the input. */
void px_fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* data as a NUL-terminated string (caller frees); NULL bytes inside stay,
 * so C-string parsers see the prefix, as they would in production. */
char *px_fuzz_cstr(const uint8_t *data, size_t size);

/* The test PKI's root (tests/fuzz/data/root.pem), the trust store every
 * judgement uses. Loaded on first use. */
X509_STORE *px_fuzz_trust(void);

/* When the fuzzers judge chains: inside the validity of the seeds. */
#define PX_FUZZ_NOW ((time_t)1798761600) /* 2027-01-01T00:00:00Z */

/* A measurement around test_keys (stolen) as the agent builds it, for
 * input "www.example.test". */
json_t *px_fuzz_measurement(json_t *test_keys);

/* What the agent would publish from m must pass the collector: the
 * compact bytes validate, the analysis can read them, and scrubbing
 * (the volunteer's address is 198.51.100.23) leaves something that still
 * validates. Aborts otherwise. */
void px_fuzz_check_publishable(json_t *m, const char *what);

/* A fixed Ed25519 key (seed byte n), for signing what the fuzzers submit. */
EVP_PKEY *px_fuzz_key(uint8_t n);

/* ---- the collector side (fuzz_submit, fuzz_query) ---------------------- */

struct px_store;

/* Must run before SQLite is first used: lets the store open a shared
 * in-memory database by URI, so its reader connections see the writer's
 * rows. Production opens files and is unaffected. */
void px_fuzz_sqlite_init(void);

/* A fresh in-memory store named name (gone once closed). */
struct px_store *px_fuzz_store_open(const char *name);

/* The submit request body {"format":"json","content":…,"signature":…}
 * for content signed with key (NULL: signature as given). Bytes that are
 * not valid UTF-8 are passed through raw, as a hostile client could.
 * Caller frees; *len gets the length. */
char *px_fuzz_envelope(const uint8_t *content, size_t n, EVP_PKEY *key, const char *signature,
                       size_t *len);

#endif
