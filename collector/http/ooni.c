/* The OONI-shaped view of stored measurements (collector/http/ooni.h). */
#include "collector/http/ooni.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/ingest/jsontok.h"
#include "collector/store/store.h"

bool px_ooni_uid_ok(const char *uid) {
  size_t n = strlen(uid);
  if (n == 0 || n >= PX_UID_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = uid[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return false;
  }
  return true;
}

int px_ooni_line(const char *uid, const char *content, size_t content_len, char **out,
                 size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (!px_ooni_uid_ok(uid) || content_len < 2 || content_len > UINT32_MAX)
    return -EINVAL;
  /* The same strict reading upload gives it: valid UTF-8 JSON, no
   * whitespace between tokens (so no newline anywhere: strings cannot
   * hold a raw one) and no duplicate keys. Checked again here because
   * the line is spliced from the stored bytes: whatever is in the row,
   * the export is one complete JSON object per line or nothing. */
  px_jdoc_t doc;
  char why[96];
  int rc = px_json_tokenize(content, content_len, &doc, PX_JSON_COMPACT, why, sizeof(why));
  if (rc != 0)
    return rc == -ENOMEM ? -ENOMEM : -EINVAL;
  bool ok = doc.tok[0].type == PX_JT_OBJECT && px_jobj_get(&doc, 0, "measurement_uid") < 0;
  bool empty = ok && doc.tok[0].size == 0;
  px_jdoc_free(&doc);
  if (!ok)
    return -EINVAL;
  char prefix[PX_UID_MAX + 32];
  int p = snprintf(prefix, sizeof(prefix), PX_OONI_PREFIX_FMT, uid);
  if (p < 0 || (size_t)p >= sizeof(prefix))
    return -EINVAL;
  /* An empty object (no measurement is one, but the splice must hold for
   * any object): the prefix's comma becomes the closing brace. */
  if (empty)
    prefix[p - 1] = '}';
  size_t rest = empty ? 0 : content_len - 1;
  char *line = malloc((size_t)p + rest + 1);
  if (line == NULL)
    return -ENOMEM;
  memcpy(line, prefix, (size_t)p);
  memcpy(line + p, content + 1, rest);
  line[(size_t)p + rest] = '\0';
  *out = line;
  *out_len = (size_t)p + rest;
  return 0;
}
