#ifndef PX_FAILURE_H
#define PX_FAILURE_H

/* OONI failure strings (spec df-007, and the names ooni/probe-cli emits),
 * the only values a measurement's "failure" keys take besides null and
 * "unknown_failure: <detail>". */
#define PX_FAILURE_DNS_NXDOMAIN "dns_nxdomain_error"
#define PX_FAILURE_DNS_SERVFAIL "dns_servfail_error"
#define PX_FAILURE_DNS_REFUSED "dns_refused_error"
#define PX_FAILURE_DNS_NO_ANSWER "dns_no_answer"
#define PX_FAILURE_DNS_MISBEHAVING "dns_server_misbehaving"
#define PX_FAILURE_TIMEOUT "generic_timeout_error"
#define PX_FAILURE_CONN_REFUSED "connection_refused"
#define PX_FAILURE_CONN_RESET "connection_reset"
#define PX_FAILURE_EOF "eof_error"
#define PX_FAILURE_HOST_UNREACHABLE "host_unreachable"
#define PX_FAILURE_NETWORK_UNREACHABLE "network_unreachable"
#define PX_FAILURE_NETWORK_DOWN "network_down"
#define PX_FAILURE_CONN_ABORTED "connection_aborted"
/* A local policy (a prohibit route, a firewall rule on this machine)
 * refused the packet: probe-cli's name for EACCES, and ours for EPERM,
 * which Linux returns for the same refusal by netfilter. */
#define PX_FAILURE_PERMISSION_DENIED "permission_denied"
#define PX_FAILURE_SSL_UNKNOWN_AUTHORITY "ssl_unknown_authority"
#define PX_FAILURE_SSL_INVALID_CERT "ssl_invalid_certificate"
#define PX_FAILURE_SSL_INVALID_HOSTNAME "ssl_invalid_hostname"
#define PX_FAILURE_SSL_FAILED_HANDSHAKE "ssl_failed_handshake"

#define PX_FAILURE_MAX 96

/* DNS rcode of an answer that arrived. NULL for NOERROR (the caller decides
 * between success and dns_no_answer by looking at the answers). */
const char *px_failure_from_rcode(int rcode, char *buf, unsigned buflen);

/* A negative errno (libuv's UV_E* on Unix) from a socket operation. */
const char *px_failure_from_errno(int err, char *buf, unsigned buflen);

/* Which failure an X509_V_ERR_* code stands for: ssl_unknown_authority for
 * errors about reaching a trusted root, ssl_invalid_certificate otherwise. */
const char *px_failure_from_x509(int x509_error);

#endif
