#ifndef PX_LEAKCHECK_H
#define PX_LEAKCHECK_H

/* LeakSanitizer checks for leaks when a process calls exit(); a forked
 * child that ends with _exit (a test in the runner, the signer) skips that
 * check. px_leak_check() runs it there: non-zero when something leaked
 * (the report goes where the sanitizer's log_path says), 0 when nothing
 * did, when detect_leaks=0, or in a build without AddressSanitizer. */

/* GCC says __SANITIZE_ADDRESS__, clang __has_feature(address_sanitizer). */
#if defined(__SANITIZE_ADDRESS__)
#define PX__HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PX__HAVE_LSAN 1
#endif
#endif

#ifdef PX__HAVE_LSAN
#include <sanitizer/lsan_interface.h>
static inline int px_leak_check(void) { return __lsan_do_recoverable_leak_check(); }
#else
/* A macro, not a function answering 0, so that analysers do not call
 * the callers' check always false. */
#define px_leak_check() 0
#endif

#endif
