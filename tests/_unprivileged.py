"""`tulu` run as an ordinary user, for the permission cases root would pass (root ignores file modes).

The test interpreter lives under /root (pyenv), which other users cannot read, so the command runs on
the system Python of the same version with a world-readable copy of tulu_cli and of the third-party
packages that importing ``modules`` loads. The user is created once (useradd) and kept, so test runs
that overlap share it.
"""

from __future__ import annotations

import compileall
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")

# Run by the test interpreter: the top-level site-packages entries that importing the modules loads.
_FIND = r"""
import importlib, site, sys
from pathlib import Path
for name in sys.argv[1:]:
    importlib.import_module(name)
roots = {Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages()]}
tops = set()
for m in list(sys.modules.values()):
    f = Path(getattr(m, "__file__", None) or "/").resolve()
    tops.update(str(r / f.relative_to(r).parts[0]) for r in roots if r in f.parents)
print("\n".join(sorted(tops)))
"""


class Unprivileged:
    """``python -m tulu_cli.cli.main ARGS`` as ``user`` through runuser, from a copy under ``root``."""

    def __init__(self, user: str, root: Path, modules: Sequence[str]):
        import tulu_cli

        self.user = user
        self.uid, self.gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
        self.site = root / "python"
        self.site.mkdir()
        found = subprocess.run([sys.executable, "-c", _FIND, *modules], capture_output=True, text=True, check=True)
        for src in map(Path, found.stdout.split()):
            if src.name.startswith(("__editable__", "_distutils_hack", "tulu_cli")):
                continue
            if src.is_dir():
                shutil.copytree(src, self.site / src.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, self.site / src.name)
        shutil.copytree(Path(tulu_cli.__file__).parent, self.site / "tulu_cli", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(self.site, quiet=2)  # the user cannot write .pyc files there
        for dirpath, _, filenames in os.walk(self.site):
            for path in [Path(dirpath), *(Path(dirpath, f) for f in filenames)]:
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))

    def run(self, args: Sequence[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        env = ["PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "HF_HUB_OFFLINE=1", f"PYTHONPATH={self.site}"]
        cmd = ["runuser", "-u", self.user, "--", "env", "-i", *env, str(SYSTEM_PYTHON), "-m", "tulu_cli.cli.main", *map(str, args)]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def unprivileged(user: str, root: Path, modules: Sequence[str]) -> Unprivileged | str:
    """A runner for the ordinary user ``user`` (created if missing), or why there cannot be one here.
    ``root`` must be reachable by every user (pytest's tmp_path is private to root)."""
    if not (shutil.which("runuser") and shutil.which("useradd")):
        return "needs runuser and useradd to run tulu as an ordinary user"
    if not SYSTEM_PYTHON.exists():
        return f"needs {SYSTEM_PYTHON} (the test interpreter's version) to run tulu as an ordinary user"
    version = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    if version.stdout.strip() != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is Python {version.stdout.strip()}, not {sys.version_info[:2]}: the copied compiled packages would not load"
    if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], capture_output=True, text=True)
        if made.returncode != 0 and subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
            return f"useradd {user} failed: {made.stderr.strip()}"
    return Unprivileged(user, root, modules)
