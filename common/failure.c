#include "common/failure.h"

#include <errno.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>

const char *px_failure_from_rcode(int rcode, char *buf, unsigned buflen) {
  switch (rcode) {
  case 0:
    return NULL;
  case 1: /* FORMERR: the server could not parse our well-formed query */
  case 4: /* NOTIMP */
    return PX_FAILURE_DNS_MISBEHAVING;
  case 2:
    return PX_FAILURE_DNS_SERVFAIL;
  case 3:
    return PX_FAILURE_DNS_NXDOMAIN;
  case 5:
    return PX_FAILURE_DNS_REFUSED;
  default:
    snprintf(buf, buflen, "unknown_failure: dns rcode %d", rcode);
    return buf;
  }
}

const char *px_failure_from_errno(int err, char *buf, unsigned buflen) {
  switch (-err) {
  case ECONNREFUSED:
    return PX_FAILURE_CONN_REFUSED;
  case ECONNRESET:
  case EPIPE:
    return PX_FAILURE_CONN_RESET;
  case ETIMEDOUT:
    return PX_FAILURE_TIMEOUT;
  case EHOSTUNREACH:
    return PX_FAILURE_HOST_UNREACHABLE;
  case ENETUNREACH:
    return PX_FAILURE_NETWORK_UNREACHABLE;
  case ENETDOWN:
    return PX_FAILURE_NETWORK_DOWN;
  case ECONNABORTED:
    return PX_FAILURE_CONN_ABORTED;
  case EACCES:
  case EPERM:
    return PX_FAILURE_PERMISSION_DENIED;
  default:
    snprintf(buf, buflen, "unknown_failure: %s", strerror(-err));
    return buf;
  }
}

const char *px_failure_from_x509(int x509_error) {
  switch (x509_error) {
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_CERT_UNTRUSTED:
    return PX_FAILURE_SSL_UNKNOWN_AUTHORITY;
  default:
    return PX_FAILURE_SSL_INVALID_CERT;
  }
}
