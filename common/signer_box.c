#include "common/signer_box.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

/* Valgrind runs the program on a synthetic CPU and makes its own system
 * calls for it: it refuses a descriptor limit below its own, dies at a
 * file size limit (its logs) and cannot run under the filter. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PX__UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef PX__UNDER_VALGRIND
#define PX__UNDER_VALGRIND() 0
#endif

#if defined(__x86_64__)
#define PX__AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PX__AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__)
#define PX__AUDIT_ARCH AUDIT_ARCH_ARM
#endif

#ifdef PX__AUDIT_ARCH
/* What signing frames needs: the frames' descriptors, the allocator,
 * OpenSSL's clock, randomness and locks, signals' return, and the end. */
static const long px__allowed[] = {
    SYS_read, SYS_write, SYS_close, SYS_exit, SYS_exit_group, SYS_brk, SYS_mmap, SYS_munmap,
    SYS_mremap, SYS_madvise, SYS_mprotect, SYS_futex, SYS_getrandom, SYS_clock_gettime,
    SYS_gettimeofday, SYS_getpid, SYS_gettid, SYS_rt_sigreturn, SYS_rt_sigprocmask,
    SYS_restart_syscall, SYS_sched_yield, SYS_sigaltstack,
#ifdef SYS_mmap2
    SYS_mmap2,
#endif
#ifdef SYS_clock_gettime64
    SYS_clock_gettime64,
#endif
#ifdef SYS_futex_time64
    SYS_futex_time64,
#endif
};

static int px__seccomp(void) {
  enum { N = sizeof(px__allowed) / sizeof(px__allowed[0]) };
  struct sock_filter prog[N + 8];
  unsigned k = 0;
  /* A call made for another ABI (i386 on x86_64, …) has other numbers:
   * never allowed. */
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                           offsetof(struct seccomp_data, arch));
  prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PX__AUDIT_ARCH, 1, 0);
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                           offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
  /* x32 calls share the architecture and set bit 30. */
  prog[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
  for (unsigned i = 0; i < N; i++) {
    /* Matched: jump to the ALLOW at the end; else try the next. */
    prog[k] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)px__allowed[i],
                                           (unsigned char)(N - i), 0);
    k++;
  }
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
  prog[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog fprog = {.len = (unsigned short)k, .filter = prog};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0)
    return -errno;
  return 0;
}
#endif

int px_signer_sandbox(void) {
  /* Nothing this process runs from now on gains privileges (setuid
   * binaries, file capabilities); also what lets it install the filter. */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return -errno;
  struct rlimit zero = {0, 0};
  if (setrlimit(RLIMIT_CORE, &zero) != 0)
    return -errno;
  if (PX__UNDER_VALGRIND())
    return 0; /* the memory check's run: the box is tested without it */
  /* No new descriptor, no byte written to a file, no new process (the
   * filter says so too; these hold wherever it cannot be installed). */
  if (setrlimit(RLIMIT_NOFILE, &zero) != 0 || setrlimit(RLIMIT_FSIZE, &zero) != 0 ||
      setrlimit(RLIMIT_NPROC, &zero) != 0)
    return -errno;
#ifdef PX__AUDIT_ARCH
  return px__seccomp();
#else
  return 0;
#endif
}
