"""sandbox_exec.py UNIT UID WRITABLE_DIR -- COMMAND...

Runs COMMAND under an approximation of the sandbox the systemd unit UNIT
describes, without systemd: what matters for whether our binaries work
inside it.

- SystemCallFilter= (every line, "~" lines subtracting; groups expanded by
  `systemd-analyze syscall-filter`, so the lists are systemd's own),
  SystemCallErrorNumber= and RestrictAddressFamilies= as a seccomp filter
  loaded through libseccomp;
- MemoryDenyWriteExecute= as PR_SET_MDWE (Linux 6.3 and later; without it
  that one setting is left out and said so on stderr);
- NoNewPrivileges=;
- ProtectSystem=strict as a read-only / with WRITABLE_DIR (the
  StateDirectory=) writable; ProtectProc=invisible ProcSubset=pid as a
  fresh /proc mounted with those options;
- DynamicUser= as an unprivileged UID owning WRITABLE_DIR; UMask=.

Not reproduced: namespaces for users, devices, tmp and the network, the
capability bounding set (the process has none after setuid anyway), cgroup
limits. Run as root inside `unshare --mount` (which leaves the pid alone:
the caller's pid is COMMAND's): argv() makes that command line,
unavailable() says why it cannot run here, environ() what the sandboxed
program's environment needs."""
import ctypes
import errno
import os
import shutil
import socket
import subprocess
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def settings(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;[" and "=" in line:
                k, v = line.split("=", 1)
                out.append((k.strip(), v.strip()))
    return out


_listed = None


def expand(name):
    """A syscall group (@name) as the set of syscall names systemd puts in
    it. `systemd-analyze syscall-filter` lists every group at once: one
    call, not one per nested group (each costs tens of milliseconds, and
    the week's 168 firings each start a sandbox)."""
    global _listed
    if _listed is None:
        text = subprocess.run(["systemd-analyze", "syscall-filter"], check=True,
                              capture_output=True, text=True).stdout
        _listed, members = {}, None
        for line in text.splitlines():
            if line.startswith("@"):
                members = _listed.setdefault(line.strip(), [])
            elif not line.startswith(" "):
                members = None  # the trailing "# Ungrouped ..." list
            elif members is not None:
                item = line.strip()
                if item and not item.startswith("#"):
                    members.append(item)
    names = set()
    for item in _listed[name]:
        names |= expand(item) if item.startswith("@") else {item}
    return names


def unavailable(unit):
    """Why a command cannot run in UNIT's sandbox here, or None."""
    if os.geteuid() != 0:
        return "needs root (a mount namespace per sandbox)"
    for tool in ("unshare", "systemd-analyze", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return "libseccomp is not installed"
    if not os.path.exists(unit):
        return f"no configured unit {unit}"
    return None


def argv(unit, uid, writable, command):
    """The command line running command (a list) in UNIT's sandbox as uid,
    with writable (the StateDirectory=) the one writable directory."""
    return ["unshare", "--mount", sys.executable, os.path.abspath(__file__), unit, str(uid),
            writable, "--"] + list(command)


def environ(env, sanitized):
    """env (a dict) for a sandboxed program. LeakSanitizer stops the world
    with ptrace, which the filter refuses (as it should): in a sanitizer
    build the leak check is left to the unsandboxed tests, the memory
    checks stay."""
    env = dict(env)
    if sanitized:
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    return env


class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def load_seccomp(allow, families, errno_name):
    sc = ctypes.CDLL("libseccomp.so.2")
    sc.seccomp_init.restype = ctypes.c_void_p
    sc.seccomp_init.argtypes = [ctypes.c_uint32]
    sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    sc.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    sc.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                          ctypes.c_uint, ctypes.POINTER(Cmp)]
    sc.seccomp_load.argtypes = [ctypes.c_void_p]
    refused = getattr(errno, errno_name) if errno_name else None
    # systemd's default for a refused call is to kill the process.
    ctx = sc.seccomp_init(0x00050000 | refused if refused else 0x80000000)
    assert ctx, "seccomp_init failed"
    for name in sorted(allow):
        nr = sc.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not a syscall of this architecture
        if name == "socket" and families:
            for fam in families:
                rc = sc.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1,
                                               (Cmp * 1)(Cmp(0, SCMP_CMP_EQ, fam, 0)))
                assert rc == 0, rc
        else:
            assert sc.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0, name
    assert sc.seccomp_load(ctx) == 0, "seccomp_load failed"


def main():
    unit, uid, writable = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    command = sys.argv[sys.argv.index("--") + 1:]
    s = settings(unit)
    get = lambda key: [v for k, v in s if k == key]  # noqa: E731

    allow, deny = set(), set()
    for v in get("SystemCallFilter"):
        names = set()
        for item in v.lstrip("~").split():
            names |= expand(item) if item.startswith("@") else {item}
        (deny if v.startswith("~") else allow).update(names)
    families = [getattr(socket, f) for v in get("RestrictAddressFamilies") for f in v.split()]
    err = (get("SystemCallErrorNumber") or [None])[-1]

    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    if "invisible" in get("ProtectProc") or "pid" in get("ProcSubset"):
        subprocess.run(["mount", "-t", "proc", "-o", "subset=pid,hidepid=invisible", "proc",
                        "/proc"], check=True)
    subprocess.run(["mount", "--bind", writable, writable], check=True)
    if "strict" in get("ProtectSystem"):
        subprocess.run(["mount", "-o", "remount,bind,ro", "/"], check=True)
    for root, dirs, files in os.walk(writable):
        os.lchown(root, uid, uid)
        for n in files:
            os.lchown(os.path.join(root, n), uid, uid)
    umask = get("UMask")
    if umask:
        os.umask(int(umask[-1], 8))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    if "yes" in get("MemoryDenyWriteExecute"):
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            print("sandbox_exec: no PR_SET_MDWE here, MemoryDenyWriteExecute= left out",
                  file=sys.stderr)
    if allow:
        load_seccomp(allow - deny, families, err)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
