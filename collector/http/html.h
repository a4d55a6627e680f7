#ifndef PX_HTML_H
#define PX_HTML_H

#include <stdio.h>

/* What the collector's pages may load: their own script, style and API,
 * nothing inline, and no framing by another site (clickjacking). */
#define PX_PAGE_CSP "default-src 'self'; frame-ancestors 'none'"

/* The one way text reaches the collector's server-rendered HTML
 * (collector/http/overview.c): every byte of s that could end a text
 * node or an attribute value (& < > " ') written as a character
 * reference, so a domain, a country or an echoed parameter can only ever
 * be text, whether it lands between tags or inside a quoted attribute.
 * 0, or -EIO when out failed. */
int px_html_escape(FILE *out, const char *s);

#endif
