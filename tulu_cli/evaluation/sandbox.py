"""Run untrusted generated Python programs in isolated, resource-limited subprocesses."""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tulu_cli.errors import TuluError

BOOT = Path(__file__).with_name("sandbox_boot.py")  # the code that builds each sandbox (a script)

# Isolation levels, strongest first. The full sandbox is one of the first two; the others are
# fallbacks for kernels that refuse unprivileged user namespaces (said loudly, refused by strict).
LEVELS = {
    "namespaces": "user (when not root), pid, net, mount, ipc, uts and cgroup namespaces, a read-only private root, seccomp",
    "bwrap": "bubblewrap's namespaces and read-only private root, seccomp",
    "landlock": "no namespaces: Landlock confines files, seccomp forbids new processes, sockets and signals",
    "seccomp": "no namespaces, no Landlock: seccomp forbids new processes, sockets and signals; files are NOT confined",
    "rlimits": "no namespaces, no Landlock, no seccomp filter for this CPU: resource limits only; nothing is confined",
    "none": "no sandbox can be set up here: every program fails (status sandbox_error)",
}
FULL_LEVELS = ("namespaces", "bwrap")
# Levels under which a program could not write the results folder (so their cached outcomes stand).
TRUSTED_LEVELS = ("namespaces", "bwrap", "landlock")
# --sandbox: auto (the strongest level that works, a warning below the full sandbox), strict (the
# same, but refuse below it), or one jail by name (refuse if it does not work).
POLICIES = ("auto", "strict", "bwrap", "namespaces")

# Layers the tests switch off one at a time (names as in sandbox_boot.NAMESPACES, plus "seccomp"
# and "landlock"), to show that each one alone holds. Empty in normal use.
_DISABLED: frozenset[str] = frozenset()
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
# /etc entries the interpreter and common libraries read; the rest of /etc (shadow, ssh, ...) is hidden.
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "host.conf", "hosts",
        "alternatives", "mime.types", "os-release")  # fmt: skip
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")

# Each pool slot runs its programs as its own unprivileged uid when we are root, so that two
# programs running side by side never share one. Every evaluation process claims its own block of
# uids (a lock held for its lifetime), so that two runs on one machine never share a uid either.
_UID_BASE = 880_000
_UID_BLOCK = 256
_UID_BLOCKS = 4096
_uid_lock: object | None = None
_uid_block_base: int | None = None
_uid_guard = threading.Lock()
_CGROUP_PIDS = Path("/sys/fs/cgroup/pids")
_CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


class SandboxUnavailable(TuluError):
    """``--sandbox strict`` and this machine cannot give generated code the full sandbox."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every program; the defaults suit HumanEval / MBPP style checks."""

    timeout: float = 10.0  # wall clock, seconds
    cpu_seconds: int | None = None  # RLIMIT_CPU; None means ceil(timeout) + 1
    memory_mb: int = 2048  # RLIMIT_AS per process, and for the whole process tree a memory cgroup or the watchdog
    file_size_mb: int = 16  # RLIMIT_FSIZE: any single file, including the captured stdout
    disk_mb: int = 64  # size of the private tmpfs (the program's /tmp, working folder and $HOME)
    max_processes: int = 32  # RLIMIT_NPROC in the sandbox's user namespace (or the slot's uid), pids cgroup
    max_open_files: int = 64
    output_bytes: int = 4096  # tail of stdout/stderr kept in the result

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        for name in ("memory_mb", "file_size_mb", "disk_mb", "max_processes", "max_open_files"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (the interpreter needs it), got {self.memory_mb}")
        if self.cpu_seconds is not None and self.cpu_seconds < 1:
            raise ValueError(f"cpu_seconds must be at least 1, got {self.cpu_seconds}")


@dataclass
class Result:
    """Outcome of one program. ``passed`` is True only if the program ran to its end."""

    passed: bool
    status: str  # passed | failed | timeout | memory_limit | output_limit | killed | sandbox_error
    returncode: int | None
    duration: float
    stdout_tail: str = ""  # escaped (see ``excerpt``), at most ``output_bytes`` characters
    stderr_tail: str = ""
    sandbox: str = ""  # the layers the boot set up for this run, e.g. "user pid net ipc uts cgroup mount proc rlimits nocaps seccomp"

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Program output as the evaluator keeps it

# C0/C1 controls (but tab and newline), zero-width and bidirectional marks, line separators.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def excerpt(text: str | bytes, limit: int) -> str:
    """The last ``limit`` characters of program output, safe to print or store: invalid UTF-8 and
    control characters (terminal escapes, carriage returns, bidi marks) become backslash escapes."""
    if isinstance(text, bytes):
        text = text[-4 * limit :].decode("utf-8", errors="backslashreplace")
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)
    return text[-limit:] if limit > 0 else ""


