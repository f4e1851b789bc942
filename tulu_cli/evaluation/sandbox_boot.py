"""Sets up one sandbox and runs one untrusted program in it: namespaces, filesystem view, limits, seccomp."""

# This file runs as a script (``python -I -S -B sandbox_boot.py``), started by sandbox.py for every
# program, before any untrusted code: standard library only, and nothing from tulu_cli, so that it
# starts fast and needs nothing that the sandbox hides.
#
# Protocol. fd 0 carries "<n>\n" and n bytes of marshal data (the configuration, with the program
# text; marshal is built in, json would cost an import of re), then one line, the run's nonce,
# which is read only once the program has run to its end. fds 1 and 2 are the program's stdout
# and stderr. ``cfg["report_fd"]`` is a pipe to the evaluator: the boot
# writes one line naming the layers it set up, before the program starts; after the program's last
# statement it writes the nonce. Exit codes: 0 ran to the end, 1 raised or exited, 120 the sandbox
# could not be set up (a one-line reason on stderr), 124 the boot's own deadline, 128+N signal N.
#
# Modes:
#   namespaces  unshare user (when not root), pid, net, mount, ipc, uts and cgroup namespaces; the first
#               child is the pid namespace's init: it builds a private root from read-only binds
#               and private tmpfs, pivots into it, forks the program and reaps. When init exits the
#               kernel kills everything left in the namespace.
#   inner       a jail (bubblewrap) already made the namespaces and the filesystem view: only the
#               per-process steps (limits, privileges, seccomp) remain, then the program runs here.
#   fallback    namespaces are refused: Landlock (where the kernel has it) confines the filesystem,
#               and seccomp forbids new processes, sockets and signals to anyone else.

from __future__ import annotations

import ctypes
import errno
import marshal
import os
import resource
import signal
import struct
import sys

SETUP_FAILED = 120
DEADLINE = 124

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
CLONE_THREAD = 0x00010000
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP
# Layer name -> clone flag; cfg["disable"] may name some (the tests remove one layer at a time).
NAMESPACES = {"user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "net": CLONE_NEWNET, "mount": CLONE_NEWNS,
              "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP}  # fmt: skip

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
# statvfs flags a remount must keep (the kernel locks them on mounts inherited into a user namespace).
_ST_TO_MS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))  # fmt: skip

PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 8, 22, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECCOMP_MODE_FILTER = 2
CAP_DAC_READ_SEARCH = 2

AF_UNIX = 1
TIOCSTI, TIOCLINUX = 0x5412, 0x541C

# ---------------------------------------------------------------------------------------------
# System call numbers. The seccomp filter is written here instead of using libseccomp, so that
# the sandbox needs nothing installed; other architectures get no filter (reported as a layer).

