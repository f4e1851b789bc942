"""The bad-input promise as one assertion: exit 2, one stderr line naming the fault, no traceback, nothing new on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from typer.testing import CliRunner

from tulu_cli.cli.main import app


def snapshot(paths: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``paths`` (hidden ones too) with size and mtime, to see what a command left."""
    seen: dict[str, tuple[int, int]] = {}
    for root in paths:
        root = Path(root)
        if not root.exists():
            continue
        seen[str(root)] = (0, 0) if root.is_dir() else (root.stat().st_size, root.stat().st_mtime_ns)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    p = Path(dirpath, name)
                    st = p.lstat()
                    seen[str(p)] = (0, 0) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return seen


def assert_bad_input(args: Sequence[str], expect: str | Sequence[str], watch: Iterable[Path] = (), input: str | None = None) -> str:
    """Run ``tulu ARGS`` in-process; assert the bad-input promise and that ``expect`` (each part) is
    in the one error line; ``watch`` paths (output folders and their parents) must not change.
    Returns the error line."""
    watch = [Path(p) for p in watch]
    before = snapshot(watch)
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    err = result.stderr.strip()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    context = f"tulu {' '.join(map(str, args))}\nexit={result.exit_code}\nstdout={result.stdout[-2000:]}\nstderr={err[-3000:]}\nexc={result.exception!r}"
    assert result.exit_code == 2, context
    assert "Traceback" not in result.output and "Traceback" not in err, context
    assert len(lines) == 1, context
    assert lines[0].startswith("error:"), context
    for part in [expect] if isinstance(expect, str) else expect:
        assert part in lines[0], f"{part!r} not in the error line\n{context}"
    after = snapshot(watch)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}\n{context}"
    return lines[0]