def _tail(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - limit))
            return f.read()
    except OSError:
        return b""


# --------------------------------------------------------------------------------------------
# What this machine lets us enforce (probed once, cached)


def _own_cgroup(controller: str) -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return Path(path.lstrip("/"))
    except OSError:
        pass
    return None


@lru_cache(maxsize=None)
def _cgroup_parent(controller: str) -> Path | None:
    """A cgroup v1 folder under which we may create per-program children, or None."""
    root = _CGROUP_PIDS if controller == "pids" else _CGROUP_MEMORY
    own = _own_cgroup(controller)
    if own is None or not root.is_dir():
        return None
    parent = root / own
    probe = parent / f"tulu_probe_{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return None
    return parent


def slot_uid(slot: int) -> int | None:
    """The uid programs of pool slot ``slot`` run as (None when not running as root)."""
    global _uid_lock, _uid_block_base
    if os.geteuid() != 0:
        return None
    if not 0 <= slot < _UID_BLOCK:
        raise ValueError(f"slot must be in [0, {_UID_BLOCK}), got {slot}")
    with _uid_guard:
        if _uid_block_base is None:
            import fcntl

            folder = Path(tempfile.gettempdir()) / "tulu_sandbox_uids"
            folder.mkdir(mode=0o700, exist_ok=True)
            start = os.getpid() % _UID_BLOCKS
            for i in range(_UID_BLOCKS):
                block = (start + i) % _UID_BLOCKS
                handle = open(folder / f"{block}.lock", "a")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    continue
                _uid_lock, _uid_block_base = handle, _UID_BASE + block * _UID_BLOCK
                break
            else:
                raise RuntimeError("no free sandbox uid block (4096 evaluation processes at once?)")
        return _uid_block_base + slot


@lru_cache(maxsize=None)
def _site_dirs() -> tuple[str, ...]:
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    return tuple(d for d in dirs if os.path.isdir(d))


@lru_cache(maxsize=None)
def _view() -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """What the program sees of the host, read-only: (source, path inside) binds and (target, path) links.

    The system folders, a few /etc files, and the interpreter with its libraries, at their own
    paths (a prefix under a private home such as /root/.pyenv becomes reachable: its parents are
    folders of the sandbox's own root).
    """
    binds: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", *(f"/etc/{n}" for n in _ETC)):
        if os.path.islink(path):
            links.append((os.readlink(path), path))
        elif os.path.exists(path):
            binds.append((path, path))
    exe = os.path.dirname(os.path.abspath(sys.executable))
    wanted = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, exe, *_site_dirs()]
    for path in sorted({os.path.abspath(p) for w in wanted for p in (w, os.path.realpath(w)) if os.path.isdir(p)}, key=len):
        if os.path.realpath(path) == "/":
            continue
        # Skip what an earlier bind already shows (at the same path inside and out).
        if not any(path == dst or path.startswith(dst.rstrip("/") + "/") for _, dst in binds):
            binds.append((os.path.realpath(path), path))
    return tuple(binds), tuple(links)


