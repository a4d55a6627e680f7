/* HTML escaping: one function for all of the server-rendered pages. */
#include "collector/http/html.h"

#include <errno.h>
#include <string.h>

int px_html_escape(FILE *out, const char *s) {
  for (; s != NULL && *s != '\0'; s++) {
    const char *ref = NULL;
    switch (*s) {
    case '&': ref = "&amp;"; break;
    case '<': ref = "&lt;"; break;
    case '>': ref = "&gt;"; break;
    case '"': ref = "&quot;"; break;
    case '\'': ref = "&#39;"; break;
    default: break;
    }
    if ((ref != NULL ? fputs(ref, out) : fputc((unsigned char)*s, out)) == EOF)
      return -EIO;
  }
  return 0;
}