_COMMON_NR = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
}  # fmt: skip
ARCHES = {
    "x86_64": {
        "audit": 0xC000003E, "x32": True, "capset": 126,
        "nr": {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165, "umount2": 166,
               "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "clone": 56, "fork": 57, "vfork": 58,
               "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "init_module": 175, "finit_module": 313,
               "delete_module": 176, "socket": 41, "socketpair": 53, "bpf": 321, "perf_event_open": 298,
               "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249, "open_by_handle_at": 304,
               "kcmp": 312, "syslog": 103, "acct": 163, "swapon": 167, "swapoff": 168, "quotactl": 179,
               "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "ioctl": 16},
    },
    "aarch64": {
        "audit": 0xC00000B7, "x32": False, "capset": 91,
        "nr": {"ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40, "umount2": 39,
               "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "clone": 220,
               "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "init_module": 105, "finit_module": 273,
               "delete_module": 106, "socket": 198, "socketpair": 199, "bpf": 280, "perf_event_open": 241,
               "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218, "open_by_handle_at": 265,
               "kcmp": 272, "syslog": 116, "acct": 89, "swapon": 224, "swapoff": 225, "quotactl": 60,
               "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "ioctl": 29},
    },
}  # fmt: skip
for _arch in ARCHES.values():
    _arch["nr"].update(_COMMON_NR)

# Refused outright: debugging other processes, namespaces and mounts, kernel images and modules,
# kernel facilities a test never needs (and that have a history of exploits).
DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp",
          "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
          "fspick", "mount_setattr", "unshare", "setns", "kexec_load", "kexec_file_load", "reboot",
          "init_module", "finit_module", "delete_module", "bpf", "perf_event_open", "userfaultfd", "keyctl",
          "add_key", "request_key", "open_by_handle_at", "syslog", "acct", "swapon", "swapoff", "quotactl",
          "io_uring_setup", "io_uring_enter", "io_uring_register")  # fmt: skip
SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal")

# Classic BPF, as seccomp runs it: A = 32-bit accumulator, seccomp_data = {int nr; u32 arch; u64 ip; u64 args[6]}.
BPF_LD_ABS, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    """Offset of the low 32 bits of argument i (little-endian)."""
    return 16 + 8 * i


def seccomp_program(arch: str, *, fork: bool = True, unix_sockets: bool = True, signal_pid: int | None = None) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions.

    ``fork=False`` refuses new processes (threads stay allowed); ``unix_sockets=False`` refuses every
    socket; ``signal_pid`` allows signals only to that process (and to its own process group, 0).
    """
    spec = ARCHES[arch]
    nr = spec["nr"]
    prog: list[tuple[int, int, int, int]] = [
        (BPF_LD_ABS, 0, 0, _ARCH),
        (BPF_JEQ, 1, 0, spec["audit"]),
        (BPF_RET, 0, 0, RET_KILL_PROCESS),  # another ABI (int 0x80 on x86_64) would see other numbers
        (BPF_LD_ABS, 0, 0, _NR),
    ]
    eperm = (BPF_RET, 0, 0, RET_ERRNO | errno.EPERM)
    allow = (BPF_RET, 0, 0, RET_ALLOW)

    def rule(name: str, body: list[tuple[int, int, int, int]]) -> None:
        if name in nr:
            prog.append((BPF_JEQ, 0, len(body), nr[name]))
            prog.extend(body)

    if spec["x32"]:
        prog += [(BPF_JGE, 0, 1, 0x40000000), eperm]
    for name in DENIED:
        rule(name, [eperm])
    rule("clone3", [(BPF_RET, 0, 0, RET_ERRNO | errno.ENOSYS)])  # its flags are out of reach: libc falls back to clone
    clone = [(BPF_LD_ABS, 0, 0, _arg(0)), (BPF_JSET, 0, 1, NAMESPACE_FLAGS), eperm]
    clone += [allow] if fork else [(BPF_JSET, 1, 0, CLONE_THREAD), eperm, allow]
    rule("clone", clone)
    if not fork:
        rule("fork", [eperm])
        rule("vfork", [eperm])
    refuse_family = (BPF_RET, 0, 0, RET_ERRNO | errno.EAFNOSUPPORT)
    for name in ("socket", "socketpair"):
        rule(name, [(BPF_LD_ABS, 0, 0, _arg(0)), (BPF_JEQ, 0, 1, AF_UNIX), allow, refuse_family] if unix_sockets else [refuse_family])
    # Typing into a terminal's input queue (TIOCSTI) or console tricks (TIOCLINUX).
    rule("ioctl", [(BPF_LD_ABS, 0, 0, _arg(1)), (BPF_JEQ, 2, 0, TIOCSTI), (BPF_JEQ, 1, 0, TIOCLINUX), allow, eperm])
    if signal_pid is not None:
        for name in SIGNALLING:
            body = [(BPF_LD_ABS, 0, 0, _arg(0)), (BPF_JEQ, 2, 0, signal_pid), (BPF_JEQ, 1, 0, 0), eperm, allow]
            rule(name, [eperm] if name in ("pidfd_open", "pidfd_send_signal") else body)
    prog.append(allow)
    return prog


def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """The verdict of ``prog`` for one system call: a tiny interpreter of the instructions used above."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == BPF_LD_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == BPF_RET:
            return k
        else:
            hit = {BPF_JEQ: acc == k, BPF_JGE: acc >= k, BPF_JSET: bool(acc & k)}[code]
            pc += jt if hit else jf


# ---------------------------------------------------------------------------------------------
# libc


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.syscall.restype = ctypes.c_long
    return libc


LIBC = _libc()


class SetupError(Exception):
    """The sandbox cannot be built here; the message says which step failed."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {err})")


def _prctl(option: int, *args: int) -> int:
    padded = [ctypes.c_ulong(a) for a in (list(args) + [0, 0, 0, 0])[:4]]
    return LIBC.prctl(ctypes.c_int(option), *padded)


def _syscall(number: int, *args: int) -> int:
    return LIBC.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(LIBC.mount(enc(source), target.encode(), enc(fstype), flags, enc(data)), f"mount {source or ''} on {target}")


def machine() -> str:
    m = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


# ---------------------------------------------------------------------------------------------
# The filesystem view


def mount_plan(cfg: dict) -> list[tuple[str, str, str]]:
    """What init builds under the new root, parents first: (kind, path inside, source or link).

    Kinds: ``bind`` (read-only bind of a host path), ``link`` (symlink), ``tmp`` (the program's
    private, size-limited tmpfs), ``dev`` (a tmpfs with a few device nodes bound in), ``proc``.
    """
    plan = [("bind", dst, src) for src, dst in cfg["binds"]]
    plan += [("link", dst, target) for target, dst in cfg["links"]]
    plan += [("tmp", "/tmp", ""), ("dev", "/dev", ""), ("proc", "/proc", ""), ("link", "/var/tmp", "/tmp")]
    plan.sort(key=lambda op: (op[1].rstrip("/").count("/"), op[1]))
    return plan


def _makedirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _read_only(target: str, keep_devices: bool = False) -> None:
    """Remount a bind read-only, keeping the flags the kernel locked on it."""
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (0 if keep_devices else MS_NODEV)
    st = os.statvfs(target)
    for st_flag, ms_flag in _ST_TO_MS:
        if st.f_flag & st_flag:
            flags |= ms_flag
    _mount(None, target, None, flags)


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (space, tab, newline, backslash) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts_below(targets: list[str]) -> list[str]:
    """Mount points at or below any of ``targets``, parents first (a recursive bind brings
    submounts along, which would stay writable otherwise)."""
    found = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if any(point == t or point.startswith(t.rstrip("/") + "/") for t in targets):
                found.add(point)
    return sorted(found, key=len)


def build_view(cfg: dict) -> list[str]:
    """Mount the private root (run as the pid namespace's init) and pivot into it; returns the layers made."""
    root = cfg["root"]
    layers = ["mount"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    binds = []
    for kind, inside, source in mount_plan(cfg):
        where = root + inside
        if kind == "link":
            _makedirs(os.path.dirname(where))
            os.symlink(source, where)
        elif kind == "bind":
            if os.path.isdir(source):
                _makedirs(where)
            else:
                _makedirs(os.path.dirname(where))
                open(where, "a").close()
            _mount(source, where, None, MS_BIND | MS_REC)
            binds.append(where)
        elif kind == "tmp":
            _makedirs(where)
            opts = f"size={cfg['disk_mb']}m,nr_inodes=8192,mode=1777"
            _mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, opts)
        elif kind == "dev":
            _makedirs(where)
            _mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
            for name in ("null", "zero", "full", "random", "urandom"):
                open(f"{where}/{name}", "a").close()
                _mount(f"/dev/{name}", f"{where}/{name}", None, MS_BIND)
                _read_only(f"{where}/{name}", keep_devices=True)
            for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                                 ("stderr", "/proc/self/fd/2"), ("shm", "/tmp")):  # fmt: skip
                os.symlink(target, f"{where}/{name}")
        elif kind == "proc":
            _makedirs(where)
            try:
                _mount("proc", where, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                layers.append("proc")
            except SetupError:
                pass  # e.g. a container that masks parts of its /proc: the program gets an empty /proc
    for point in _mounts_below(binds):
        _read_only(point)
    for where in binds:  # fail closed: a bind left writable would be a way out
        if not os.statvfs(where).f_flag & os.ST_RDONLY:
            raise SetupError(f"{where} stayed writable")
    _mount(None, root + "/dev", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    _pivot_into(root)
    return layers


def _pivot_into(root: str) -> None:
    """Make ``root`` the root and detach the old one (pivot_root(".", "."), see pivot_root(2))."""
    if machine() not in ARCHES:
        raise SetupError(f"no pivot_root system call number for {machine()}")
    os.chdir(root)
    dot = ctypes.create_string_buffer(b".")
    _check(LIBC.syscall(ctypes.c_long(ARCHES[machine()]["nr"]["pivot_root"]), dot, dot), "pivot_root")
    _check(LIBC.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


# ---------------------------------------------------------------------------------------------
# Per-process confinement


def set_limits(cfg: dict) -> None:
    cpu = cfg["cpu_seconds"]
    limits = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, cfg["memory"], cfg["memory"]),
        (resource.RLIMIT_FSIZE, cfg["file_size"], cfg["file_size"]),
        (resource.RLIMIT_NOFILE, cfg["nofile"], cfg["nofile"]),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_MEMLOCK, 0, 0),
        (resource.RLIMIT_MSGQUEUE, 0, 0),
    ]
    if cfg.get("nproc"):
        # Counted per user in the user namespace (or for the slot's own uid): the fork bomb's ceiling.
        limits.append((resource.RLIMIT_NPROC, cfg["nproc"], cfg["nproc"]))
    for res, soft, hard in limits:
        resource.setrlimit(res, (soft, hard))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _set_capabilities(keep: int) -> None:
    """Only the capability bits ``keep`` (0: none) stay in the effective and permitted sets."""
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = keep
    _check(LIBC.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")


def drop_privileges(uid: int | None, keep_read_search: bool) -> None:
    """Root: become the slot's own uid. In a user namespace: give up the capabilities it granted.

    ``keep_read_search`` keeps CAP_DAC_READ_SEARCH (only under Landlock, which then decides what
    may be read): an interpreter in a private home such as /root/.pyenv stays readable.
    """
    keep = 1 << CAP_DAC_READ_SEARCH if keep_read_search else 0
    for cap in range(64):
        if not keep >> cap & 1:
            _prctl(PR_CAPBSET_DROP, cap)  # fails past the last capability or without CAP_SETPCAP: harmless
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None and os.getuid() == 0:
        if keep:
            _check(_prctl(PR_SET_KEEPCAPS, 1), "keepcaps")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _set_capabilities(keep)


# Landlock (Linux 5.13+): unprivileged filesystem confinement, the fallback's substitute for a mount view.
_LL_READ = 1 | 4 | 8  # EXECUTE, READ_FILE, READ_DIR
_LL_FILE = 1 | 2 | 4 | (1 << 14) | (1 << 15)  # EXECUTE, WRITE_FILE, READ_FILE, TRUNCATE, IOCTL_DEV
_LL_ABI_FS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}


def apply_landlock(read: list[str], write: list[str], devices: list[str]) -> bool:
    """Reading only below ``read``, writing only below ``write``; False where the kernel has no Landlock."""
    abi = _syscall(444, 0, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    handled = _LL_ABI_FS[min(abi, 5)]
    attr = struct.pack("<QQQ", handled, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)  # TCP bind/connect; scopes: abstract sockets, signals
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buf = ctypes.create_string_buffer(attr[:size])
    ruleset = _syscall(444, ctypes.addressof(buf), size, 0)
    if ruleset < 0:
        return False
    try:
        for paths, access in ((read, _LL_READ), (write, handled), (devices, _LL_FILE)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = access if os.path.isdir(path) else access & _LL_FILE
                    rule = ctypes.create_string_buffer(struct.pack("<Qi", allowed & handled, fd))
                    _check(0 if _syscall(445, ruleset, 1, ctypes.addressof(rule), 0) == 0 else -1, f"landlock rule {path}")
                finally:
                    os.close(fd)
        _check(0 if _syscall(446, ruleset, 0) == 0 else -1, "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return True


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def apply_seccomp(**options) -> bool:
    """Install the filter (no_new_privs must be set); False on an architecture without a table here."""
    arch = machine()
    if arch not in ARCHES or sys.byteorder != "little":
        return False
    prog = seccomp_program(arch, **options)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *ins) for ins in prog))
    fprog = _SockFprog(len(prog), ctypes.addressof(buf))
    _check(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog)), "seccomp")
    return True