def _environment(home: str) -> dict[str, str]:
    """The whole environment of every sandbox process: nothing of the evaluator's."""
    return {"PATH": _ENV_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip


def _bwrap_command(cfg: dict) -> list[str]:
    """bubblewrap's share of the job: the same namespaces and read-only view; the boot does the rest inside."""
    from tulu_cli.evaluation.sandbox_boot import mount_plan

    exe = shutil.which("bwrap", path=_ENV_PATH)
    if exe is None:
        raise FileNotFoundError("bwrap is not installed")
    cmd = [exe, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session"]  # fmt: skip
    if cfg["userns"]:
        cmd += ["--unshare-user", "--disable-userns"]
    made = {"/"}
    for kind, inside, source in mount_plan({**cfg, "binds": [*cfg["binds"], (str(BOOT), str(BOOT))]}):
        # bubblewrap makes missing parents private (0700): the slot's uid must pass through them.
        parents = [p for p in Path(inside).parents if str(p) not in made][::-1]
        for parent in parents:
            cmd += ["--perms", "0755", "--dir", str(parent)]
            made.add(str(parent))
        made.add(inside)
        cmd += {"bind": ["--ro-bind", source, inside], "link": ["--symlink", source, inside],
                "tmp": ["--perms", "1777", "--size", str(cfg["disk_mb"] << 20), "--tmpfs", inside],
                "dev": ["--dev", inside], "proc": ["--proc", inside]}[kind]  # fmt: skip
    return cmd + ["--chdir", cfg["cwd"]]


@dataclass(frozen=True)
class _Probe:
    level: str  # a key of LEVELS
    layers: str  # what the probe program's boot reported
    reason: str  # why the stronger levels were not used ("" when none was refused)


_probes: dict[str, _Probe] = {}
_probe_lock = threading.Lock()
_policy = "auto"
_warned = False


def _probe(mode: str) -> _Probe:
    """Run a trivial program in ``mode`` (bwrap | namespaces | fallback), once per process."""
    with _probe_lock:
        if mode not in _probes:
            res = _spawn("pass\n", SandboxLimits(timeout=20.0), 0, mode, disabled=frozenset())
            why = (res.stderr_tail.strip().splitlines() or [f"exit status {res.returncode}"])[-1].replace("tulu-sandbox: ", "")
            layers = res.sandbox.split()
            if not res.passed:
                level = ""
            elif mode != "fallback":
                level = mode
            else:
                level = "landlock" if "landlock" in layers else "seccomp" if "seccomp" in layers else "rlimits"
            _probes[mode] = _Probe(level, res.sandbox, "" if res.passed else f"{mode}: {why}")
        return _probes[mode]


def _choose() -> tuple[str, _Probe]:
    """The mode programs run in under the current policy, and its probe (the level it gives)."""
    named = _policy if _policy in ("bwrap", "namespaces") else None
    reasons = []
    # bubblewrap first where it is installed: a well-kept jail (Flatpak's) that distributions also
    # let through where they restrict user namespaces (Ubuntu's AppArmor profile for bwrap).
    for mode in [named] if named else ["bwrap", "namespaces"]:
        if mode == "bwrap" and not named and shutil.which("bwrap", path=_ENV_PATH) is None:
            continue
        probe = _probe(mode)
        if probe.level:
            return mode, probe
        reasons.append(probe.reason)
    if named:
        raise SandboxUnavailable(f"--sandbox {named}: it does not work here ({'; '.join(reasons)}); refusing to run generated code")
    probe = _probe("fallback")
    return "fallback", _Probe(probe.level or "none", probe.layers, "; ".join(r for r in [*reasons, probe.reason] if r))


def isolation_level() -> str:
    """The level programs run under on this machine with the current policy (a key of ``LEVELS``)."""
    return _choose()[1].level


def set_policy(mode: str) -> None:
    """Choose how generated code is jailed (``POLICIES``); ``strict`` and a named jail are checked
    now (``SandboxUnavailable``), so that a run refuses before any model loads."""
    global _policy
    if mode not in POLICIES:
        raise TuluError(f"--sandbox: expected one of {', '.join(POLICIES)}, got {mode!r}")
    _policy = mode
    if mode != "auto":
        _enforce_policy()


def _enforce_policy() -> str:
    """The mode to run programs in; refuses under strict, warns once under auto when not full."""
    global _warned
    mode, probe = _choose()
    if probe.level in FULL_LEVELS:
        return mode
    if _policy == "strict":
        raise SandboxUnavailable(f"--sandbox strict: the full sandbox is not available here ({probe.reason}); refusing to run generated code")
    if not _warned:
        _warned = True
        sys.stderr.write(
            f"WARNING: tulu sandbox: no user namespaces here ({probe.reason}). Generated code runs with level "
            f"'{probe.level}' only: {LEVELS[probe.level]}. Pass --sandbox strict to refuse instead.\n"
        )
    return mode


def isolation_report() -> dict[str, object]:
    """Which isolation mechanisms are active on this machine (under the current policy)."""
    mode, probe = _choose()
    return {
        "level": probe.level,
        "description": LEVELS[probe.level],
        "layers": probe.layers.split(),
        "reason": probe.reason,
        "pids_cgroup": _cgroup_parent("pids") is not None,
        "memory_cgroup": _cgroup_parent("memory") is not None,
        "memory_watchdog": _cgroup_parent("memory") is None,
        "uid_per_slot": os.geteuid() == 0,
        "environment": sorted(_environment("/tmp")),
    }


# --------------------------------------------------------------------------------------------
# Limits enforced from outside: cgroups, the whole-tree memory watchdog, killing leftovers


def _make_cgroup(controller: str, name: str, settings: dict[str, str]) -> Path | None:
    parent = _cgroup_parent(controller)
    if parent is None:
        return None
    group = parent / name
    try:
        group.mkdir()
        for key, value in settings.items():
            try:
                (group / key).write_text(value)
            except OSError:
                if key == "pids.max" or key == "memory.limit_in_bytes":
                    raise
    except OSError:
        _remove_cgroup(group)
        return None
    return group


def _remove_cgroup(group: Path | None) -> None:
    """Kill everything still in the cgroup, then remove it (retrying while the kernel reaps)."""
    if group is None or not group.exists():
        return
    for _ in range(200):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.01)


def _is_zombie(proc_dir: Path) -> bool:
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True  # gone


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (a slot's own uid: only its program uses it)."""
    for _ in range(50):
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid or _is_zombie(entry):
                    continue  # a zombie is already dead; its new parent reaps it
                os.kill(int(entry.name), signal.SIGKILL)
                found = True
            except OSError:
                pass
        if not found:
            return
        time.sleep(0.01)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _oom_killed(group: Path) -> bool:
    try:
        for line in (group / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                return True
    except (OSError, ValueError):
        pass
    return _read_int(group / "memory.failcnt") > 0


def _tree_memory(pid: int) -> int:
    """Bytes of private memory (anonymous and shared-memory pages) of ``pid`` and all its descendants."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(("RssAnon:", "RssShmem:")):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


class _MemoryWatchdog:
    """Without a memory cgroup, one thread sums each sandbox's process tree every 50 ms and kills
    a tree over its limit (RLIMIT_AS alone caps each process, not a tree of them)."""

    def __init__(self) -> None:
        self._trees: dict[int, tuple[int, threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int, limit: int) -> threading.Event:
        hit = threading.Event()
        with self._lock:
            self._trees[pid] = (limit, hit)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tulu-sandbox-memory", daemon=True)
                self._thread.start()
        return hit

    def unwatch(self, pid: int) -> None:
        with self._lock:
            self._trees.pop(pid, None)

    def _loop(self) -> None:
        while True:
            time.sleep(0.05)
            with self._lock:
                trees = list(self._trees.items())
            for pid, (limit, hit) in trees:
                if _tree_memory(pid) > limit:
                    hit.set()
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass


_watchdog = _MemoryWatchdog()


# --------------------------------------------------------------------------------------------
# Running one program


def _config(source: str, limits: SandboxLimits, mode: str, base: Path, uid: int | None, report_fd: int, disabled: frozenset[str]) -> dict:
    """The boot's configuration (see sandbox_boot.py)."""
    root = os.geteuid() == 0
    binds, links = _view()
    cpu = limits.cpu_seconds if limits.cpu_seconds is not None else int(limits.timeout) + 1
    cfg = {
        "mode": mode,
        "source": source,
        "report_fd": report_fd,
        "site_dirs": list(_site_dirs()),
        "cpu_seconds": cpu,
        "memory": limits.memory_mb * 1024 * 1024,
        "file_size": limits.file_size_mb * 1024 * 1024,
        "nofile": limits.max_open_files,
        "disk_mb": limits.disk_mb,
        "deadline": int(limits.timeout) + 3,  # the boot's own, in case the evaluation process dies first
        "uid": uid,
        "disable": sorted(disabled),
    }
    if mode in ("namespaces", "bwrap"):
        # The namespace's init is one more process of the same user in the user namespace.
        cfg.update(cwd="/tmp", userns=not root, root=str(base / "root"), binds=binds, links=links,
                   nproc=limits.max_processes + (0 if root else 1), parent=os.getpid(),
                   seccomp={"fork": True, "unix_sockets": True, "signal_pid": None})  # fmt: skip
        if mode == "bwrap":
            cfg["mode"] = "inner"
    else:
        work = str(base / "work")
        reads = sorted({src for src, _ in binds} | {os.path.realpath(p) for _, p in links})
        cfg.update(cwd=work, nproc=None, landlock={"read": reads, "write": [work], "devices": list(_DEVICES)},
                   keep_read_search=root, seccomp={"fork": False, "unix_sockets": False, "signal_pid": "self"})  # fmt: skip
    cfg["env"] = _environment(cfg["cwd"])
    return cfg


def _spawn(source: str, limits: SandboxLimits, slot: int, mode: str, disabled: frozenset[str] | None = None) -> Result:
    """Run one program in ``mode`` (bwrap | namespaces | fallback) and judge the outcome."""
    import marshal

    uid = slot_uid(slot)
    base = Path(tempfile.mkdtemp(prefix="tulu_sandbox_"))
    base.chmod(0o711)  # the slot's uid must reach work/ (fallback) but not list or read our files
    if mode == "namespaces":
        (base / "root").mkdir(mode=0o700)
    else:
        (base / "work").mkdir(mode=0o700)
        if uid is not None:
            os.chown(base / "work", uid, uid)
    report_r, report_w = os.pipe()
    cfg = _config(source, limits, mode, base, uid, report_w, _DISABLED if disabled is None else disabled)
    name = f"tulu_sandbox_{uuid.uuid4().hex[:12]}"
    pids_group = _make_cgroup("pids", name, {"pids.max": str(limits.max_processes + 3)})
    mem_bytes = limits.memory_mb * 1024 * 1024
    mem_group = _make_cgroup("memory", name, {"memory.limit_in_bytes": str(mem_bytes + (64 << 20)),
                                              "memory.memsw.limit_in_bytes": str(mem_bytes + (64 << 20))})  # fmt: skip
    # -S skips site's .pth processing (most of the interpreter's start-up time); the boot puts the
    # site-packages folders on sys.path so installed packages import.
    cmd = [sys.executable, "-I", "-S", "-B", str(BOOT)]
    if mode == "bwrap":
        try:
            cmd = [*_bwrap_command(cfg), "--", *cmd]
        except FileNotFoundError as e:
            shutil.rmtree(base, ignore_errors=True)
            return Result(passed=False, status="sandbox_error", returncode=None, duration=0.0, stderr_tail=str(e))
    groups = [g for g in (pids_group, mem_group) if g is not None]
    if groups:
        # Join the cgroups from a tiny shell before exec, so the whole tree is counted from its
        # first instruction (preexec_fn is unsafe in our threaded pool).
        joins = " && ".join(f"echo $$ > {g / 'cgroup.procs'}" for g in groups)
        cmd = ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *cmd]
    out_path, err_path = base / "stdout", base / "stderr"
    nonce = secrets.token_hex(16)
    payload = marshal.dumps(cfg)
    timed_out, oom = False, False
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=str(base), env=cfg["env"],
                                    close_fds=True, pass_fds=(report_w,), start_new_session=True)  # fmt: skip
        finally:
            os.close(report_w)
        hit = _watchdog.watch(proc.pid, mem_bytes + (64 << 20)) if mem_group is None else None
        expired = threading.Event()

        def _expire() -> None:
            expired.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass

        # A timer kills on time-out, so the wait below blocks in waitpid instead of polling.
        timer = threading.Timer(limits.timeout, _expire)
        timer.start()
        try:
            try:
                proc.stdin.write(b"%d\n" % len(payload) + payload + nonce.encode() + b"\n")
                proc.stdin.close()
            except OSError:
                pass  # the boot died before reading it all: its exit status says why
            proc.wait()
        finally:
            timer.cancel()
            timed_out = expired.is_set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            if hit is not None:
                _watchdog.unwatch(proc.pid)
                oom = hit.is_set()
            oom = oom or (mem_group is not None and _oom_killed(mem_group))
            for g in groups:
                _remove_cgroup(g)
            if uid is not None and mode == "fallback":
                _kill_uid(uid)
            rc = proc.wait()
    duration = time.monotonic() - start
    os.set_blocking(report_r, False)
    report = b""
    try:
        while chunk := os.read(report_r, 4096):
            report += chunk
            if len(report) > 4096:
                break
    except BlockingIOError:
        pass
    finally:
        os.close(report_r)
    layers, _, token = report.decode("utf-8", "replace").partition("\n")
    stdout = excerpt(_tail(out_path, 4 * limits.output_bytes), limits.output_bytes)
    stderr = excerpt(_tail(err_path, 4 * limits.output_bytes), limits.output_bytes)
    out_size = out_path.stat().st_size + err_path.stat().st_size
    shutil.rmtree(base, ignore_errors=True)
    passed = not timed_out and not oom and rc == 0 and token == nonce + "\n"
    if passed:
        status = "passed"
    elif timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU, 124):
        status = "timeout"
    elif rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or out_size >= cfg["file_size"]:
        status = "output_limit"
    elif oom or "MemoryError" in stderr:
        status = "memory_limit"
    elif rc == 120:
        status = "sandbox_error"
    elif rc is not None and (rc < 0 or rc > 128):
        status = "killed"
    else:
        status = "failed"
    return Result(passed=passed, status=status, returncode=rc, duration=round(duration, 3),
                  stdout_tail=stdout, stderr_tail=stderr, sandbox=layers)  # fmt: skip


