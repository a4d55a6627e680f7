#ifndef PX_CONSENT_H
#define PX_CONSENT_H

#include <stdio.h>

/* What a volunteer agrees to, in plain words. Bump the version whenever
 * the text changes what is measured, uploaded or published: the marker
 * records which version was accepted. */
#define PX_CONSENT_VERSION 1
#define PX_DATA_LICENCE "CC-BY-4.0"

/* Prints the consent text for these collectors (may be NULL). */
void px_consent_print(FILE *out, const char *const *collectors, size_t ncollectors);

#endif