# ---------------------------------------------------------------------------------------------
# The program


def read_config(fd: int) -> dict:
    """The length line and configuration of the protocol above (read byte-exact: the nonce stays in the pipe)."""
    head = b""
    while not head.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            raise SetupError("no configuration on stdin")
        head += chunk
    size = int(head)
    body = bytearray()
    while len(body) < size:
        chunk = os.read(fd, size - len(body))
        if not chunk:
            raise SetupError("configuration cut short")
        body += chunk
    return marshal.loads(bytes(body))


def _close_fds_except(keep: set[int]) -> None:
    last = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(last, fd)
        last = fd + 1
    os.closerange(last, 1 << 20)  # close_range(2): one system call, whatever the limit was


def confine(cfg: dict, layers: list[str]) -> None:
    """The per-process steps, in the order they must happen; ``layers`` collects their names."""
    set_limits(cfg)
    layers.append("rlimits")
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")  # before Landlock and seccomp, which need it
    landlocked = False
    if cfg.get("landlock") and "landlock" not in cfg["disable"]:
        ll = cfg["landlock"]
        landlocked = apply_landlock(ll["read"], ll["write"], ll["devices"])
    drop_privileges(cfg.get("uid"), keep_read_search=landlocked and cfg.get("keep_read_search", False))
    layers.append("uid" if cfg.get("uid") is not None else "nocaps")
    if landlocked:
        layers.append("landlock")
    options = dict(cfg["seccomp"])
    if options.get("signal_pid") == "self":
        options["signal_pid"] = os.getpid()
    if "seccomp" not in cfg["disable"] and apply_seccomp(**options):
        layers.append("seccomp")