def run_program(source: str, limits: SandboxLimits = SandboxLimits(), slot: int = 0) -> Result:
    """Run ``source`` as ``__main__`` in a fresh sandbox; passed means it ran to its end."""
    return _spawn(source, limits, slot, _enforce_policy())


def run_programs(
    programs: Sequence[str],
    limits: SandboxLimits | Sequence[SandboxLimits] | None = None,
    *,
    timeout: float | None = None,
    max_workers: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    progress: str | None = None,
) -> list[Result]:
    """Run many programs, at most ``max_workers`` at once (default: number of cores).

    ``limits`` is one ``SandboxLimits`` for all or one per program; ``timeout`` overrides their
    time limit. Results come back in input order. ``on_result(index, result)`` is called as each
    one finishes (from a worker thread, one at a time). ``progress="label"`` shows a rich
    progress bar on a terminal.
    """
    if limits is None or isinstance(limits, SandboxLimits):
        per_program = [limits or SandboxLimits()] * len(programs)
    else:
        per_program = list(limits)
        if len(per_program) != len(programs):
            raise ValueError(f"got {len(per_program)} limits for {len(programs)} programs")
    if timeout is not None:
        per_program = [replace(lim, timeout=timeout) for lim in per_program]
    if programs:
        _enforce_policy()  # refuse (strict) or warn before the first program, not from a worker
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(programs) or 1))
    slots: queue.Queue[int] = queue.Queue()
    for s in range(workers):
        slots.put(s)
    results: list[Result | None] = [None] * len(programs)
    lock = threading.Lock()
    bar, task_id = None, None
    if progress is not None and programs:
        from rich.progress import Progress

        bar = Progress(disable=not sys.stderr.isatty(), transient=False)
        task_id = bar.add_task(progress, total=len(programs))
        bar.start()

    def one(index: int) -> None:
        slot = slots.get()
        try:
            res = run_program(programs[index], per_program[index], slot=slot)
        finally:
            slots.put(slot)
        results[index] = res
        with lock:
            if on_result is not None:
                on_result(index, res)
            if bar is not None:
                bar.advance(task_id)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f in [pool.submit(one, i) for i in range(len(programs))]:
                f.result()
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------------------------
# HumanEval-style problems


def humaneval_program(problem: dict, completion: str) -> str:
    """The program that checks one completion: prompt + completion, the tests, the call."""
    return (
        problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
        + f"check({problem['entry_point']})\n"
    )


def check_humaneval(
    problems: Iterable[dict],
    completions: Iterable[str],
    limits: SandboxLimits | None = None,
    *,
    timeout: float | None = None,
    max_workers: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    progress: str | None = None,
) -> list[Result]:
    """Check completions against HumanEval-style problems (``prompt``, ``test``, ``entry_point``)."""
    programs = [humaneval_program(p, c) for p, c in zip(problems, completions, strict=True)]
    return run_programs(programs, limits, timeout=timeout, max_workers=max_workers,
                        on_result=on_result, progress=progress)
