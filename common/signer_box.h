#ifndef PX_SIGNER_BOX_H
#define PX_SIGNER_BOX_H

/* The box a signer process (common/keysigner.c) signs in, the agent's and
 * the collector's alike. See docs/architecture.md, "The signer's boundary". */

/* Confines the calling process, which holds its key already and from now
 * on only reads frames from and writes replies to descriptors it has:
 * PR_SET_NO_NEW_PRIVS, rlimits that forbid new files, processes and core
 * dumps, and (on x86_64, aarch64 and arm) a seccomp filter that allows
 * reading, writing, memory management, time, randomness and exit, and
 * fails every other system call with EPERM (opening files, sockets,
 * exec, ptrace, fork). The same box in every build, sanitizers included;
 * under valgrind only the first two steps apply. Returns 0,
 * or a negative errno when a step could not be applied (the caller
 * refuses to sign then). */
int px_signer_sandbox(void);

#endif