def program_process(cfg: dict, ctl: int, layers: list[str]) -> None:
    """Confine this process, then run the program as ``__main__``; never returns."""
    report = cfg["report_fd"]
    try:
        _close_fds_except({ctl, report})
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        confine(cfg, layers)
        os.chdir(cfg["cwd"])
        os.write(report, (" ".join(layers) + "\n").encode())
    except (OSError, SetupError) as e:
        os.write(2, f"tulu-sandbox: {e}\n".encode())
        os._exit(SETUP_FAILED)
    os.environ.clear()
    os.environ.update(cfg["env"])
    sys.path.extend(cfg["site_dirs"])
    sys.argv = ["program.py"]
    source = cfg["source"]
    cfg.clear()
    _run(source, ctl, report)


def _run(source: str, ctl: int, report: int) -> None:
    ok = False
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        ok = True
    except SystemExit as e:
        sys.stderr.write(f"program called exit({e.code!r})\n")
    except BaseException as e:  # noqa: B036 - whatever the program raised is its failure
        try:
            import linecache
            import traceback
        except ImportError:  # an interpreter this uid cannot read (see drop_privileges)
            sys.stderr.write(f"{type(e).__name__}: {e}\n")
        else:
            # The program's lines in the traceback, without a program.py file anywhere; not this frame.
            linecache.cache["program.py"] = (len(source), None, source.splitlines(True), "program.py")
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: B036
        pass
    if ok:
        # Read only now: while the program ran, the nonce was in no Python object it could walk to.
        os.write(report, os.read(ctl, 64))
    os._exit(0 if ok else 1)


