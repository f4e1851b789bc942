"""The CLI shell: help everywhere, version, fast startup without torch, error formatting."""

from __future__ import annotations

import subprocess
import sys
import time

from typer.testing import CliRunner

from tulu_cli import __version__
from tulu_cli.cli.main import app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert __version__ in r.output


def _walk(group, prefix):
    import typer.main

    cmd = typer.main.get_command(group)
    out = []

    def rec(c, path):
        out.append(path)
        for name, sub in getattr(c, "commands", {}).items():
            rec(sub, path + [name])

    rec(cmd, prefix)
    return out


def test_help_on_every_group_and_command():
    paths = _walk(app, [])
    assert len(paths) > 5
    for path in paths:
        r = runner.invoke(app, path + ["--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage" in r.output


def test_help_does_not_import_torch_and_is_fast():
    code = (
        "import sys, time; t=time.perf_counter();"
        "from tulu_cli.cli.main import app;"
        "import typer.main; cmd = typer.main.get_command(app);"
        "bad = [m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules];"
        "print('BAD', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "BAD []" in out, out
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tulu_cli.cli.main", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    assert r.returncode == 0
    assert elapsed < 3.0  # about 0.3 s here; generous bound for a loaded CI machine


def test_unknown_command_exits_2():
    r = runner.invoke(app, ["no-such-command"])
    assert r.exit_code == 2


def test_usage_errors_are_one_line(tmp_path):
    """Typer's boxed usage report becomes one red line naming the flag, exit 2, like every other error."""
    from _bad_input import assert_bad_input

    line = assert_bad_input(["train", "sft", "--lr", "abc"], ["--lr", "tulu train sft --help"], watch=[tmp_path])
    assert "╭" not in line
    assert_bad_input(["eval", "run", "--bogus"], ["No such option: --bogus", "tulu eval run --help"])
    assert_bad_input(["eval", "frobnicate"], ["frobnicate"])
