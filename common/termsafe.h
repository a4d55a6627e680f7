#ifndef PX_TERMSAFE_H
#define PX_TERMSAFE_H

#include <stddef.h>

/* Text someone else chose (a peer's certificate, a collector's answer,
 * another volunteer's upload, a file) rendered for a terminal, so that it
 * can neither drive the terminal (escape sequences, carriage returns,
 * backspaces) nor disguise what is printed around it (bidi overrides).
 *
 * Printable ASCII and well-formed printable UTF-8 pass through unchanged;
 * everything else becomes a visible escape:
 *   \                                      \\
 *   C0 controls 0x00-0x1f (tab and newline
 *   included) and DEL 0x7f                 \xHH    (the byte)
 *   a byte that is not part of well-formed
 *   UTF-8 (a stray continuation byte, an
 *   overlong form, a surrogate, past
 *   U+10FFFF, a cut-off sequence)          \xHH    (each such byte)
 *   C1 controls U+0080-U+009F, the bidi
 *   controls U+061C, U+200E, U+200F,
 *   U+202A-U+202E, U+2066-U+2069, and the
 *   separators U+2028, U+2029              \uHHHH  (the code point)
 * Hex digits are lower case. \xHH always names a byte and \uHHHH a code
 * point, and a backslash in the text is doubled, so the rendering reads
 * back unambiguously. One character of input is at most four bytes of
 * rendering: PX_TERM_ESCAPED_MAX(n) bytes hold any n-byte input. */
#define PX_TERM_ESCAPED_MAX(n) (4 * (size_t)(n) + 1)

/* Renders s[0..n) into out (outlen bytes; NUL-terminated whenever
 * outlen > 0). Returns 0, or -ENOBUFS when out is too small: out then
 * holds the rendering of the longest prefix that fits, cut between
 * characters, never inside an escape or a UTF-8 sequence. Allocates
 * nothing and reads no further than s[n - 1] (a NUL inside is \x00). */
int px_term_escape(const char *s, size_t n, char *out, size_t outlen);

/* The same for the C string s (NULL renders as ""), returning out, for use
 * as a printf argument; a rendering too long for out is cut as above. */
const char *px_term_str(const char *s, char *out, size_t outlen);

#endif
