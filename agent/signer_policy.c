#include "agent/signer_policy.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "agent/signer.h"
#include "px_version.h"

static int px__refuse(char *why, size_t whylen, int rc, const char *what) {
  snprintf(why, whylen, "not a measurement line of this agent: %s", what);
  return rc;
}

static int px__member_is(json_t *m, const char *key, const char *want) {
  const char *v = json_string_value(json_object_get(m, key));
  return v != NULL && strcmp(v, want) == 0;
}

int px_signer_frame_check(const char *msg, size_t n, char *why, size_t whylen) {
  if (n == 0)
    return px__refuse(why, whylen, -EINVAL, "empty");
  if (n > PX_SIGNER_MAX_LINE)
    return px__refuse(why, whylen, -EMSGSIZE, "larger than 8 MiB");
  /* One JSONL line: what is signed is exactly what a line holds. */
  if (memchr(msg, '\n', n) != NULL || memchr(msg, '\r', n) != NULL)
    return px__refuse(why, whylen, -EINVAL, "more than one line");
  json_t *m = json_loadb(msg, n, JSON_REJECT_DUPLICATES, NULL);
  int rc = 0;
  if (!json_is_object(m))
    rc = px__refuse(why, whylen, -EINVAL, "not one JSON object (without duplicate members)");
  else if (!px__member_is(m, "software_name", PX_SOFTWARE_NAME))
    rc = px__refuse(why, whylen, -EINVAL, "software_name is not \"" PX_SOFTWARE_NAME "\"");
  else if (!px__member_is(m, "test_name", PX_TEST_NAME))
    rc = px__refuse(why, whylen, -EINVAL, "test_name is not \"" PX_TEST_NAME "\"");
  else if (!px__member_is(m, "probe_ip", "127.0.0.1"))
    rc = px__refuse(why, whylen, -EINVAL, "probe_ip is not \"127.0.0.1\"");
  json_decref(m);
  return rc;
}

const px_signer_policy_t px_measurement_signer_policy = {
    .namespace = PX_SSHSIG_NAMESPACE,
    .max_message = PX_SIGNER_MAX_LINE,
    .check = px_signer_frame_check,
};

int px_signer_start(px_signer_t *s, const char *key_path, bool create, char *err, size_t errlen) {
  return px_keysigner_start(s, key_path, create, &px_measurement_signer_policy, err, errlen);
}