def _exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def namespaced(cfg: dict, ctl: int) -> None:
    """Outer process: unshare, map our uid, fork the namespace's init and wait for it (with a deadline)."""
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if cfg["userns"]:
        flags |= CLONE_NEWUSER
    for name in cfg["disable"]:
        flags &= ~NAMESPACES.get(name, 0)
    uid, gid = os.getuid(), os.getgid()
    try:
        # Die with the evaluation process (its deadline below covers the moment before this).
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != cfg["parent"]:
            os._exit(SETUP_FAILED)
        _check(LIBC.unshare(flags), "unshare")
        if flags & CLONE_NEWUSER:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except (OSError, SetupError) as e:
        os.write(2, f"tulu-sandbox: {e}\n".encode())
        os._exit(SETUP_FAILED)
    me = os.getpid()
    child = os.fork()
    if child == 0:
        _init(cfg, ctl, me, flags)
    signal.signal(signal.SIGALRM, lambda *_: (os.kill(child, signal.SIGKILL), os._exit(DEADLINE)))
    signal.alarm(cfg["deadline"])
    _, status = os.waitpid(child, 0)
    os._exit(_exit_code(status))


def _init(cfg: dict, ctl: int, parent: int, flags: int) -> None:
    """The pid namespace's init: build the view, fork the program, reap until it is gone, exit."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the outer process died: so does the whole namespace
        if os.getppid() not in (0, parent):  # 0: the parent is outside our new pid namespace
            os._exit(SETUP_FAILED)
        layers = [name for name, flag in NAMESPACES.items() if flags & flag and name != "mount"]
        if flags & CLONE_NEWNS:
            layers += build_view(cfg)
    except (OSError, SetupError) as e:
        os.write(2, f"tulu-sandbox: {e}\n".encode())
        os._exit(SETUP_FAILED)
    program = os.fork()
    if program == 0:
        program_process(cfg, ctl, layers)
    cfg.clear()
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(SETUP_FAILED)
        if got == program:
            os._exit(_exit_code(status))


def main() -> None:
    ctl = 0
    try:
        cfg = read_config(ctl)
    except (OSError, ValueError, SetupError) as e:
        os.write(2, f"tulu-sandbox: {e}\n".encode())
        os._exit(SETUP_FAILED)
    ctl = os.dup(0)  # fd 0 becomes /dev/null for the program; the nonce is read from here at the end
    mode = cfg["mode"]
    if mode == "namespaces":
        namespaced(cfg, ctl)
    elif mode == "inner":
        program_process(cfg, ctl, ["jail"])
    else:
        program_process(cfg, ctl, [])


if __name__ == "__main__":
    main()
