"""The hostile suite: 29 kinds of attack mixed with canonical solutions, scored by `tulu eval score` as root
and as an unprivileged user (in each jail, and in the fallback without user namespaces); every case is
judged by what the host shows afterwards, never by what the program says."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

import _sandbox_hostile as hostile
from tulu_cli.evaluation import sandbox

pytestmark = pytest.mark.slow

HAS_BWRAP = shutil.which("bwrap", path=sandbox._ENV_PATH) is not None
DEFAULT_JAIL = "bwrap" if HAS_BWRAP else "namespaces"
# pass@1 by hand from the layout in _sandbox_hostile.samples(): each problem has 3 canonical
# solutions, which pass, and its hostile samples, which fail, but for one stated fake pass each on
# HumanEval/0 (assert_tamper), /4 (builtins_tamper) and /13 (forge_token_fds). Hostile samples per
# problem: /0 4, /4 4, /12 4, /13 4, /23 4, /28 3, /30 3, /55 3.
PASS_AT_1 = (4 / 7 + 4 / 7 + 3 / 7 + 4 / 7 + 3 / 7 + 3 / 6 + 3 / 6 + 3 / 6) / 8


@pytest.fixture(scope="module")
def unprivileged():
    """A user created for these tests, and a Python it can read (ours may live in a private home);
    run by an ordinary user, that user itself."""
    if os.geteuid() != 0:
        yield None, sandbox.sys.executable
        return
    if not (hostile.RUNUSER and hostile.USERADD and hostile.USERDEL):
        pytest.skip("needs useradd, userdel and runuser to create the unprivileged user")
    folder = hostile.tempdir()
    python = hostile.world_readable_python(folder / "venv")
    if python is None:
        pytest.skip("no system interpreter of this Python version to build a readable venv from")
    user = hostile.create_user()
    hostile.give(folder / "venv", user)  # its own venv: only the sandbox keeps a program out of it
    try:
        yield user, str(python)
    finally:
        hostile.remove_user(user)
        shutil.rmtree(folder, ignore_errors=True)


def _check(obs: hostile.Observed, jail: str) -> None:
    if obs.returncode == 2 and "it does not work here" in obs.stderr and "unshare:" in obs.stderr:
        pytest.skip(f"this kernel refuses the jail's namespaces: {obs.stderr.strip().splitlines()[-1]}")
    assert obs.returncode == 0, obs.stderr[-3000:]  # the scorer itself survived every attack
    table = hostile.outcomes(obs)
    expected = {k: "fake pass" if k in hostile.OWN_RESULT_MAY_BE_FAKED else "contained" for k in hostile.KINDS}
    assert table == expected
    # Canonical solutions keep their pass, whatever ran beside them; the hostile ones fail.
    for sample, row in hostile.paired(obs):
        assert row.get("passed") == (sample.kind == "canonical" or sample.kind in hostile.OWN_RESULT_MAY_BE_FAKED), (sample.kind, row)
    assert obs.metrics["pass@1"] == pytest.approx(PASS_AT_1) and obs.metrics["num_samples"] == 53
    assert obs.metrics["sandbox"] == ("landlock" if jail == "fallback" else jail)
    # Nothing reached the host: no file in a writable folder, nothing at the listeners, no process
    # left, the neighbouring process alive and untraced, no secret in anything the evaluator wrote.
    assert obs.files_left == [] and obs.received == [] and obs.survivors == []
    assert obs.canary is not None and obs.canary[0] in ("S", "R") and obs.canary[1] == 0
    written = json.dumps(obs.log) + json.dumps(obs.metrics) + obs.stderr
    assert [s[:12] for s in obs.secrets if s in written] == []
    # Limits held from outside: processes and private memory of any one sandbox (one pid namespace;
    # the fallback forbids new processes instead).
    assert obs.max_processes <= 32 + 3 and obs.max_memory <= (2048 + 64) << 20
    assert obs.max_processes > 0 or jail == "fallback"  # the sampler saw the jails
    # Error fields are short and escaped: no terminal escapes from 1 GB of output.
    by_kind = {s.kind: row for s, row in hostile.paired(obs)}
    assert by_kind["huge_output"]["status"] == "output_limit"
    assert all(len(r.get("error", "")) <= 400 and not re.search("[\x00-\x08\x0b-\x1f\x7f]", r.get("error", "")) for r in obs.log)
    assert by_kind["exit_zero_before_asserts"]["status"] == "failed" and by_kind["os_exit_zero"]["status"] == "failed"
    # The cache the programs tried to forge: a rerun reuses the evaluator's own outcomes and
    # reports the same numbers, running only what had not settled (time-outs, kills, limits).
    assert obs.rerun["pass@1"] == pytest.approx(PASS_AT_1)
    assert obs.rerun["num_executed"] == sum(r["status"] not in ("passed", "failed") for r in obs.log)
    assert [(r["task_id"], r["passed"]) for r in obs.log_after_rerun] == [(r["task_id"], r["passed"]) for r in obs.log]
    assert all(len(r["key"]) == 24 and r["key"] != "x" * 24 for r in obs.log_after_rerun)


def test_hostile_suite_as_root():
    if os.geteuid() != 0:
        pytest.skip("runs the scorer as root")
    folder = hostile.tempdir()
    try:
        _check(hostile.run_hostile_suite(sandbox.sys.executable, None, folder, DEFAULT_JAIL), DEFAULT_JAIL)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("jail", ["namespaces", *(["bwrap"] if HAS_BWRAP else []), "fallback"])
def test_hostile_suite_as_an_unprivileged_user(unprivileged, jail, monkeypatch):
    user, python = unprivileged
    if jail == "fallback":
        for m in ("bwrap", "namespaces"):
            monkeypatch.setitem(sandbox._probes, m, sandbox._Probe("", "", "refused"))
        if sandbox.isolation_level() != "landlock":
            pytest.skip(f"no Landlock in this kernel: the fallback would be {sandbox.isolation_level()!r}, which does not confine files")
    folder = hostile.tempdir()
    try:
        _check(hostile.run_hostile_suite(python, user, folder, jail), jail)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
